"""Workers racing for the same tasks: each task goes to exactly one of them."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import tapeflow
from tapeflow import activity, workflow
from tapeflow.backends.base import WorkflowTask
from tapeflow.backends.plan import plan_commit
from tapeflow.history import ActivityScheduled, HistoryEvent, WorkflowTaskStarted

LEASE = timedelta(seconds=30)


@activity.defn
def part(number: int) -> int:
    return number


@workflow.defn
async def many_parts(count: int) -> int:
    return sum(await asyncio.gather(*(workflow.execute_activity(part, n) for n in range(count))))


async def test_two_workers_racing_for_one_workflow_task(
    backend: tapeflow.Backend, client: tapeflow.Client
) -> None:
    await client.start_workflow(many_parts, 3, id="contested")
    claims = await asyncio.gather(
        *(backend.claim_workflow_tasks(["many_parts"], f"w{n}", LEASE, 1) for n in range(8))
    )
    winners = [n for n, claimed in enumerate(claims) if claimed]
    assert len(winners) == 1
    assert sum(len(c) for c in claims) == 1


async def test_racing_claimers_share_fifty_activities_without_overlap(
    backend: tapeflow.Backend, client: tapeflow.Client
) -> None:
    await client.start_workflow(many_parts, 50, id="fifty")
    [task] = await backend.claim_workflow_tasks(["many_parts"], "w", LEASE, 1)
    await backend.commit_workflow_task(
        task, plan_commit(_schedule(task, 50), [i.id for i in task.inbox])
    )
    claims = await asyncio.gather(
        *(backend.claim_activity_tasks(["part"], f"w{n}", LEASE, 4) for n in range(20))
    )
    taken = Counter(t.id for claimed in claims for t in claimed)
    assert len(taken) == 50
    assert set(taken.values()) == {1}  # nobody got a task someone else holds
    assert all(t.attempt == 1 for claimed in claims for t in claimed)


def _schedule(task: WorkflowTask, count: int) -> list[HistoryEvent]:
    return [
        WorkflowTaskStarted(at=task.claimed_at),
        *(item.event for item in task.inbox),
        *(ActivityScheduled(seq=n + 1, name="part", args=[n]) for n in range(count)),
    ]
