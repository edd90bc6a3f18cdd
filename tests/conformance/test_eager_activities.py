"""Eager activities: the commit that schedules an activity leases it to its own worker."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

import tapeflow
from tapeflow import activity, workflow
from tapeflow.backends.base import Take, WorkflowTask
from tapeflow.backends.plan import plan_commit
from tapeflow.history import (
    ActivityCompleted,
    ActivityScheduled,
    Failure,
    HistoryEvent,
    WorkflowTaskStarted,
)
from tests.conformance.plugin import capability
from tests.conftest import WorkerFactory

LEASE = timedelta(seconds=30)


@activity.defn
def square(value: int) -> int:
    return value * value


@workflow.defn
async def sum_of_squares(count: int) -> int:
    squares = await asyncio.gather(*(workflow.execute_activity(square, n) for n in range(count)))
    return sum(squares)


def _scheduling(task: WorkflowTask, count: int) -> list[HistoryEvent]:
    return [
        WorkflowTaskStarted(at=task.claimed_at),
        *(item.event for item in task.inbox),
        *(ActivityScheduled(seq=n + 1, name="square", args=[n]) for n in range(count)),
    ]


async def test_the_commit_leases_eager_activities_and_leaves_the_rest(
    backend: tapeflow.Backend, client: tapeflow.Client
) -> None:
    await client.start_workflow(sum_of_squares, 3, id="eager")
    [task] = await backend.claim_workflow_tasks(["sum_of_squares"], "me", LEASE, 1)
    eager = Take("me", LEASE, frozenset({1, 3}))
    plan = plan_commit(_scheduling(task, 3), [i.id for i in task.inbox])
    taken = await capability(backend).commit_and_take(task, plan, eager)
    assert sorted((t.seq, t.attempt, t.args) for t in taken) == [(1, 1, [0]), (3, 1, [2])]
    others = await backend.claim_activity_tasks(["square"], "other", LEASE, 10)
    assert [t.seq for t in others] == [2]  # the eager ones are ours already

    # the commit's answer was lost: the worker takes them again, under a new token
    reclaimed = await capability(backend).reclaim(task.run_id, eager)
    assert reclaimed.workflow_task is None  # released by the commit
    again = reclaimed.activities
    assert sorted(t.seq for t in again) == [1, 3]
    assert {t.id: t.lease_token for t in again} != {t.id: t.lease_token for t in taken}
    with pytest.raises(tapeflow.LeaseLost):  # the old token no longer writes
        await backend.retry_activity_task(taken[0], Failure("X", "y"), timedelta(0))
    elsewhere = await capability(backend).reclaim(
        task.run_id, Take("else", LEASE, eager.activities)
    )
    assert elsewhere.activities == []


@pytest.mark.parametrize("eager", [True, False], ids=["eager", "claimed"])
async def test_same_history_with_and_without_eager_activities(
    client: tapeflow.Client, worker: WorkerFactory, eager: bool
) -> None:
    async with worker(workflows=[sum_of_squares], activities=[square], eager_activities=eager):
        handle = await client.start_workflow(sum_of_squares, 20, id=f"squares-{eager}")
        assert await handle.result(timeout=20) == sum(n * n for n in range(20))
    history = await client.backend.load_history(handle.id)
    assert sum(e.kind == "activity_completed" for e in history) == 20


async def test_an_activity_outcome_resumes_its_free_workflow_task_for_the_caller(
    backend: tapeflow.Backend, client: tapeflow.Client
) -> None:
    await client.start_workflow(sum_of_squares, 2, id="resume")
    [task] = await backend.claim_workflow_tasks(["sum_of_squares"], "me", LEASE, 1)
    await backend.commit_workflow_task(
        task, plan_commit(_scheduling(task, 2), [i.id for i in task.inbox])
    )
    first, second = sorted(
        await backend.claim_activity_tasks(["square"], "me", LEASE, 2), key=lambda t: t.seq
    )
    resume = Take("me", LEASE)
    done = await capability(backend).complete_and_continue(
        first, ActivityCompleted(seq=1, result=0, attempt=1), resume
    )
    resumed = done.resumed
    assert resumed is not None
    assert not done.committed
    assert [i.event for i in resumed.inbox] == [ActivityCompleted(seq=1, result=0, attempt=1)]
    assert resumed.history_length == len(_scheduling(task, 2))
    # the workflow task is now held: the next outcome is recorded but cannot resume it
    held = await capability(backend).complete_and_continue(
        second, ActivityCompleted(seq=2, result=1, attempt=1), resume
    )
    assert held.resumed is None
    assert await backend.claim_workflow_tasks(["sum_of_squares"], "other", LEASE, 1) == []

    # the answer of the first completion was lost: the caller takes its task again
    again = (await capability(backend).reclaim(task.run_id, resume)).workflow_task
    assert again is not None
    assert again.lease_token != resumed.lease_token
    assert len(again.inbox) == 2
    elsewhere = await capability(backend).reclaim(task.run_id, Take("else", LEASE))
    assert elsewhere.workflow_task is None
