"""The UI's ASGI app and its server: routes render server-side templates (autoescaped)."""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from tapeflow.backends.base import WorkflowStatus
from tapeflow.backends.connect import connect
from tapeflow.errors import InvalidArgument, TapeflowError, WorkflowNotFound
from tapeflow.history import WorkflowContinuedAsNew
from tapeflow.ui._operations import Filters, Operations
from tapeflow.ui._security import CSRF_FIELD, TOKEN_COOKIE, Guard, checked, same
from tapeflow.ui._timeline import describe, task_end, timeline

TOKEN_VARIABLE = "TAPEFLOW_UI_TOKEN"
REFRESH_SECONDS = 2

_templates = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.PackageLoader("tapeflow.ui", "templates"),
        autoescape=True,  # every value shown is text, whatever it holds
        undefined=jinja2.StrictUndefined,
    )
)


def _json_text(value: Any) -> str:
    """A value as JSON text, left to autoescaping (``tojson`` would show ``<`` as ``\\u003c``)."""
    return json.dumps(value, default=str, ensure_ascii=False, indent=1)


_templates.env.filters["tojson_text"] = _json_text


def _render(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    context.update(csrf=request.state.csrf, csrf_field=CSRF_FIELD, refresh=REFRESH_SECONDS)
    return _templates.TemplateResponse(request, template, context, status_code=status_code)


def _ops(request: Request) -> Operations:
    ops: Operations = request.app.state.ops
    return ops


def _workflow_url(workflow_id: str, run_id: str | None = None, **extra: str) -> str:
    query = {"id": workflow_id, **({"run": run_id} if run_id else {}), **extra}
    return "/workflow?" + urlencode(query)


async def list_page(request: Request) -> Response:
    query = request.query_params
    status = query.get("status") or None
    if status is not None and status not in {s.value for s in WorkflowStatus}:
        status = None
    filters = Filters(status, query.get("name") or None, query.get("id_prefix") or None)
    ops = _ops(request)
    page = await ops.page(filters, query.get("cursor"))
    counts = await ops.counts(filters)
    return _render(
        request,
        "list.html",
        filters=filters,
        page=page,
        counts=counts,
        statuses=[s.value for s in WorkflowStatus],
        workflow_url=_workflow_url,
        status_url=lambda status: "/?" + urlencode({**filters.query(), "status": status}),
        next_url=None
        if page.next_cursor is None
        else "/?" + urlencode({**filters.query(), "cursor": page.next_cursor}),
    )


async def workflow_page(request: Request) -> Response:
    query = request.query_params
    workflow_id, run_id = query.get("id", ""), query.get("run") or None
    ops = _ops(request)
    try:
        record = await ops.describe(workflow_id, run_id)
    except (WorkflowNotFound, InvalidArgument):
        return _render(request, "missing.html", status_code=404, workflow_id=workflow_id)
    history = await ops.history(workflow_id, record.run_id)
    at = _event_number(query.get("at"), len(history))
    now = None if record.status.finished or at is not None else datetime.now(UTC)
    shown = timeline(history, at, now)
    next_run = next((e.run_id for e in history if isinstance(e, WorkflowContinuedAsNew)), None)
    return _render(
        request,
        "workflow.html",
        record=record,
        history=[(n, e.kind, describe(e)) for n, e in enumerate(history, start=1)],
        at=at,
        timeline=shown,
        vars=await ops.vars(record, at),
        next_run=next_run,
        reset_to=task_end(history, at or len(history)) if history else None,
        live=not record.status.finished and at is None,
        note=query.get("note"),
        error=query.get("error"),
        workflow_url=_workflow_url,
        step_url=lambda n: _workflow_url(workflow_id, run_id, at=str(n)),
        latest_url=_workflow_url(workflow_id, run_id),
    )


def _event_number(text: str | None, length: int) -> int | None:
    """``?at=N`` as an event number within the history; None (the latest) otherwise."""
    if text is None or not text.isdecimal():
        return None
    return min(max(int(text), 1), length) if length else None


async def workers_page(request: Request) -> Response:
    ops = _ops(request)
    return _render(
        request,
        "workers.html",
        workers=await ops.workers(),
        pollers=await ops.pollers(),
        now=datetime.now(UTC),
    )


async def schedules_page(request: Request) -> Response:
    schedules = await _ops(request).schedules()
    return _render(request, "schedules.html", schedules=schedules, workflow_url=_workflow_url)


async def queues_page(request: Request) -> Response:
    return _render(request, "queues.html", queues=await _ops(request).queues())


def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


async def _act(request: Request, form: FormData) -> Response:
    """One action on one workflow, named by the route; back to its page with the outcome."""
    ops, action = _ops(request), request.path_params["action"]
    workflow_id, reason = _field(form, "id"), _field(form, "reason")
    try:
        if action == "cancel":
            await ops.cancel(workflow_id, reason)
            done = "cancel requested"
        elif action == "terminate":
            await ops.terminate(workflow_id, reason)
            done = "terminated"
        elif action == "event":
            await ops.send_event(workflow_id, _field(form, "name"), _field(form, "payload"))
            done = "event sent"
        elif action == "reset":
            event = _field(form, "event")
            if not event.isdecimal():
                raise InvalidArgument(f"reset needs an event number, not {event!r}")
            await ops.reset(workflow_id, int(event), reason)
            done = f"reset to event {event}"
        else:
            return Response("no such action", status_code=404)
    except TapeflowError as exc:
        return RedirectResponse(_workflow_url(workflow_id, error=str(exc)), status_code=303)
    return RedirectResponse(_workflow_url(workflow_id, note=done), status_code=303)


async def login_page(request: Request) -> Response:
    return _render(request, "login.html", failed=False)


async def _login(request: Request, form: FormData) -> Response:
    token: str | None = request.app.state.token
    given = _field(form, "token")
    if token is None or not same(given, token):
        return _render(request, "login.html", status_code=401, failed=token is not None)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(TOKEN_COOKIE, given, httponly=True, samesite="strict", path="/")
    return response


def app(
    backend_url: str, token: str | None = None, modules: Sequence[str | ModuleType] = ()
) -> Starlette:
    """The UI over the backend at ``backend_url``, opened while the app runs. With a
    ``token``, every request must carry it. ``modules`` define workflows whose variables the
    UI can replay at any event."""

    @asynccontextmanager
    async def lifespan(started: Starlette) -> AsyncIterator[None]:
        async with connect(backend_url) as backend:
            started.state.ops = Operations(backend, modules)
            yield

    made = Starlette(
        routes=[
            Route("/", list_page),
            Route("/workflow", workflow_page),
            Route("/workflow/{action}", checked(_act), methods=["POST"]),
            Route("/workers", workers_page),
            Route("/queues", queues_page),
            Route("/schedules", schedules_page),
            Route("/login", login_page),
            Route("/login", checked(_login), methods=["POST"]),
            Mount("/static", StaticFiles(packages=[("tapeflow.ui", "static")]), name="static"),
        ],
        middleware=[Middleware(Guard, token=token)],
        lifespan=lifespan,
    )
    made.state.token = token
    return made


def serve(
    url: str,
    host: str = "127.0.0.1",
    port: int = 8233,
    token: str | None = None,
    modules: Sequence[str | ModuleType] = (),
) -> None:
    """Run the UI until interrupted. Bound beyond loopback it needs a token (``token`` or
    $TAPEFLOW_UI_TOKEN): anyone who can reach it could otherwise cancel workflows."""
    import uvicorn

    token = token or os.environ.get(TOKEN_VARIABLE) or None
    if token is None and not _loopback(host):
        raise InvalidArgument(
            f"the UI bound to {host!r} is reachable from other machines: give it a token "
            f"(--token or ${TOKEN_VARIABLE})"
        )
    uvicorn.run(app(url, token, modules), host=host, port=port, log_level="warning")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
