"""Commands on workflows: over ``Client``, ``WorkflowHandle`` and ``WorkflowDebugger``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tapeflow.backends.base import WorkflowStatus
from tapeflow.cli._backend import opened
from tapeflow.cli._exits import CliError, ExitCode
from tapeflow.cli._modules import load_definitions
from tapeflow.cli._output import (
    LIST_COLUMNS,
    event_json,
    event_row,
    print_fields,
    print_json,
    print_table,
    record_fields,
    record_json,
    summary_json,
)
from tapeflow.cli._params import Json, Modules, Reason, Url, WorkflowId, parse_json
from tapeflow.cli._run import run
from tapeflow.client import Client
from tapeflow.debugger import WorkflowDebugger, WorkflowVars
from tapeflow.errors import UpdateFailed, WorkflowFailed
from tapeflow.queues import DEFAULT_PRIORITY, DEFAULT_QUEUE


def _done(json_: bool, workflow_id: str, said: str, **more: object) -> None:
    if json_:
        print_json({"id": workflow_id, **more})
    else:
        typer.echo(said)


def start(
    name: Annotated[str, typer.Argument(help="The workflow's registered name.")],
    input: Annotated[
        str | None,
        typer.Option(
            "--input",
            "-i",
            help="JSON: a list is the arguments, any other value the only one.",
            show_default=False,
        ),
    ] = None,
    workflow_id: Annotated[
        str | None, typer.Option("--id", help="Its id (default: a new UUID).", show_default=False)
    ] = None,
    queue: Annotated[
        str, typer.Option("--queue", "-q", help="The queue it waits on for a worker.")
    ] = DEFAULT_QUEUE,
    priority: Annotated[
        int, typer.Option("--priority", min=1, max=10, help="Its admission order there: 1 first.")
    ] = DEFAULT_PRIORITY,
    url: Url = None,
    json_: Json = False,
) -> None:
    """Start a workflow by name and print its id; a worker that registers NAME and serves
    its queue runs it."""

    async def work() -> None:
        args = _arguments(input)
        async with opened(url) as backend:
            handle = await Client(backend).start_workflow(
                name, *args, id=workflow_id, queue=queue, priority=priority
            )
        _done(json_, handle.id, handle.id, run_id=handle.run_id)

    run(work())


def _arguments(text: str | None, what: str = "--input") -> list[Any]:
    """A workflow (or update) taking one list is given it inside a list:
    ``--input '[[1, 2]]'``."""
    if text is None:
        return []
    value = parse_json(text, what)
    return value if isinstance(value, list) else [value]


def list_(
    status: Annotated[
        list[WorkflowStatus] | None,
        typer.Option("--status", help="Only workflows in this status; repeatable."),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Only workflows of this name.", show_default=False)
    ] = None,
    id_prefix: Annotated[
        str | None,
        typer.Option("--id-prefix", help="Only ids that start so.", show_default=False),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="At most this many.")] = 50,
    cursor: Annotated[
        str | None,
        typer.Option("--cursor", help="The next page: a list's next_cursor.", show_default=False),
    ] = None,
    count: Annotated[bool, typer.Option("--count", help="Print how many, not which.")] = False,
    url: Url = None,
    json_: Json = False,
) -> None:
    """List workflows (the latest run of each id), the newest first, a page at a time."""
    where: dict[str, Any] = {"status": status or None, "name": name, "id_prefix": id_prefix}

    async def work() -> None:
        async with opened(url) as backend:
            client = Client(backend)
            if count:
                counted = await client.count_workflows(**where)
                if json_:
                    print_json(counted)
                else:
                    typer.echo(str(counted))
                return
            page = await client.list_workflows(**where, limit=limit, cursor=cursor)
        found = [summary_json(summary) for summary in page.workflows]
        if json_:
            print_json({"workflows": found, "next_cursor": page.next_cursor})
            return
        print_table(LIST_COLUMNS, ([row[c] for c in LIST_COLUMNS] for row in found))
        if page.next_cursor is not None:
            typer.echo(f"more: --cursor {page.next_cursor}", err=True)

    run(work())


def describe(workflow_id: WorkflowId, url: Url = None, json_: Json = False) -> None:
    """Show a workflow's status, times, result or failure, and why it may not be running."""

    async def work() -> None:
        async with opened(url) as backend:
            record = await Client(backend).describe(workflow_id)
        if json_:
            print_json(record_json(record))
        else:
            print_fields(record_fields(record))

    run(work())


def history(workflow_id: WorkflowId, url: Url = None, json_: Json = False) -> None:
    """Show a workflow's history events, numbered from 1 (the numbers 'vars --at' takes)."""

    async def work() -> None:
        async with opened(url) as backend:
            events = await WorkflowDebugger(backend).history(workflow_id)
        numbered = list(enumerate(events, start=1))
        if json_:
            print_json([event_json(n, e) for n, e in numbered])
        else:
            print_table(("#", "kind", "fields"), (event_row(n, e) for n, e in numbered))

    run(work())


def vars_(
    workflow_id: WorkflowId,
    at: Annotated[
        int | None,
        typer.Option("--at", min=0, help="As of history event N (replays the code).", metavar="N"),
    ] = None,
    modules: Modules = None,
    url: Url = None,
    json_: Json = False,
) -> None:
    """Show the variables a workflow set with workflow.set_var.

    Replaying its history needs its code: name the module that defines it with --module
    (without --at, a tapeflow that stores variables needs no code)."""

    async def work() -> None:
        async with opened(url) as backend:
            record = await Client(backend).describe(workflow_id)
            if record.vars is not None and at is None and not modules:
                found = WorkflowVars(record.vars, record.history_length, None)
            else:
                workflow = load_definitions(modules or []).workflow_named(record.name)
                if workflow is None:
                    raise CliError(
                        f"showing the variables of {workflow_id!r} replays its code: give "
                        f"--module MODULE, the module that defines workflow {record.name!r}",
                        ExitCode.USAGE,
                    )
                debugger = WorkflowDebugger(backend)
                found = await debugger.query_vars(workflow.function, workflow_id, upto=at)
        as_of = found.as_of
        diverged = None if found.diverged is None else str(found.diverged)
        if json_:
            print_json({"vars": dict(found), "as_of": as_of, "diverged": diverged})
            return
        if diverged is not None:
            typer.echo(f"as of event {as_of}; replay diverged after it: {diverged}", err=True)
        print_table(("name", "value"), found.items())

    run(work())


def event(
    workflow_id: WorkflowId,
    name: Annotated[str, typer.Argument(help="The event's name.")],
    payload: Annotated[str, typer.Argument(help="Its payload, as JSON.")] = "null",
    idempotency_key: Annotated[
        str | None,
        typer.Option("--idempotency-key", help="Deliver at most once per key.", show_default=False),
    ] = None,
    url: Url = None,
    json_: Json = False,
) -> None:
    """Send an event to a workflow."""

    async def work() -> None:
        value = parse_json(payload, "PAYLOAD")
        async with opened(url) as backend:
            await Client(backend).send_event(
                workflow_id, name, value, idempotency_key=idempotency_key
            )
        _done(json_, workflow_id, f"event {name!r} sent to {workflow_id}", event=name)

    run(work())


def cancel(
    workflow_id: WorkflowId, reason: Reason = "", url: Url = None, json_: Json = False
) -> None:
    """Ask a workflow to cancel: it may clean up before it ends."""

    async def work() -> None:
        async with opened(url) as backend:
            await Client(backend).get_handle(workflow_id).cancel(reason)
        _done(json_, workflow_id, f"cancel of {workflow_id} requested")

    run(work())


def terminate(
    workflow_id: WorkflowId, reason: Reason = "", url: Url = None, json_: Json = False
) -> None:
    """End a workflow now: none of its code runs again."""

    async def work() -> None:
        async with opened(url) as backend:
            await Client(backend).get_handle(workflow_id).terminate(reason)
        _done(json_, workflow_id, f"{workflow_id} terminated")

    run(work())


def reset(
    workflow_id: WorkflowId,
    event: Annotated[
        int, typer.Option("--event", min=1, help="Replay up to history event N, then go on anew.")
    ],
    reason: Reason = "",
    url: Url = None,
    json_: Json = False,
) -> None:
    """Start a new run of a workflow from history event N (see 'history')."""

    async def work() -> None:
        async with opened(url) as backend:
            handle = Client(backend).get_handle(workflow_id)
            new = await handle.reset(event, reason)
        said = f"{workflow_id} reset to event {event}: run {new.run_id}"
        _done(json_, workflow_id, said, event=event, run_id=new.run_id)

    run(work())


def result(
    workflow_id: WorkflowId,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the workflow to end.")] = False,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", min=0, help="With --wait: give up after SECONDS (exit 5)."),
    ] = None,
    url: Url = None,
    json_: Json = False,
) -> None:
    """Print a workflow's result as JSON; exit 4 if it did not complete, 5 if not ended."""

    async def work() -> None:
        async with opened(url) as backend:
            handle = Client(backend).get_handle(workflow_id)
            if wait:
                try:
                    await handle.result(timeout=timeout)
                except WorkflowFailed:
                    pass  # told from the record below, with the same exit code as without --wait
                except TimeoutError:
                    raise CliError(
                        f"workflow {workflow_id!r} did not end within {timeout}s",
                        ExitCode.NOT_FINISHED,
                    ) from None
            record = await handle.describe()
        if not record.status.finished:
            raise CliError(
                f"workflow {workflow_id!r} is {record.status.value}: no result yet (--wait)",
                ExitCode.NOT_FINISHED,
            )
        shown = record_json(record)
        if json_:
            print_json({k: shown[k] for k in ("id", "run_id", "status", "result", "failure")})
        elif record.failure is None:
            print_json(record.result)
        if record.failure is not None:
            failure = record.failure
            raise CliError(
                f"workflow {workflow_id!r} {record.status.value}: {failure.type}: "
                f"{failure.message}",
                ExitCode.WORKFLOW_FAILED,
            )

    run(work())


def delete(workflow_id: WorkflowId, url: Url = None, json_: Json = False) -> None:
    """Delete a workflow that has ended, with its history."""

    async def work() -> None:
        async with opened(url) as backend:
            await Client(backend).get_handle(workflow_id).delete()
        _done(json_, workflow_id, f"{workflow_id} deleted")

    run(work())


def update(
    workflow_id: WorkflowId,
    name: Annotated[str, typer.Argument(help="The update's name (its workflow.on_update).")],
    arguments: Annotated[
        str | None,
        typer.Argument(
            metavar="ARG_JSON",
            help="JSON: a list is the arguments, any other value the only one.",
            show_default=False,
        ),
    ] = None,
    update_id: Annotated[
        str | None,
        typer.Option(
            "--update-id",
            help="At most once per id: sent again, it prints the first answer.",
            show_default=False,
        ),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Wait for the answer, or print the update id.")
    ] = True,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", min=0, help="Give up waiting after SECONDS (exit 5)."),
    ] = None,
    url: Url = None,
    json_: Json = False,
) -> None:
    """Send an update to a running workflow and print its handler's result as JSON; exit 7
    if it was rejected or its handler failed."""

    async def work() -> None:
        values = _arguments(arguments, "ARG_JSON")
        async with opened(url) as backend:
            handle = Client(backend).get_handle(workflow_id)
            sent = await handle.start_update(name, *values, update_id=update_id)
            if not wait:
                _done(json_, workflow_id, sent, update_id=sent)
                return
            try:  # sent already: this waits for its answer
                value = await handle.execute_update(name, update_id=sent, timeout=timeout)
            except TimeoutError:
                raise CliError(
                    f"update {name!r} of workflow {workflow_id!r} had no answer within "
                    f"{timeout}s (wait again with --update-id {sent})",
                    ExitCode.NOT_FINISHED,
                ) from None
            except UpdateFailed as failed:
                if json_:
                    failure = {"type": failed.type, "message": failed.message}
                    print_json(
                        {
                            "id": workflow_id,
                            "update_id": sent,
                            "result": None,
                            "failure": {**failure, "rejected": failed.rejected},
                        }
                    )
                raise
        if json_:
            print_json({"id": workflow_id, "update_id": sent, "result": value, "failure": None})
        else:
            print_json(value)

    run(work())
