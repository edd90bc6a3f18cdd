"""What commands print: rich tables for people, JSON on stdout for scripts (``--json``)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from tapeflow.backends.base import WorkflowRecord
from tapeflow.history import HistoryEvent, JSONValue, encode_event

LIST_COLUMNS = ("id", "name", "status", "created_at", "completed_at")


def print_json(value: object) -> None:
    # print(), not rich: a script's parser must get the bytes json.dumps makes, unwrapped
    print(json.dumps(value, indent=2, ensure_ascii=False))


def print_table(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    table = Table(*columns, box=None, header_style="bold")
    for row in rows:
        table.add_row(*(_cell(value) for value in row))
    Console().print(table)


def print_fields(fields: Mapping[str, object]) -> None:
    """One value per line, its name first: a record is read down, not across."""
    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for name, value in fields.items():
        if value is not None:
            table.add_row(name, _cell(value))
    Console().print(table)


def _cell(value: object) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False)


def _moment(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def record_json(record: WorkflowRecord) -> dict[str, JSONValue]:
    """A workflow's record as JSON: times in ISO 8601, the failure as an object."""
    failure = record.failure
    return {
        "id": record.id,
        "run_id": record.run_id,
        "name": record.name,
        "version": record.version,
        "status": record.status.value,
        "args": record.args,
        "created_at": _moment(record.created_at),
        "start_at": _moment(record.start_at),
        "completed_at": _moment(record.completed_at),
        "result": record.result,
        "failure": None
        if failure is None
        else {"type": failure.type, "message": failure.message, "traceback": failure.traceback},
        "history_length": record.history_length,
        "task_error": record.task_error,
        "hint": record.hint,
        "reason": record.reason,
        "requested_by": record.requested_by,
        "parent_id": record.parent_id,
        "previous_run_id": record.previous_run_id,
        "vars": record.vars,
        "queue": record.queue,
        "priority": record.priority,
    }


def summary_json(summary: Any) -> dict[str, JSONValue]:
    """A listed run (``WorkflowSummary``: no arguments, result or history) as JSON."""
    return {
        "id": summary.id,
        "run_id": summary.run_id,
        "name": summary.name,
        "status": str(summary.status),
        "created_at": _moment(summary.created_at),
        "start_at": _moment(summary.start_at),
        "completed_at": _moment(summary.completed_at),
        "task_error": summary.task_error,
        "vars": summary.vars,
    }


def record_fields(record: WorkflowRecord) -> dict[str, object]:
    """``record_json`` for a person: the failure on one line, its traceback left out."""
    fields: dict[str, object] = record_json(record)
    failure = record.failure
    fields["failure"] = None if failure is None else f"{failure.type}: {failure.message}"
    return fields


def event_json(number: int, event: HistoryEvent) -> dict[str, Any]:
    """A history event as stored (its ``kind`` and fields), with its number (from 1)."""
    return {"event": number, **json.loads(encode_event(event))}


def event_row(number: int, event: HistoryEvent) -> tuple[object, ...]:
    fields = event_json(number, event)
    del fields["event"]
    kind = fields.pop("kind")
    return (number, kind, json.dumps(fields, ensure_ascii=False, separators=(", ", ": ")))
