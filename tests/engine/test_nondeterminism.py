"""Replaying a history the code no longer matches raises NonDeterminismError naming the event.

Each test records a history live with one version of a workflow, then replays it with a
changed version registered under the same name. History positions are 1-based:
#1 workflow_task_started, #2 workflow_started, #3 the first decision, and so on.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from tapeflow import NonDeterminismError, activity, workflow
from tapeflow._engine.replay import replay_new, split_activations
from tapeflow.history import (
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    EventReceived,
    HistoryEvent,
    TimerCancelled,
    TimerFired,
    TimerStarted,
    WorkflowExecutionCompleted,
    WorkflowTaskStarted,
)
from tests.engine.conftest import RunFactory
from tests.engine.harness import WORKFLOW_ID, at, definition, failure, started


@activity.defn
def add(a: int, b: int) -> int:
    return a + b


@activity.defn
def sub(a: int, b: int) -> int:
    return a - b


@workflow.defn(name="pay")
async def pay_v1(x: int) -> int:
    first = await workflow.execute_activity(add, x, 1)
    await workflow.sleep(timedelta(minutes=5))
    return await workflow.execute_activity(add, first, 2)


def recorded(run: RunFactory) -> list[HistoryEvent]:
    """#1 task #2 start #3 add(10,1) | #4 task #5 done #6 timer | #7 task #8 fired #9 add(11,2)
    | #10 task #11 done #12 completed."""
    wf = run(pay_v1)
    wf.start(10)
    wf.step(at(1), ActivityCompleted(seq=1, result=11, attempt=1))
    wf.step(at(301), TimerFired(seq=2))
    wf.step(at(302), ActivityCompleted(seq=3, result=13, attempt=1))
    assert len(wf.history) == 12
    return wf.history


def replay_with(function: Callable[..., Any], history: list[HistoryEvent]) -> NonDeterminismError:
    with pytest.raises(NonDeterminismError) as caught:
        replay_new(definition(function), WORKFLOW_ID, history)
    return caught.value


def assert_names(error: Exception, position: int, kind: str) -> None:
    message = str(error)
    assert re.search(rf"#{position}\b", message), message
    assert kind in message, message


def test_the_same_code_replays_cleanly(run: RunFactory) -> None:
    history = recorded(run)
    instance = replay_new(definition(pay_v1), WORKFLOW_ID, history)
    assert instance.finished
    assert instance.history_length == 12
    instance.close()


@workflow.defn(name="pay")
async def pay_other_activity(x: int) -> int:
    first = await workflow.execute_activity(sub, x, 1)
    await workflow.sleep(timedelta(minutes=5))
    return await workflow.execute_activity(add, first, 2)


def test_another_activity_name(run: RunFactory) -> None:
    error = replay_with(pay_other_activity, recorded(run))
    assert_names(error, 3, "activity_scheduled")
    assert "'add'" in str(error)
    assert "'sub'" in str(error)


@workflow.defn(name="pay")
async def pay_other_args(x: int) -> int:
    first = await workflow.execute_activity(add, x, 1)
    await workflow.sleep(timedelta(minutes=5))
    return await workflow.execute_activity(add, first, 3)


def test_other_activity_arguments(run: RunFactory) -> None:
    error = replay_with(pay_other_args, recorded(run))
    assert_names(error, 9, "activity_scheduled")
    assert "[11, 2]" in str(error)
    assert "[11, 3]" in str(error)


@workflow.defn(name="pay")
async def pay_other_timer(x: int) -> int:
    first = await workflow.execute_activity(add, x, 1)
    await workflow.sleep(timedelta(minutes=6))
    return await workflow.execute_activity(add, first, 2)


def test_another_timer_duration(run: RunFactory) -> None:
    error = replay_with(pay_other_timer, recorded(run))
    assert_names(error, 6, "timer_started")


@workflow.defn(name="pay")
async def pay_timer_first(x: int) -> int:
    await workflow.sleep(timedelta(minutes=5))
    first = await workflow.execute_activity(add, x, 1)
    return await workflow.execute_activity(add, first, 2)


def test_a_timer_where_an_activity_was(run: RunFactory) -> None:
    error = replay_with(pay_timer_first, recorded(run))
    assert_names(error, 3, "activity_scheduled")
    assert "timer_started" in str(error)


@workflow.defn(name="pay")
async def pay_missing_activity(x: int) -> int:
    await workflow.wait_event("go")
    return x


def test_a_missing_activity(run: RunFactory) -> None:
    error = replay_with(pay_missing_activity, recorded(run))
    assert_names(error, 3, "activity_scheduled")
    assert "did not decide" in str(error)


@workflow.defn(name="pay")
async def pay_missing_last_activity(x: int) -> int:
    first = await workflow.execute_activity(add, x, 1)
    await workflow.sleep(timedelta(minutes=5))
    return first


def test_a_missing_activity_where_the_code_now_ends_instead(run: RunFactory) -> None:
    error = replay_with(pay_missing_last_activity, recorded(run))
    assert_names(error, 9, "activity_scheduled")


@workflow.defn(name="pay")
async def pay_extra_activity(x: int) -> int:
    pending = workflow.execute_activity(add, x, 1)
    workflow.execute_activity(sub, x, 1)
    first = await pending
    await workflow.sleep(timedelta(minutes=5))
    return await workflow.execute_activity(add, first, 2)


def test_an_extra_activity(run: RunFactory) -> None:
    """The extra decision would be history event #4, where history has the next task."""
    error = replay_with(pay_extra_activity, recorded(run))
    assert_names(error, 4, "activity_scheduled")
    assert "'sub'" in str(error)


@workflow.defn(name="pay")
async def pay_extra_at_the_end(x: int) -> int:
    first = await workflow.execute_activity(add, x, 1)
    await workflow.sleep(timedelta(minutes=5))
    result = await workflow.execute_activity(add, first, 2)
    await workflow.execute_activity(add, result, 3)
    return result


def test_an_extra_activity_instead_of_the_end(run: RunFactory) -> None:
    error = replay_with(pay_extra_at_the_end, recorded(run))
    assert_names(error, 12, "workflow_completed")
    assert "activity_scheduled" in str(error)


@workflow.defn(name="pay")
async def pay_fails_instead(x: int) -> int:
    first = await workflow.execute_activity(add, x, 1)
    await workflow.sleep(timedelta(minutes=5))
    await workflow.execute_activity(add, first, 2)
    raise RuntimeError("changed my mind")


def test_failing_where_history_completed(run: RunFactory) -> None:
    error = replay_with(pay_fails_instead, recorded(run))
    assert_names(error, 12, "workflow_completed")
    assert "workflow_failed" in str(error)


def test_a_completion_for_a_seq_never_scheduled(run: RunFactory) -> None:
    history = recorded(run)
    history[4] = ActivityCompleted(seq=7, result=11, attempt=1)
    error = replay_with(pay_v1, history)
    assert_names(error, 5, "activity_completed")
    assert "seq 7" in str(error)


def test_a_failure_for_a_seq_never_scheduled(run: RunFactory) -> None:
    history = recorded(run)
    history[4] = ActivityFailed(seq=9, failure=failure("E", "m"), attempt=1)
    error = replay_with(pay_v1, history)
    assert_names(error, 5, "activity_failed")


def test_an_activity_completing_twice(run: RunFactory) -> None:
    history = recorded(run)
    history[7:8] = [TimerFired(seq=2), ActivityCompleted(seq=1, result=11, attempt=2)]
    error = replay_with(pay_v1, history)
    assert_names(error, 9, "activity_completed")


def test_an_activity_outcome_for_a_timer_seq(run: RunFactory) -> None:
    history = recorded(run)
    history[7] = ActivityCompleted(seq=2, result=None, attempt=1)
    error = replay_with(pay_v1, history)
    assert_names(error, 8, "activity_completed")


def test_a_timer_firing_for_an_activity_seq(run: RunFactory) -> None:
    history = recorded(run)
    history[4] = TimerFired(seq=1)
    error = replay_with(pay_v1, history)
    assert_names(error, 5, "timer_fired")


def test_a_timer_firing_twice(run: RunFactory) -> None:
    history = recorded(run)
    history[10:11] = [ActivityCompleted(seq=3, result=13, attempt=1), TimerFired(seq=2)]
    error = replay_with(pay_v1, history)
    assert_names(error, 12, "timer_fired")


def test_a_timer_firing_for_a_seq_never_started(run: RunFactory) -> None:
    history = recorded(run)
    history[7] = TimerFired(seq=40)
    error = replay_with(pay_v1, history)
    assert_names(error, 8, "timer_fired")


def test_a_second_start_event(run: RunFactory) -> None:
    history = recorded(run)
    history[4:4] = [started(pay_v1, 10)]
    error = replay_with(pay_v1, history)
    assert_names(error, 5, "workflow_started")


def test_history_that_goes_on_after_the_workflow_ended(run: RunFactory) -> None:
    history = [*recorded(run), WorkflowTaskStarted(at=at(400)), EventReceived("late", 1)]
    error = replay_with(pay_v1, history)
    assert_names(error, 13, "workflow_task_started")


def test_a_timer_cancelled_in_history_but_not_by_the_code(run: RunFactory) -> None:
    history = recorded(run)
    history[8:9] = [TimerCancelled(seq=2), *history[8:9]]
    error = replay_with(pay_v1, history)
    assert_names(error, 9, "timer_cancelled")


def test_only_the_recorded_prefix_is_checked(run: RunFactory) -> None:
    """A cut history (the debugger's ``upto``) replays without complaint."""
    history = recorded(run)
    for end in (3, 6):
        replay_new(definition(pay_other_args), WORKFLOW_ID, history[:end]).close()


# -- split_activations on malformed history ------------------------------------------------------


def test_an_event_before_any_workflow_task_is_refused() -> None:
    history: list[HistoryEvent] = [started(pay_v1, 1), WorkflowTaskStarted(at=at(0))]
    with pytest.raises(NonDeterminismError) as caught:
        list(split_activations(history))
    assert_names(caught.value, 1, "workflow_started")


def test_a_decision_before_any_workflow_task_is_refused() -> None:
    history: list[HistoryEvent] = [ActivityScheduled(seq=1, name="add", args=[1, 1])]
    with pytest.raises(NonDeterminismError) as caught:
        list(split_activations(history))
    assert_names(caught.value, 1, "activity_scheduled")


def test_an_incoming_event_after_the_decisions_of_its_task_is_refused() -> None:
    history: list[HistoryEvent] = [
        WorkflowTaskStarted(at=at(0)),
        started(pay_v1, 1),
        ActivityScheduled(seq=1, name="add", args=[1, 1]),
        ActivityCompleted(seq=1, result=2, attempt=1),
    ]
    with pytest.raises(NonDeterminismError) as caught:
        list(split_activations(history))
    assert_names(caught.value, 4, "activity_completed")


def test_split_activations_groups_events_and_decisions(run: RunFactory) -> None:
    history = recorded(run)
    parts = list(split_activations(history))
    assert [p.activation.at for p in parts] == [at(0), at(1), at(301), at(302)]
    assert all(p.activation.replaying for p in parts)
    assert [[type(e).__name__ for e in p.activation.events] for p in parts] == [
        ["WorkflowExecutionStarted"],
        ["ActivityCompleted"],
        ["TimerFired"],
        ["ActivityCompleted"],
    ]
    assert [[pos for pos, _ in p.decisions] for p in parts] == [[3], [6], [9], [12]]
    assert isinstance(parts[-1].decisions[0][1], WorkflowExecutionCompleted)
    assert isinstance(parts[1].decisions[0][1], TimerStarted)


def test_split_activations_of_nothing_is_nothing() -> None:
    assert list(split_activations([])) == []


def test_a_task_with_no_events_and_no_decisions_is_an_activation() -> None:
    parts = list(split_activations([WorkflowTaskStarted(at=at(0)), WorkflowTaskStarted(at(1))]))
    assert [(list(p.activation.events), p.decisions) for p in parts] == [([], []), ([], [])]
