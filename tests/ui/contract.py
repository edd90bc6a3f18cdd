"""A stand-in for ``Client.list_workflows`` and ``Client.count_workflows`` (another branch
adds them), with their agreed signatures, so that the list page is tested today; the real
methods replace it as soon as they exist (``install``)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

import pytest

import tapeflow
from tapeflow.backends.base import WorkflowRecord


@dataclass(frozen=True)
class Listed:
    workflows: list[WorkflowRecord]
    next_cursor: str | None


async def _matching(
    client: tapeflow.Client, status: str | None, name: str | None, id_prefix: str | None
) -> list[WorkflowRecord]:
    path = client.backend.path  # type: ignore[attr-defined]  # the tests' SQLite backend
    with sqlite3.connect(path) as conn:
        ids = [row[0] for row in conn.execute("SELECT DISTINCT id FROM workflows")]
    records = [await client.describe(workflow_id) for workflow_id in ids]
    return sorted(
        (
            r
            for r in records
            if (status is None or r.status == status)
            and (name is None or r.name == name)
            and (id_prefix is None or r.id.startswith(id_prefix))
        ),
        key=lambda r: (r.created_at, r.id),
        reverse=True,
    )


async def list_workflows(
    self: tapeflow.Client,
    *,
    status: str | None = None,
    name: str | None = None,
    id_prefix: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
    **_: Any,
) -> Listed:
    start = int(cursor or 0)
    found = await _matching(self, status, name, id_prefix)
    more = start + limit < len(found)
    return Listed(found[start : start + limit], str(start + limit) if more else None)


async def count_workflows(
    self: tapeflow.Client,
    *,
    name: str | None = None,
    id_prefix: str | None = None,
    group_by_status: bool = False,
    **_: Any,
) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in await _matching(self, None, name, id_prefix):
        counts[record.status] = counts.get(record.status, 0) + 1
    return counts


def install(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stand-ins, where the client has no real methods yet."""
    for method in (list_workflows, count_workflows):
        if not hasattr(tapeflow.Client, method.__name__):
            monkeypatch.setattr(tapeflow.Client, method.__name__, method, raising=False)
