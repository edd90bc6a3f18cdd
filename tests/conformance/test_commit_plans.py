"""The parts of a commit plan that no decision makes yet, driven by hand through the
protocol: a workflow writing to another's inbox, creating workflows and the next run of its
own, cancelling activities; the hand-offs (taking work, reclaiming it); and refused plans,
which write nothing."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import tapeflow
from tapeflow.backends.base import (
    ActivityTask,
    HandOffs,
    NewWorkflow,
    Reclaimed,
    RunAhead,
    Take,
    TaskKind,
    WorkflowStatus,
    WorkflowTask,
)
from tapeflow.backends.plan import CommitPlan, NewInboxEvent, plan_commit
from tapeflow.backends.wakeups import work_topic
from tapeflow.errors import ActivityTaskGone, LeaseLost, UnseenEvents
from tapeflow.history import (
    ActivityCancelled,
    ActivityCompleted,
    ActivityScheduled,
    EventReceived,
    Failure,
    HistoryEvent,
    WorkflowExecutionCompleted,
    WorkflowExecutionStarted,
    WorkflowTaskStarted,
    encode_event,
)
from tests.conformance._stored import stored
from tests.conformance.plugin import capability

LEASE = timedelta(seconds=30)
PING = EventReceived(name="ping", payload=1)
OUTCOME = ActivityCompleted(seq=1, result=1, attempt=1)
RUN_NUMBERS = "SELECT run_number FROM workflows WHERE id = {} ORDER BY run_number"
INBOX_OF = "SELECT count(*) FROM inbox JOIN workflows w USING (run_id) WHERE w.id = {}"


async def test_an_inbox_row_for_another_workflow_lands_in_its_latest_run_and_wakes_it(
    backend: tapeflow.Backend,
) -> None:
    await _running(backend, "sender")
    receiver = await _running(backend, "receiver")
    second = await _continue(backend, receiver)
    await _run_once(backend, "receiver")  # the second run is running, its inbox empty
    await backend.send_event("sender", "go", None)
    task = await _claim(backend, "sender")

    with backend.watch([work_topic(TaskKind.WORKFLOW, "receiver")]) as watch:
        await backend.commit_workflow_task(task, _plan(task, inbox=(_ping_for("receiver"),)))
        assert await watch.wait(5)

    delivered = await _claim(backend, "receiver")
    assert delivered.run_id == second.run_id
    assert [item.event for item in delivered.inbox] == [PING]


async def test_an_inbox_row_for_a_finished_or_unknown_workflow_is_dropped(
    backend: tapeflow.Backend, backend_url: str
) -> None:
    await _running(backend, "sender")
    await _finished(backend, "receiver")
    await backend.send_event("sender", "go", None)
    task = await _claim(backend, "sender")

    rows = (_ping_for("receiver"), _ping_for("nobody"))
    await backend.commit_workflow_task(task, _plan(task, inbox=rows))

    assert (await backend.get_workflow("receiver")).status is WorkflowStatus.COMPLETED
    assert stored(backend_url, INBOX_OF, "receiver") == [(0,)]
    with pytest.raises(tapeflow.WorkflowNotFound):
        await backend.get_workflow("nobody")


async def test_workflows_in_a_plan_are_created_as_first_runs(
    backend: tapeflow.Backend, backend_url: str
) -> None:
    await _running(backend, "parent")
    await backend.send_event("parent", "go", None)
    task = await _claim(backend, "parent")
    child = NewWorkflow("child", "child", "1", ["hello"], None)

    with backend.watch([work_topic(TaskKind.WORKFLOW, "child")]) as watch:
        await backend.commit_workflow_task(task, _plan(task, workflows=(child,)))
        assert await watch.wait(5)

    described = await backend.get_workflow("child")
    assert (described.run_id, described.status) == (child.run_id, WorkflowStatus.PENDING)
    assert stored(backend_url, RUN_NUMBERS, "child") == [(1,)]
    started = await _claim(backend, "child")
    assert started.run_id == child.run_id
    assert [type(item.event) for item in started.inbox] == [WorkflowExecutionStarted]


async def test_a_plan_starts_no_run_over_an_unfinished_one(
    backend: tapeflow.Backend, backend_url: str
) -> None:
    running = await _running(backend, "child")
    await _running(backend, "parent")
    await backend.send_event("parent", "go", None)
    task = await _claim(backend, "parent")

    again = NewWorkflow("child", "child", "1", ["again"], None)
    await backend.commit_workflow_task(task, _plan(task, workflows=(again,)))

    assert (await backend.get_workflow("child")).run_id == running.run_id
    assert stored(backend_url, RUN_NUMBERS, "child") == [(1,)]


async def test_a_plan_that_ends_its_run_may_start_the_next_run_of_its_own_id(
    backend: tapeflow.Backend, backend_url: str
) -> None:
    first = await _running(backend, "looping")
    old_history = await backend.load_history("looping")

    second = await _continue(backend, first)

    assert stored(backend_url, RUN_NUMBERS, "looping") == [(1,), (2,)]
    latest = await backend.get_workflow("looping")
    assert (latest.run_id, latest.status) == (second.run_id, WorkflowStatus.PENDING)
    ended = await backend.get_workflow("looping", first.run_id)
    assert (ended.run_id, ended.status) == (first.run_id, WorkflowStatus.COMPLETED)
    ended_history = await backend.load_history("looping", first.run_id)
    assert ended_history[: len(old_history)] == old_history
    assert isinstance(ended_history[-1], WorkflowExecutionCompleted)
    assert await backend.load_history("looping") == []  # the new run has not run yet
    await _running(backend, "another")
    with pytest.raises(tapeflow.WorkflowNotFound):  # not a run of that workflow
        await backend.load_history("another", first.run_id)

    await backend.send_event("looping", "ping", 1)  # the latest run takes events
    task = await _claim(backend, "looping")
    assert (task.run_id, task.history_length) == (second.run_id, 0)
    assert [type(item.event) for item in task.inbox] == [WorkflowExecutionStarted, EventReceived]


async def test_cancelled_activities_deletes_the_runs_activity_tasks(
    backend: tapeflow.Backend,
) -> None:
    for workflow_id in ("cancelling", "bystander"):
        await backend.create_workflow(NewWorkflow(workflow_id, workflow_id, "1", [], None))
        task = await _claim(backend, workflow_id)
        await backend.commit_workflow_task(task, _plan(task, _schedule(1), _schedule(2)))
    await backend.send_event("cancelling", "stop", None)
    task = await _claim(backend, "cancelling")

    await backend.commit_workflow_task(task, _plan(task, cancelled_activities=(1,)))

    left = await backend.claim_activity_tasks(["act"], "w", LEASE, 10)
    assert sorted((a.workflow_id, a.seq) for a in left) == [
        ("bystander", 1),
        ("bystander", 2),
        ("cancelling", 2),
    ]


async def test_an_outcome_for_a_cancelled_activity_is_refused_as_gone_not_as_lost(
    backend: tapeflow.Backend,
) -> None:
    await backend.create_workflow(NewWorkflow("gone", "gone", "1", [], None))
    task = await _claim(backend, "gone")
    await backend.commit_workflow_task(task, _plan(task, _schedule(1), _schedule(2)))
    first, second = sorted(
        await backend.claim_activity_tasks(["act"], "w", LEASE, 10), key=lambda a: a.seq
    )
    await backend.send_event("gone", "stop", None)
    task = await _claim(backend, "gone")
    await backend.commit_workflow_task(task, _plan(task, ActivityCancelled(seq=1)))

    with pytest.raises(ActivityTaskGone):
        await backend.complete_activity_task(first, OUTCOME)
    with pytest.raises(ActivityTaskGone):
        await backend.retry_activity_task(first, Failure("E", "e"), timedelta(0))
    taken_over = replace(second, lease_token=second.lease_token + 1)
    with pytest.raises(LeaseLost) as lost:
        await backend.complete_activity_task(taken_over, OUTCOME)
    assert not isinstance(lost.value, ActivityTaskGone)  # held by another: a real loss
    await backend.complete_activity_task(second, replace(OUTCOME, seq=2))


async def test_commit_and_take_leases_the_taken_activities_and_makes_the_task_sticky(
    backend: tapeflow.Backend,
) -> None:
    handing = capability(backend)
    await backend.create_workflow(NewWorkflow("taking", "taking", "1", [], None))
    task = await _claim(backend, "taking")

    take = Take("me", LEASE, frozenset({1}))
    [taken] = await handing.commit_and_take(task, _plan(task, _schedule(1), _schedule(2)), take)

    assert (taken.run_id, taken.seq, taken.attempt) == (task.run_id, 1, 1)
    [other] = await backend.claim_activity_tasks(["act"], "other", LEASE, 10)
    assert other.seq == 2  # the taken one is leased to "me" already
    await backend.complete_activity_task(taken, OUTCOME)
    assert await backend.claim_workflow_tasks(["taking"], "other", LEASE, 10) == []
    assert (await _claim(backend, "taking", owner="me")).run_id == task.run_id


async def test_the_core_commit_leaves_the_next_task_to_any_worker(
    backend: tapeflow.Backend,
) -> None:
    await _running(backend, "plain")
    await backend.send_event("plain", "ping", 1)
    assert (await _claim(backend, "plain", owner="anyone")).workflow_id == "plain"


async def test_reclaim_returns_what_a_take_leased(backend: tapeflow.Backend) -> None:
    handing = capability(backend)
    await backend.create_workflow(NewWorkflow("lost", "lost", "1", [], None))
    task = await _claim(backend, "lost")
    take = Take("me", LEASE, frozenset({1}))
    [taken] = await handing.commit_and_take(task, _plan(task, _schedule(1)), take)

    reclaimed = await handing.reclaim(task.run_id, take)
    assert reclaimed.workflow_task is None  # the commit released it
    [again] = reclaimed.activities
    assert (again.id, again.attempt) == (taken.id, 1)
    assert again.lease_token != taken.lease_token
    other = replace(take, owner="other")
    assert (await handing.reclaim(task.run_id, other)).activities == []

    continued = await handing.complete_and_continue(again, OUTCOME, take)
    assert continued.resumed is not None
    assert await handing.reclaim(task.run_id, other) == Reclaimed(None, [])
    reclaimed = await handing.reclaim(task.run_id, take)
    resumed = reclaimed.workflow_task
    assert resumed is not None
    assert resumed.lease_token != continued.resumed.lease_token
    assert [item.event for item in resumed.inbox] == [OUTCOME]
    with pytest.raises(LeaseLost):  # only the reclaimed lease holds
        await backend.commit_workflow_task(continued.resumed, _plan(continued.resumed))
    await backend.commit_workflow_task(resumed, _plan(resumed))


async def test_a_run_ahead_commits_with_the_activitys_outcome(backend: tapeflow.Backend) -> None:
    handing, activity, take = await _taken_activity(backend)
    length = (await backend.get_workflow("ahead")).history_length
    ahead = RunAhead(length, _ahead_plan(_schedule(2)))

    continued = await handing.complete_and_continue(activity, OUTCOME, take, ahead)

    assert (continued.committed, continued.resumed) == (True, None)
    assert [(a.seq, a.attempt) for a in continued.activities] == [(2, 1)]
    history = await backend.load_history("ahead")
    assert history[length + 1 :] == [OUTCOME, _schedule(2)]


@pytest.mark.parametrize("refusal", ["history moved on", "unseen events"])
async def test_a_refused_run_ahead_leaves_the_outcome_to_the_resumed_task(
    backend: tapeflow.Backend, refusal: str
) -> None:
    handing, activity, take = await _taken_activity(backend)
    length = (await backend.get_workflow("ahead")).history_length
    if refusal == "unseen events":
        await backend.send_event("ahead", "late", None)
    expected = length - 1 if refusal == "history moved on" else length
    ahead = RunAhead(expected, _ahead_plan(WorkflowExecutionCompleted(result=1)))

    continued = await handing.complete_and_continue(activity, OUTCOME, take, ahead)

    assert (continued.committed, continued.activities) == (False, [])
    assert continued.resumed is not None
    assert [item.event for item in continued.resumed.inbox][-1] == OUTCOME
    described = await backend.get_workflow("ahead")
    assert (described.status, described.history_length) == (WorkflowStatus.RUNNING, length)


async def test_a_plan_on_a_stale_history_length_writes_nothing(
    backend: tapeflow.Backend, backend_url: str
) -> None:
    task = await _everything_to_lose(backend)
    stale = replace(task, history_length=task.history_length - 1)
    with pytest.raises(LeaseLost):
        await backend.commit_workflow_task(stale, _everything(stale))
    await _nothing_written(backend, backend_url, task)


async def test_a_plan_on_a_lost_lease_writes_nothing(
    backend: tapeflow.Backend, backend_url: str
) -> None:
    task = await _everything_to_lose(backend, lease=timedelta(milliseconds=100))
    await asyncio.sleep(0.2)
    with pytest.raises(LeaseLost):
        await backend.commit_workflow_task(task, _everything(task))
    await _nothing_written(backend, backend_url, task)


async def test_a_plan_ending_the_run_past_unseen_events_writes_nothing(
    backend: tapeflow.Backend, backend_url: str
) -> None:
    task = await _everything_to_lose(backend)
    await backend.send_event("refused", "late", None)
    ending = WorkflowExecutionCompleted(result=None)
    with pytest.raises(UnseenEvents):
        await backend.commit_workflow_task(task, _everything(task, ending))
    await _nothing_written(backend, backend_url, task)


# -- scenery -------------------------------------------------------------------------------


async def _taken_activity(backend: tapeflow.Backend) -> tuple[HandOffs, ActivityTask, Take]:
    """A workflow "ahead" whose first task scheduled activity 1 and took it."""
    handing = capability(backend)
    await backend.create_workflow(NewWorkflow("ahead", "ahead", "1", [], None))
    task = await _claim(backend, "ahead")
    take = Take("me", LEASE, frozenset({1, 2}))
    [activity] = await handing.commit_and_take(task, _plan(task, _schedule(1)), take)
    return handing, activity, take


def _ahead_plan(*decisions: HistoryEvent) -> CommitPlan:
    """A task run ahead on activity 1's outcome alone."""
    return plan_commit([WorkflowTaskStarted(at=datetime.now(UTC)), OUTCOME, *decisions])


def _plan(task: WorkflowTask, *decisions: HistoryEvent, **parts: Any) -> CommitPlan:
    """What a worker commits for ``task``: its start, the inbox it consumed, ``decisions``,
    with the plan ``parts`` no decision makes yet."""
    events = [WorkflowTaskStarted(at=task.claimed_at), *(i.event for i in task.inbox), *decisions]
    return replace(plan_commit(events, [i.id for i in task.inbox]), **parts)


def _schedule(seq: int) -> ActivityScheduled:
    return ActivityScheduled(seq=seq, name="act", args=[seq], retry=None)


def _ping_for(workflow_id: str) -> NewInboxEvent:
    return NewInboxEvent(encode_event(PING), workflow_id=workflow_id)


async def _claim(
    backend: tapeflow.Backend, name: str, owner: str = "w", lease: timedelta = LEASE
) -> WorkflowTask:
    [task] = await backend.claim_workflow_tasks([name], owner, lease, 10)
    return task


async def _running(backend: tapeflow.Backend, workflow_id: str) -> NewWorkflow:
    """A workflow (named as its id) whose first task committed: running, its inbox empty."""
    new = NewWorkflow(workflow_id, workflow_id, "1", [workflow_id], None)
    await backend.create_workflow(new)
    await _run_once(backend, workflow_id)
    return new


async def _run_once(backend: tapeflow.Backend, name: str) -> None:
    """Claim a task of the workflow ``name`` and commit what it saw, deciding nothing."""
    task = await _claim(backend, name)
    await backend.commit_workflow_task(task, _plan(task))


async def _finished(backend: tapeflow.Backend, workflow_id: str) -> None:
    await backend.create_workflow(NewWorkflow(workflow_id, workflow_id, "1", [], None))
    task = await _claim(backend, workflow_id)
    await backend.commit_workflow_task(task, _plan(task, WorkflowExecutionCompleted(result=1)))


async def _continue(backend: tapeflow.Backend, run: NewWorkflow) -> NewWorkflow:
    """End the running ``run`` with a plan that starts the next run of its id."""
    await backend.send_event(run.id, "continue", None)
    task = await _claim(backend, run.name)
    assert task.run_id == run.run_id
    following = NewWorkflow(run.id, run.name, run.version, ["next"], None, id_reuse="allow")
    ending = WorkflowExecutionCompleted(result=None)
    await backend.commit_workflow_task(task, _plan(task, ending, workflows=(following,)))
    return following


async def _everything_to_lose(backend: tapeflow.Backend, lease: timedelta = LEASE) -> WorkflowTask:
    """The claimed task of a running workflow "refused", with a workflow "bystander" running
    beside it (its inbox empty)."""
    await _running(backend, "bystander")
    await _running(backend, "refused")
    await backend.send_event("refused", "go", None)
    return await _claim(backend, "refused", lease=lease)


def _everything(task: WorkflowTask, *decisions: HistoryEvent) -> CommitPlan:
    """A plan for ``task`` with a part of every kind."""
    return _plan(
        task,
        _schedule(1),
        *decisions,
        inbox=(_ping_for("bystander"), NewInboxEvent(encode_event(PING))),
        workflows=(NewWorkflow("spawned", "spawned", "1", [], None),),
    )


async def _nothing_written(backend: tapeflow.Backend, url: str, task: WorkflowTask) -> None:
    described = await backend.get_workflow("refused")
    assert (described.status, described.history_length) == (
        WorkflowStatus.RUNNING,
        task.history_length,
    )
    assert len(await backend.load_history("refused")) == task.history_length
    assert await backend.claim_activity_tasks(["act"], "w", LEASE, 10) == []
    assert await backend.claim_workflow_tasks(["bystander"], "w", LEASE, 10) == []
    assert stored(url, RUN_NUMBERS, "spawned") == []
    with contextlib.suppress(LeaseLost):  # the lease may be gone: the inbox is as it was
        await backend.abandon_workflow_task(task, None, timedelta(0))
    again = await _claim(backend, "refused", owner="other")
    assert [item.id for item in again.inbox][: len(task.inbox)] == [i.id for i in task.inbox]
    assert PING not in [item.event for item in again.inbox]
