"""A commit refused while the task's lease is still ours (a claim that read an old state
finds at its commit that history moved on) gives the lease back at once: the task runs
again now, not once its lease runs out."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

import tapeflow
from tapeflow import workflow
from tapeflow.backends.base import ActivityTask, Take, WorkflowTask, hand_offs
from tapeflow.backends.plan import CommitPlan, plan_commit
from tapeflow.errors import LeaseLost
from tapeflow.history import HistoryEvent, WorkflowTaskStarted

LEASE = timedelta(seconds=60)


@workflow.defn
async def quick() -> str:
    return "done"


class RefusesFirstCommit:
    """The backend, but for its first commit, refused as a stale claim's would be. It has
    the hand-off capability when the backend has it (the rest of it passes through)."""

    def __init__(self, backend: tapeflow.Backend) -> None:
        self._backend = backend
        self.refused = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    async def commit_workflow_task(self, task: WorkflowTask, plan: CommitPlan) -> None:
        self._refuse_first(task)
        await self._backend.commit_workflow_task(task, plan)

    async def commit_and_take(
        self, task: WorkflowTask, plan: CommitPlan, take: Take
    ) -> list[ActivityTask]:
        self._refuse_first(task)
        capability = hand_offs(self._backend)
        assert capability is not None
        return await capability.commit_and_take(task, plan, take)

    def _refuse_first(self, task: WorkflowTask) -> None:
        if not self.refused:
            self.refused += 1
            raise LeaseLost(f"workflow task {task.workflow_id!r}: history moved on")


async def test_a_refused_commit_gives_its_lease_back_at_once(
    backend: tapeflow.Backend, client: tapeflow.Client, cache_size: int
) -> None:
    refusing = RefusesFirstCommit(backend)
    worker = tapeflow.Worker(
        refusing,
        workflows=[quick],
        lease_duration=LEASE,
        poll_interval=timedelta(milliseconds=50),
        workflow_cache_size=cache_size,
    )
    async with worker:
        handle = await client.start_workflow(quick, id="refused-once")
        assert await handle.result(timeout=10) == "done"  # far sooner than the lease
    assert refusing.refused == 1


async def test_a_commit_after_its_lease_was_given_back_is_refused(
    backend: tapeflow.Backend, client: tapeflow.Client
) -> None:
    """Fencing holds for a lease released with its token unchanged (given back)."""
    await client.start_workflow(quick, id="given-back")
    [task] = await backend.claim_workflow_tasks(["quick"], "w", LEASE, 1)
    await backend.abandon_workflow_task(task, None, timedelta(0))
    events: list[HistoryEvent] = [
        WorkflowTaskStarted(at=task.claimed_at),
        *(i.event for i in task.inbox),
    ]
    with pytest.raises(LeaseLost):
        await backend.commit_workflow_task(task, plan_commit(events, [i.id for i in task.inbox]))
    assert (await client.describe("given-back")).history_length == 0
