"""next_due tells an idle poller how long to sleep; work already due must say "now"."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import tapeflow
from tapeflow import workflow
from tapeflow.backends.base import TaskKind


@workflow.defn
async def noop() -> None:
    return None


async def test_next_due_counts_down_to_now_and_stays_there(
    backend: tapeflow.Backend, client: tapeflow.Client
) -> None:
    assert await backend.next_due(TaskKind.WORKFLOW, ["noop"]) is None
    start = datetime.now(UTC) + timedelta(seconds=0.3)
    await client.start_workflow(noop, id="later", start_at=start)
    due = await backend.next_due(TaskKind.WORKFLOW, ["noop"])
    assert due is not None
    assert timedelta(seconds=0.1) < due <= timedelta(seconds=0.3)
    assert await backend.next_due(TaskKind.WORKFLOW, ["other"]) is None
    await asyncio.sleep(0.4)
    due = await backend.next_due(TaskKind.WORKFLOW, ["noop"])
    assert due is not None
    assert due <= timedelta(0)  # due already: claim now, do not sleep
    [task] = await backend.claim_workflow_tasks(["noop"], "me", timedelta(seconds=30), 5)
    held = await backend.next_due(TaskKind.WORKFLOW, ["noop"])
    assert held is not None
    assert held > timedelta(seconds=25)  # leased: not before the lease runs out
    assert task.workflow_id == "later"
