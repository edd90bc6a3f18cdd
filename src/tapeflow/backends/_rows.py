"""Turning stored rows into records, the same way for every backend."""

from __future__ import annotations

import json
from datetime import datetime

from pydantic import TypeAdapter

from tapeflow.backends.base import WorkflowRecord, WorkflowStatus
from tapeflow.history import Failure

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
    ],
) -> WorkflowRecord:
    """A ``get_workflow`` row, JSON still as text and times already converted to UTC."""
    (id_, name, version, status, args, created, start, completed, result, failure,
     length, last_error) = row  # fmt: skip
    return WorkflowRecord(
        id=id_,
        name=name,
        version=version,
        status=WorkflowStatus(status),
        args=json.loads(args),
        created_at=created,
        start_at=start,
        completed_at=completed,
        result=None if result is None else json.loads(result),
        failure=None if failure is None else FAILURE.validate_json(failure),
        history_length=length,
        task_error=last_error,
    )


def json_text(value: object) -> str:
    """Compact JSON text, unicode kept as is."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
