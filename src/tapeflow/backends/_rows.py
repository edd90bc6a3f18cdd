"""Turning stored rows into records, the same way for every backend."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, Protocol

from pydantic import TypeAdapter

from tapeflow.backends._pollers import pending_hint
from tapeflow.backends.base import (
    ActivityTask,
    ActivityTimeouts,
    InboxEvent,
    ParentLink,
    UpdateRecord,
    WorkflowRecord,
    WorkflowStatus,
    WorkflowTask,
)
from tapeflow.backends.presence import WorkerInfo, WorkerRecord
from tapeflow.backends.queue_limits import QueueRecord, waiting_hint
from tapeflow.errors import PayloadError
from tapeflow.history import (
    Failure,
    HistoryEvent,
    decode_event,
    decode_incoming,
    decode_outcome,
)
from tapeflow.queues import Queue

FAILURE = TypeAdapter(Failure)


class NamedRow(Protocol):
    """A row read by column name (``sqlite3.Row``, psycopg's ``dict_row``)."""

    def __getitem__(self, column: str) -> Any: ...


def worker_record(row: NamedRow, when: Callable[[Any], datetime]) -> WorkerRecord:
    """A ``list_workers`` row, its info as JSON text and its times as stored."""
    stopped = row["stopped_at"]
    return WorkerRecord(
        info=WorkerInfo.from_json(row["id"], json.loads(row["info"])),
        started_at=when(row["started_at"]),
        last_seen_at=when(row["last_seen_at"]),
        stopped_at=None if stopped is None else when(stopped),
        silent_for=timedelta(seconds=max(float(row["silent_for"]), 0.0)),
    )


def update_record(row: NamedRow) -> UpdateRecord:
    """A ``find_update`` (or ``get_update``) row, its outcome as JSON text or NULL."""
    outcome = row["outcome"]
    return UpdateRecord(
        run_id=row["run_id"],
        run_status=WorkflowStatus(row["run_status"]),
        outcome=None if outcome is None else decode_outcome(outcome),
    )


def declared_queue(row: NamedRow, period: Callable[[Any], timedelta]) -> Queue:
    """A ``queues`` row (or a ``list_queues`` one) as the declaration it keeps, its
    ``rate_period`` as stored (``period`` makes it a timedelta)."""
    limit = row["rate_limit"]
    rate = None if limit is None else (limit, period(row["rate_period"]))
    return Queue(row["name"], row["concurrency"], rate)


def queue_record(row: NamedRow, period: Callable[[Any], timedelta]) -> QueueRecord:
    """A ``list_queues`` row."""
    queue = declared_queue(row, period)
    started = None if queue.rate_limit is None else row["started"]
    return QueueRecord(queue, row["admitted"], row["waiting"], started)


def workflow_record(row: NamedRow, when: Callable[[Any], datetime]) -> WorkflowRecord:
    """A ``get_workflow`` row, JSON still as text and times as stored (``when`` makes them
    UTC datetimes); ``due`` says whether the run's start is due and ``silent_for`` the
    seconds since a worker last polled for its name (None if none ever did)."""
    state = WorkflowStatus(row["status"])
    silent = None if row["silent_for"] is None else float(row["silent_for"])
    name, completed, result, failure = (
        row["name"],
        row["completed_at"],
        row["result"],
        row["failure"],
    )
    return WorkflowRecord(
        id=row["id"],
        run_id=row["run_id"],
        name=name,
        version=row["version"],
        status=state,
        args=json.loads(row["args"]),
        created_at=when(row["created_at"]),
        start_at=when(row["start_at"]),
        completed_at=None if completed is None else when(completed),
        result=None if result is None else json.loads(result),
        failure=None if failure is None else FAILURE.validate_json(failure),
        history_length=row["history_length"],
        task_error=row["last_error"],
        hint=waiting_hint(row["queue"])
        if row["admitted"] is not None and not row["admitted"]
        else pending_hint(name, bool(row["due"]) and not state.finished, silent),
        reason=row["stop_reason"],
        requested_by=row["stop_requested_by"],
        parent=None
        if row["parent_run_id"] is None
        else ParentLink(
            row["parent_id"], row["parent_run_id"], row["parent_seq"], row["on_parent_close"]
        ),
        previous_run_id=row["previous_run_id"],
        vars=stored_vars(row["vars"]),
        queue=row["queue"],
        priority=row["priority"],
    )


def stored_vars(text: str | None) -> dict[str, Any]:
    """A run's stored variables (JSON text; None: it set none)."""
    return {} if text is None else dict(json.loads(text))


def json_text(value: object) -> str:
    """Compact JSON text, unicode kept as is."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def workflow_task(
    row: NamedRow, inbox: Iterable[tuple[int, str]], claimed_at: datetime
) -> WorkflowTask:
    """A claimed workflow task (columns ``workflow_id``, ``run_id``, ``name``,
    ``history_length``, ``lease_token``, ``failures``, ``parent``, ``queue``,
    ``priority``) with its visible inbox rows (id,
    event); unreadable inbox rows poison only this task."""
    workflow_id = row["workflow_id"]
    events, unreadable, errors = [], [], []
    for inbox_id, raw in inbox:
        try:
            events.append(InboxEvent(inbox_id, decode_incoming(raw)))
        except ValueError as exc:
            unreadable.append(inbox_id)
            errors.append(f"inbox event {inbox_id} of {workflow_id!r} cannot be read: {exc}")
    return WorkflowTask(
        workflow_id=workflow_id,
        run_id=row["run_id"],
        workflow_name=row["name"],
        history_length=row["history_length"],
        inbox=events,
        lease_token=row["lease_token"],
        claimed_at=claimed_at,
        failures=row["failures"],
        poison="; ".join(errors) or None,
        unreadable=tuple(unreadable),
        parent=_parent(row["parent"]),
        queue=row["queue"],
        priority=row["priority"],
    )


def _parent(found: str | list[Any] | None) -> ParentLink | None:
    """A claimed run's parent, as its claim reads it: [workflow id, run id, seq, on
    close] (JSON text, or decoded), or None."""
    if found is None:
        return None
    workflow_id, run_id, seq, on_close = json.loads(found) if isinstance(found, str) else found
    return ParentLink(workflow_id, run_id, seq, on_close)


def activity_task(row: NamedRow, when: Callable[[Any], datetime]) -> ActivityTask:
    """A claimed activity task (columns named as the fields, JSON as text, ``leased_at`` as
    the backend's clock gives it, ``when`` making it a UTC datetime); unreadable stored JSON
    poisons only this task."""
    task_id, workflow_id, args = row["id"], row["workflow_id"], row["args"]
    try:
        arguments, policy = json.loads(args), _loads(row["retry"])
        details, poison = _loads(row["heartbeat_details"]), None
        timeouts = timeouts_of(row["timeouts"])
        traced = _loads(row["trace_context"])
        if not isinstance(arguments, list):
            raise ValueError(f"arguments are not a JSON array: {args[:80]!r}")
    except (ValueError, TypeError, AttributeError) as exc:
        arguments, policy, details, timeouts, traced = [], None, None, None, None
        poison = f"activity task {task_id} of {workflow_id!r} cannot be read: {exc}"
    return ActivityTask(
        id=task_id,
        workflow_id=workflow_id,
        run_id=row["run_id"],
        workflow_name=row["workflow_name"],
        seq=row["seq"],
        name=row["name"],
        args=arguments,
        retry=policy,
        attempt=row["attempt"],
        lease_token=row["lease_token"],
        heartbeat_details=details,
        poison=poison,
        timeouts=timeouts,
        leased_at=when(row["leased_at"]),
        queue=row["queue"],
        workflow_queue=row["workflow_queue"],
        workflow_priority=row["workflow_priority"],
        trace_context=traced if isinstance(traced, dict) else None,
    )


def timeouts_of(text: str | None) -> ActivityTimeouts | None:
    """An activity task's stored timeouts (JSON text), if it has any."""
    return None if text is None else ActivityTimeouts.from_json(json.loads(text))


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
