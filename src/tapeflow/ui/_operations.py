"""What the UI reads and does, over the public client, the debugger and the backends'
read protocols (never the worker)."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from types import ModuleType
from typing import Any

from tapeflow._definition import _ATTR, Definition
from tapeflow.backends.base import Backend, PollerReads, PollerRecord, WorkflowRecord
from tapeflow.backends.presence import WorkerPresence, WorkerRecord
from tapeflow.backends.queue_limits import QueueLimits, QueueRecord
from tapeflow.backends.schedules import Schedules
from tapeflow.client import Client
from tapeflow.debugger import WorkflowDebugger
from tapeflow.errors import InvalidArgument
from tapeflow.history import HistoryEvent
from tapeflow.schedules import ScheduleDescription

PAGE_SIZE = 50

WORKERS_SEEN_WITHIN = timedelta(hours=1)
"""The workers page shows the workers heard from in this last while, stopped ones too."""


@dataclass(frozen=True)
class Filters:
    status: str | None = None
    name: str | None = None
    id_prefix: str | None = None

    def query(self) -> dict[str, Any]:
        """As keyword arguments of ``list_workflows`` and ``count_workflows``, unset left out."""
        given = {"status": self.status, "name": self.name, "id_prefix": self.id_prefix}
        return {key: value for key, value in given.items() if value}


@dataclass(frozen=True)
class Page:
    workflows: list[Any]
    next_cursor: str | None


@dataclass(frozen=True)
class Vars:
    """A run's variables, or why they cannot be shown."""

    values: Mapping[str, Any] | None
    source: str
    """How they were found (replay, stored), or why not."""


class Operations:
    def __init__(self, backend: Backend, modules: Sequence[str | ModuleType] = ()) -> None:
        self.backend = backend
        self.client = Client(backend)
        self.debugger = WorkflowDebugger(backend)
        self.workflows = workflows_in(modules)
        """Workflow functions by name, to replay a run's variables at any event."""

    # -- reads -----------------------------------------------------------------------------

    async def page(self, filters: Filters, cursor: str | None) -> Page:
        """A page of workflows, newest first."""
        listed = await self.client.list_workflows(
            **filters.query(), limit=PAGE_SIZE, cursor=cursor or None
        )
        return Page(list(listed.workflows), listed.next_cursor)

    async def counts(self, filters: Filters) -> dict[str, int]:
        """Workflows per status under the other filters."""
        others = {k: v for k, v in filters.query().items() if k != "status"}
        grouped = await self.client.count_workflows(**others, group_by_status=True)
        return {str(status): n for status, n in grouped.items()}

    async def describe(self, workflow_id: str, run_id: str | None) -> WorkflowRecord:
        return await self.backend.get_workflow(workflow_id, run_id)

    async def history(self, workflow_id: str, run_id: str | None) -> list[HistoryEvent]:
        return await self.debugger.history(workflow_id, run_id)

    async def vars(self, record: WorkflowRecord, upto: int | None) -> Vars:
        """Replayed with the workflow's function if the UI has it (at any event), else as
        stored by the backend (latest only)."""
        function = self.workflows.get(record.name)
        if function is not None:
            found = await self.debugger.query_vars(
                function.function, record.id, upto=upto, run_id=record.run_id
            )
            note = "replayed" if found.diverged is None else f"replay diverged: {found.diverged}"
            return Vars(dict(found), note)
        if upto is None and record.vars is not None:
            return Vars(record.vars, "stored")
        return Vars(None, f"start the UI with the module defining {record.name!r} to replay them")

    async def workers(self) -> list[WorkerRecord] | None:
        if not isinstance(self.backend, WorkerPresence):
            return None
        return await self.backend.list_workers(WORKERS_SEEN_WITHIN)

    async def schedules(self) -> list[ScheduleDescription] | None:
        if not isinstance(self.backend, Schedules):
            return None
        return await self.client.list_schedules()

    async def queues(self) -> list[QueueRecord] | None:
        if not isinstance(self.backend, QueueLimits):
            return None
        return await self.backend.list_queues()

    async def pollers(self) -> list[PollerRecord] | None:
        if not isinstance(self.backend, PollerReads):
            return None
        return await self.backend.list_pollers()

    # -- actions ---------------------------------------------------------------------------

    async def cancel(self, workflow_id: str, reason: str) -> None:
        await self.client.get_handle(workflow_id).cancel(reason)

    async def terminate(self, workflow_id: str, reason: str) -> None:
        await self.client.get_handle(workflow_id).terminate(reason)

    async def send_event(self, workflow_id: str, name: str, payload_json: str) -> None:
        await self.client.send_event(workflow_id, name, _json(payload_json))

    async def reset(self, workflow_id: str, event: int, reason: str) -> None:
        handle: Any = self.client.get_handle(workflow_id)
        await handle.reset(event=event, reason=reason)


def _json(text: str) -> Any:
    """An event's payload as typed in the form: JSON, or nothing for None."""
    try:
        return json.loads(text) if text.strip() else None
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"the payload is not JSON: {exc}") from None


def workflows_in(modules: Iterable[str | ModuleType]) -> dict[str, Definition]:
    """The workflow definitions of these modules (or dotted module names), by name."""
    found: dict[str, Definition] = {}
    for module in modules:
        loaded = importlib.import_module(module) if isinstance(module, str) else module
        for value in vars(loaded).values():
            definition = getattr(value, _ATTR, None)
            if isinstance(definition, Definition) and definition.kind == "workflow":
                found[definition.name] = definition
    return found
