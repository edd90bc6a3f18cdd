"""The operators' read of who polls for what (the UI's workers page)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import tapeflow
from tapeflow.backends.base import PollerReads, TaskKind


async def test_claims_are_listed_by_kind_and_name(backend: tapeflow.Backend) -> None:
    assert isinstance(backend, PollerReads), f"{backend!r} cannot list its pollers"
    assert await backend.list_pollers() == []
    before = datetime.now(UTC) - timedelta(seconds=5)  # the database's clock may differ a bit
    await backend.claim_workflow_tasks(["shipping", "billing"], "w1", timedelta(seconds=5), 1)
    await backend.claim_activity_tasks(["charge"], "w1", timedelta(seconds=5), 1)

    pollers = await backend.list_pollers()

    assert [(p.kind, p.name) for p in pollers] == [
        (TaskKind.ACTIVITY, "charge"),
        (TaskKind.WORKFLOW, "billing"),
        (TaskKind.WORKFLOW, "shipping"),
    ]
    assert all(p.last_poll_at > before and p.last_poll_at.tzinfo is not None for p in pollers)
