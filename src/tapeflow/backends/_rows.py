"""Turning stored rows into records, the same way for every backend."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import TypeAdapter

from tapeflow.backends._pollers import pending_hint
from tapeflow.backends.base import (
    ActivityTask,
    InboxEvent,
    WorkflowRecord,
    WorkflowStatus,
    WorkflowTask,
)
from tapeflow.errors import PayloadError
from tapeflow.history import Failure, HistoryEvent, decode_event, decode_incoming

FAILURE = TypeAdapter(Failure)


def workflow_record(
    row: tuple[
        str,
        str,
        str,
        str,
        str,
        datetime,
        datetime,
        datetime | None,
        str | None,
        str | None,
        int,
        str | None,
        bool,
        float | Decimal | None,
    ],
) -> WorkflowRecord:
    """A ``get_workflow`` row, JSON still as text and times already converted to UTC; it
    ends with whether the workflow's start is due and the seconds since a worker last polled
    for its name (None if none ever did)."""
    (id_, name, version, status, args, created, start, completed, result, failure,
     length, last_error, due, silent_for) = row  # fmt: skip
    state = WorkflowStatus(status)
    silent = None if silent_for is None else float(silent_for)
    return WorkflowRecord(
        id=id_,
        name=name,
        version=version,
        status=state,
        args=json.loads(args),
        created_at=created,
        start_at=start,
        completed_at=completed,
        result=None if result is None else json.loads(result),
        failure=None if failure is None else FAILURE.validate_json(failure),
        history_length=length,
        task_error=last_error,
        hint=pending_hint(name, bool(due) and not state.finished, silent),
    )


def json_text(value: object) -> str:
    """Compact JSON text, unicode kept as is."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def workflow_task(
    workflow_id: str,
    name: str,
    history_length: int,
    inbox: Iterable[tuple[int, str]],
    lease_token: int,
    claimed_at: datetime,
    failures: int,
) -> WorkflowTask:
    """A claimed workflow task; unreadable inbox rows poison only this task."""
    events, unreadable, errors = [], [], []
    for inbox_id, raw in inbox:
        try:
            events.append(InboxEvent(inbox_id, decode_incoming(raw)))
        except ValueError as exc:
            unreadable.append(inbox_id)
            errors.append(f"inbox event {inbox_id} of {workflow_id!r} cannot be read: {exc}")
    return WorkflowTask(
        workflow_id,
        name,
        history_length,
        events,
        lease_token,
        claimed_at,
        failures,
        "; ".join(errors) or None,
        tuple(unreadable),
    )


def activity_task(
    id_: int,
    workflow_id: str,
    workflow_name: str,
    seq: int,
    name: str,
    args: str,
    retry: str | None,
    attempt: int,
    lease_token: int,
    heartbeat_details: str | None,
) -> ActivityTask:
    """A claimed activity task; unreadable stored JSON poisons only this task."""
    try:
        arguments, policy = json.loads(args), _loads(retry)
        details, poison = _loads(heartbeat_details), None
        if not isinstance(arguments, list):
            raise ValueError(f"arguments are not a JSON array: {args[:80]!r}")
    except ValueError as exc:
        arguments, policy, details = [], None, None
        poison = f"activity task {id_} of {workflow_id!r} cannot be read: {exc}"
    return ActivityTask(
        id=id_,
        workflow_id=workflow_id,
        workflow_name=workflow_name,
        seq=seq,
        name=name,
        args=arguments,
        retry=policy,
        attempt=attempt,
        lease_token=lease_token,
        heartbeat_details=details,
        poison=poison,
    )


def history(workflow_id: str, rows: Iterable[str]) -> list[HistoryEvent]:
    events = []
    for position, raw in enumerate(rows, start=1):
        try:
            events.append(decode_event(raw))
        except ValueError as exc:
            raise PayloadError(
                f"history event #{position} of {workflow_id!r} cannot be read: {exc}"
            ) from None
    return events


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)
