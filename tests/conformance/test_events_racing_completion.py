"""Every event that ``send_event`` accepted is in the workflow's history, whatever it races
with: an event that arrives while the workflow's final task is in flight makes that
completion run again with the event in view; an event to an ended workflow is refused."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

import tapeflow
from tapeflow import activity, workflow
from tapeflow.backends.base import RunAhead, Take, WorkflowTask
from tapeflow.backends.plan import plan_commit
from tapeflow.errors import UnseenEvents
from tapeflow.history import (
    ActivityCompleted,
    ActivityScheduled,
    EventReceived,
    HistoryEvent,
    WorkflowExecutionCompleted,
    WorkflowTaskStarted,
)
from tests.conformance._waiting import has_run, history
from tests.conformance.plugin import capability
from tests.conftest import WorkerFactory

LEASE = timedelta(seconds=30)


@workflow.defn
async def ends_at_once() -> str:
    return "done"


@workflow.defn
async def ends_on_go() -> list[Any]:
    """Ends as soon as "go" arrives, reporting the other events it had seen by then."""
    seen: list[Any] = []
    workflow.on_event("late", seen.append)
    await workflow.wait_event("go")
    return seen


@activity.defn
def noop() -> None:
    return None


def _ending(task: WorkflowTask) -> list[HistoryEvent]:
    return [
        WorkflowTaskStarted(at=task.claimed_at),
        *(item.event for item in task.inbox),
        WorkflowExecutionCompleted(result="done"),
    ]


async def _claim(backend: tapeflow.Backend, owner: str = "w") -> WorkflowTask:
    [task] = await backend.claim_workflow_tasks(["ends_at_once"], owner, LEASE, 1)
    return task


async def test_an_event_sent_while_the_final_task_runs_makes_it_run_again(
    backend: tapeflow.Backend, client: tapeflow.Client
) -> None:
    await client.start_workflow(ends_at_once, id="race")
    task = await _claim(backend)
    await client.send_event("race", "late", 1)  # after the task read its inbox
    with pytest.raises(UnseenEvents):
        await backend.commit_workflow_task(
            task, plan_commit(_ending(task), [i.id for i in task.inbox])
        )
    assert (await client.describe("race")).status is not tapeflow.WorkflowStatus.COMPLETED
    await backend.abandon_workflow_task(task, None, timedelta(0))  # as its worker gives it back
    again = await _claim(backend)  # at once, to the same worker
    assert [type(i.event) for i in again.inbox][-1] is EventReceived
    await backend.commit_workflow_task(
        again, plan_commit(_ending(again), [i.id for i in again.inbox])
    )
    events = await history(client, "race")
    assert EventReceived(name="late", payload=1) in events
    with pytest.raises(tapeflow.WorkflowAlreadyCompleted):
        await client.send_event("race", "later", 2)


async def test_a_task_that_does_not_end_the_workflow_leaves_new_events_for_the_next(
    backend: tapeflow.Backend, client: tapeflow.Client
) -> None:
    await client.start_workflow(ends_at_once, id="goes-on")
    task = await _claim(backend)
    await client.send_event("goes-on", "late", 1)
    started = [WorkflowTaskStarted(at=task.claimed_at), *(i.event for i in task.inbox)]
    await backend.commit_workflow_task(task, plan_commit(started, [i.id for i in task.inbox]))
    again = await _claim(backend)
    assert [i.event for i in again.inbox] == [EventReceived(name="late", payload=1)]


async def test_a_continuation_that_would_end_past_an_unseen_event_records_the_outcome_only(
    backend: tapeflow.Backend, client: tapeflow.Client
) -> None:
    await client.start_workflow(ends_at_once, id="ahead")
    task = await _claim(backend, "w")
    scheduled = ActivityScheduled(seq=1, name="noop", args=[])
    first = [WorkflowTaskStarted(at=task.claimed_at), *(i.event for i in task.inbox), scheduled]
    await backend.commit_workflow_task(task, plan_commit(first, [i.id for i in task.inbox]))
    [attempt] = await backend.claim_activity_tasks(["noop"], "w", LEASE, 1)
    await client.send_event("ahead", "late", 1)
    outcome = ActivityCompleted(seq=1, result=None, attempt=1)
    resume = Take(owner="w", lease=LEASE)
    ahead: list[HistoryEvent] = [
        WorkflowTaskStarted(at=task.claimed_at),
        outcome,
        WorkflowExecutionCompleted(result="done"),
    ]
    done = await capability(backend).complete_and_continue(
        attempt, outcome, resume, RunAhead(len(first), plan_commit(ahead))
    )
    assert not done.committed
    assert done.resumed is not None  # leased to the worker, with both in view
    assert [i.event for i in done.resumed.inbox] == [
        EventReceived(name="late", payload=1),
        outcome,
    ]
    assert (await client.describe("ahead")).status is tapeflow.WorkflowStatus.RUNNING


async def test_events_racing_completion_with_workers_all_reach_history(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    """Senders go on sending after "go" until refused or done, so sends land while the
    final task runs. (A stream that never stops would keep the workflow from ending: each
    completion runs again to see what came, as it must.)"""

    async def keep_sending(workflow_id: str) -> list[int]:
        accepted = []
        for n in range(40):
            try:
                await client.send_event(workflow_id, "late", n)
            except tapeflow.WorkflowAlreadyCompleted:
                break
            accepted.append(n)
            if n == 3:
                await client.send_event(workflow_id, "go")
        return accepted

    async with worker(workflows=[ends_on_go]):
        ids = [f"racing-{n}" for n in range(10)]
        for workflow_id in ids:
            await client.start_workflow(ends_on_go, id=workflow_id)
        await asyncio.gather(*(has_run(client, workflow_id) for workflow_id in ids))
        accepted = await asyncio.gather(*(keep_sending(workflow_id) for workflow_id in ids))
        results = [await client.get_handle(w).result(timeout=20) for w in ids]
    for workflow_id, sent, seen in zip(ids, accepted, results, strict=True):
        events = await history(client, workflow_id)
        late = [e.payload for e in events if isinstance(e, EventReceived) and e.name == "late"]
        assert late == sent, f"{workflow_id}: accepted {sent}, in history {late}"
        assert seen == late, "the workflow saw every one before it ended"
        assert isinstance(events[-1], WorkflowExecutionCompleted)
