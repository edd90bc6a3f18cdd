"""Continuations: the worker that ran an activity runs the workflow's next task on its cached
instance and commits it with the activity's outcome, in one transaction; when it cannot (the
task is held, the history moved on), the outcome is recorded alone and nothing is lost."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import tapeflow
from tapeflow import activity, workflow
from tapeflow._worker.clock import BackendClock
from tapeflow.backends.base import (
    STICKY_FOR,
    Continued,
    RunAhead,
    Take,
    TaskKind,
    WorkflowTask,
    hand_offs,
)
from tapeflow.backends.plan import plan_commit
from tapeflow.history import (
    ActivityCompleted,
    ActivityScheduled,
    HistoryEvent,
    WorkflowExecutionCompleted,
    WorkflowTaskStarted,
)
from tapeflow.testing import replay
from tests.conformance.plugin import capability
from tests.conftest import WorkerFactory

LEASE = timedelta(seconds=30)
STEPS = 6


@activity.defn
async def double(value: int) -> int:
    return value * 2


@workflow.defn
async def doubling(value: int) -> int:
    for _ in range(STEPS):
        value = await workflow.execute_activity(double, value)
    return value


def _counting(backend: tapeflow.Backend, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count the backend's run-ahead tasks by what they did, and its workflow task claims."""
    counts: Counter[str] = Counter()
    claim = backend.claim_workflow_tasks
    handing = hand_offs(backend)
    if handing is not None:
        complete_and_continue = handing.complete_and_continue

        async def counted_continue(*args: Any) -> Continued:
            done = await complete_and_continue(*args)
            if len(args) > 3 and args[3] is not None:  # it ran the next task ahead
                counts["committed" if done.committed else "fell back"] += 1
            return done

        monkeypatch.setattr(backend, "complete_and_continue", counted_continue)

    async def counted_claim(*args: Any) -> list[WorkflowTask]:
        tasks = await claim(*args)
        counts["claimed"] += len(tasks)
        return tasks

    monkeypatch.setattr(backend, "claim_workflow_tasks", counted_claim)
    return counts


async def test_every_activity_continues_its_cached_workflow(
    backend: tapeflow.Backend,
    client: tapeflow.Client,
    worker: WorkerFactory,
    cache_size: int,
    handoffs: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counts = _counting(backend, monkeypatch)
    async with worker(workflows=[doubling], activities=[double]):
        handle = await client.start_workflow(doubling, 1, id="doubling")
        assert await handle.result(timeout=20) == 2**STEPS
    history = await backend.load_history("doubling")
    replay(doubling, history)  # a history that replays: the same as the usual path makes
    assert sum(isinstance(e, ActivityCompleted) for e in history) == STEPS
    if not handoffs:  # every outcome recorded alone, every next task claimed
        assert counts == {"claimed": STEPS + 1}
    elif cache_size:  # one claim (the start); every outcome committed with the next task
        assert counts == {"claimed": 1, "committed": STEPS}
    else:  # no cached instance to run ahead: outcomes are recorded alone
        assert counts["committed"] == counts["fell back"] == 0


def _scheduling(task: WorkflowTask) -> list[HistoryEvent]:
    return [
        WorkflowTaskStarted(at=task.claimed_at),
        *(item.event for item in task.inbox),
        ActivityScheduled(seq=1, name="double", args=[1]),
    ]


async def _running_activity(
    backend: tapeflow.Backend, client: tapeflow.Client, workflow_id: str
) -> tuple[WorkflowTask, list[HistoryEvent], Any]:
    await client.start_workflow(doubling, 1, id=workflow_id)
    [task] = await backend.claim_workflow_tasks(["doubling"], "me", LEASE, 1)
    events = _scheduling(task)
    plan = plan_commit(events, [i.id for i in task.inbox])
    [taken] = await capability(backend).commit_and_take(
        task, plan, Take("me", LEASE, frozenset({1}))
    )
    return task, events, taken


async def test_a_continuation_commits_the_outcome_and_the_next_task_together(
    backend: tapeflow.Backend, client: tapeflow.Client
) -> None:
    task, events, taken = await _running_activity(backend, client, "together")
    outcome = ActivityCompleted(seq=1, result=2, attempt=1)
    ahead: list[HistoryEvent] = [
        WorkflowTaskStarted(at=task.claimed_at),
        outcome,
        ActivityScheduled(seq=2, name="double", args=[2]),
    ]
    done = await capability(backend).complete_and_continue(
        taken,
        outcome,
        Take("me", LEASE, frozenset({2})),
        RunAhead(len(events), plan_commit(ahead)),
    )
    assert done.committed
    assert done.resumed is None
    assert [(t.seq, t.args) for t in done.activities] == [(2, [2])]
    assert await backend.load_history("together") == [*events, *ahead]
    assert await backend.claim_workflow_tasks(["doubling"], "me", LEASE, 1) == []  # no inbox


async def test_a_continuation_on_a_moved_history_records_the_outcome_alone(
    backend: tapeflow.Backend, client: tapeflow.Client
) -> None:
    task, events, taken = await _running_activity(backend, client, "moved")
    outcome = ActivityCompleted(seq=1, result=2, attempt=1)
    stale: list[HistoryEvent] = [
        WorkflowTaskStarted(at=task.claimed_at),
        outcome,
        WorkflowExecutionCompleted(result=2),
    ]
    done = await capability(backend).complete_and_continue(
        taken, outcome, Take("me", LEASE), RunAhead(len(events) - 1, plan_commit(stale))
    )
    assert not done.committed
    assert done.activities == []
    assert done.resumed is not None  # the task was free: leased to us, the outcome inside
    assert [i.event for i in done.resumed.inbox] == [outcome]
    assert done.resumed.history_length == len(events)
    assert await backend.load_history("moved") == events  # nothing of the stale task
    assert (await client.describe("moved")).status is tapeflow.WorkflowStatus.RUNNING


async def test_a_continuation_while_the_task_is_held_leaves_it_to_the_holder(
    backend: tapeflow.Backend, client: tapeflow.Client
) -> None:
    task, events, taken = await _running_activity(backend, client, "held")
    await client.send_event("held", "poke", 1)
    [holder] = await backend.claim_workflow_tasks(["doubling"], "me", LEASE, 1)  # for the event
    outcome = ActivityCompleted(seq=1, result=2, attempt=1)
    ahead: list[HistoryEvent] = [WorkflowTaskStarted(at=task.claimed_at), outcome]
    done = await capability(backend).complete_and_continue(
        taken, outcome, Take("me", LEASE), RunAhead(len(events), plan_commit(ahead))
    )
    assert done == Continued(committed=False, activities=[], resumed=None)
    assert await backend.load_history("held") == events
    # the holder's task ends: the outcome waits in the inbox for the next one
    await backend.commit_workflow_task(
        holder,
        plan_commit([WorkflowTaskStarted(at=holder.claimed_at)], [i.id for i in holder.inbox]),
    )
    [next_task] = await backend.claim_workflow_tasks(["doubling"], "me", LEASE, 1)
    assert [i.event for i in next_task.inbox] == [outcome]


async def test_a_continuation_with_a_lost_activity_lease_writes_nothing(
    backend: tapeflow.Backend, client: tapeflow.Client
) -> None:
    task, events, taken = await _running_activity(backend, client, "lost")
    outcome = ActivityCompleted(seq=1, result=2, attempt=1)
    await backend.complete_activity_task(taken, outcome)  # recorded once already
    ahead: list[HistoryEvent] = [WorkflowTaskStarted(at=task.claimed_at), outcome]
    with pytest.raises(tapeflow.LeaseLost):
        await capability(backend).complete_and_continue(
            taken, outcome, Take("me", LEASE), RunAhead(len(events), plan_commit(ahead))
        )
    assert await backend.load_history("lost") == events


def test_the_backend_clock_runs_on_from_its_last_reading() -> None:
    clock = BackendClock()
    assert clock.now() is None  # no reading yet: nothing is run ahead
    reading = datetime(2020, 1, 1, tzinfo=UTC)  # the backend's time, not this machine's
    clock.observe(reading)
    first = clock.now()
    assert first is not None
    assert reading <= first < reading + timedelta(seconds=1)
    time.sleep(0.01)
    later = clock.now()
    assert later is not None
    assert later >= first + timedelta(milliseconds=10)


async def test_a_workflow_task_waits_a_moment_for_the_worker_holding_its_instance(
    backend: tapeflow.Backend, client: tapeflow.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    *_, taken = await _running_activity(backend, client, "sticky")
    outcome = ActivityCompleted(seq=1, result=2, attempt=1)
    # another worker ran the activity: it may not resume a task sticky to "me"
    done = await capability(backend).complete_and_continue(taken, outcome, Take("other", LEASE))
    assert done.resumed is None
    assert await backend.claim_workflow_tasks(["doubling"], "other", LEASE, 1) == []
    due = await backend.next_due(TaskKind.WORKFLOW, ["doubling"], "other")
    assert due is not None
    assert timedelta(0) < due <= STICKY_FOR  # others are told to look again when it is theirs
    mine_due = await backend.next_due(TaskKind.WORKFLOW, ["doubling"], "me")
    assert mine_due is not None
    assert mine_due <= timedelta(0)
    [mine] = await backend.claim_workflow_tasks(["doubling"], "me", LEASE, 1)
    assert [i.event for i in mine.inbox] == [outcome]


async def test_a_sticky_task_goes_to_others_once_it_has_waited(
    backend: tapeflow.Backend, client: tapeflow.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(f"{type(backend).__module__}.STICKY_FOR", timedelta(milliseconds=200))
    *_, taken = await _running_activity(backend, client, "stolen")
    await backend.complete_activity_task(taken, ActivityCompleted(seq=1, result=2, attempt=1))
    assert await backend.claim_workflow_tasks(["doubling"], "other", LEASE, 1) == []
    await asyncio.sleep(0.25)  # "me" is busy or gone
    [stolen] = await backend.claim_workflow_tasks(["doubling"], "other", LEASE, 1)
    assert stolen.workflow_id == "stolen"
