"""Activities: scheduling decisions, sequence numbers, results and failures back in the code."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

import tapeflow
from tapeflow import activity, workflow
from tapeflow.history import (
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    TimerStarted,
    WorkflowExecutionCompleted,
    WorkflowExecutionFailed,
)
from tests.engine.conftest import RunFactory
from tests.engine.harness import T0, at


@dataclass
class Order:
    sku: str
    quantity: int


@dataclass
class Receipt:
    order: Order
    total: int


@activity.defn
def add(a: int, b: int) -> int:
    return a + b


@activity.defn(name="charge-card")
async def charge(order: Order) -> Receipt:
    return Receipt(order, order.quantity * 10)


@activity.defn
def risky(value: int) -> int:
    return value


@workflow.defn
async def two_in_a_row(x: int) -> int:
    first = await workflow.execute_activity(add, x, 1)
    return await workflow.execute_activity(add, first, 10)


def test_start_event_runs_the_workflow_up_to_its_first_activity(run: RunFactory) -> None:
    wf = run(two_in_a_row)
    assert wf.start(5) == [ActivityScheduled(seq=1, name="add", args=[5, 1])]


def test_a_completion_resolves_the_awaited_activity(run: RunFactory) -> None:
    wf = run(two_in_a_row)
    wf.start(5)
    assert wf.later(1, ActivityCompleted(seq=1, result=6, attempt=1)) == [
        ActivityScheduled(seq=2, name="add", args=[6, 10])
    ]
    assert wf.later(1, ActivityCompleted(seq=2, result=16, attempt=1)) == [
        WorkflowExecutionCompleted(result=16)
    ]
    assert wf.instance.finished


def test_an_activation_with_nothing_new_decides_nothing(run: RunFactory) -> None:
    wf = run(two_in_a_row)
    wf.start(5)
    assert wf.later(1) == []
    assert wf.later(1) == []


@workflow.defn
async def buy(order: Order) -> Receipt:
    return await workflow.execute_activity(charge, order)


def test_dataclass_arguments_and_results_cross_as_json_and_come_back_typed(
    run: RunFactory,
) -> None:
    wf = run(buy)
    assert wf.start(Order("apple", 3)) == [
        ActivityScheduled(seq=1, name="charge-card", args=[{"sku": "apple", "quantity": 3}])
    ]
    decisions = wf.later(
        1,
        ActivityCompleted(
            seq=1, result={"order": {"sku": "apple", "quantity": 3}, "total": 30}, attempt=1
        ),
    )
    assert decisions == [
        WorkflowExecutionCompleted(result={"order": {"sku": "apple", "quantity": 3}, "total": 30})
    ]


@workflow.defn
async def catches(value: int) -> str:
    try:
        await workflow.execute_activity(risky, value)
    except tapeflow.ActivityError as err:
        return f"{err.activity}|{err.type}|{err.message}|{err.attempt}|{err.traceback is not None}"
    return "no error"


def test_an_activity_failure_is_raised_in_the_workflow_as_activity_error(
    run: RunFactory,
) -> None:
    wf = run(catches)
    wf.start(1)
    failed = ActivityFailed(
        seq=1,
        failure=tapeflow.history.Failure("InsufficientFunds", "balance 3 < 5", "Traceback..."),
        attempt=4,
    )
    assert wf.later(1, failed) == [
        WorkflowExecutionCompleted(result="risky|InsufficientFunds|balance 3 < 5|4|True")
    ]


@workflow.defn
async def lets_it_escape(value: int) -> int:
    return await workflow.execute_activity(risky, value)


def test_an_uncaught_activity_failure_fails_the_workflow(run: RunFactory) -> None:
    wf = run(lets_it_escape)
    wf.start(1)
    failure = tapeflow.history.Failure("ValueError", "bad value", None)
    [decision] = wf.later(1, ActivityFailed(seq=1, failure=failure, attempt=3))
    assert isinstance(decision, WorkflowExecutionFailed)
    assert "bad value" in decision.failure.message
    assert decision.failure.traceback is not None


@workflow.defn
async def fan_out(count: int) -> int:
    results = await asyncio.gather(*(workflow.execute_activity(add, i, i) for i in range(count)))
    return sum(results)


def test_gather_schedules_every_activity_in_one_activation_with_consecutive_seqs(
    run: RunFactory,
) -> None:
    wf = run(fan_out)
    assert wf.start(5) == [ActivityScheduled(seq=i + 1, name="add", args=[i, i]) for i in range(5)]


def test_gather_waits_for_every_result_whatever_order_they_arrive_in(run: RunFactory) -> None:
    wf = run(fan_out)
    wf.start(5)
    assert wf.later(1, ActivityCompleted(seq=4, result=6, attempt=1)) == []
    assert (
        wf.later(
            1,
            ActivityCompleted(seq=2, result=2, attempt=1),
            ActivityCompleted(seq=5, result=8, attempt=2),
        )
        == []
    )
    assert wf.later(
        1,
        ActivityCompleted(seq=1, result=0, attempt=1),
        ActivityCompleted(seq=3, result=4, attempt=1),
    ) == [WorkflowExecutionCompleted(result=20)]


def test_gather_fails_with_the_first_activity_failure(run: RunFactory) -> None:
    wf = run(fan_out)
    wf.start(3)
    failure = tapeflow.history.Failure("KeyError", "'x'", None)
    [decision] = wf.later(
        1,
        ActivityCompleted(seq=1, result=0, attempt=1),
        ActivityFailed(seq=3, failure=failure, attempt=1),
    )
    assert isinstance(decision, WorkflowExecutionFailed)
    assert "'x'" in decision.failure.message


@workflow.defn
async def activities_and_timers_share_seqs() -> int:
    first = workflow.execute_activity(add, 1, 1)
    await workflow.sleep(timedelta(seconds=10))
    second = workflow.execute_activity(add, 2, 2)
    return await first + await second


def test_activities_and_timers_draw_from_one_sequence(run: RunFactory) -> None:
    wf = run(activities_and_timers_share_seqs)
    assert wf.start() == [
        ActivityScheduled(seq=1, name="add", args=[1, 1]),
        TimerStarted(seq=2, fire_at=at(10)),
    ]
    assert wf.later(1, ActivityCompleted(seq=1, result=2, attempt=1)) == []
    assert wf.step(at(10), tapeflow.history.TimerFired(seq=2)) == [
        ActivityScheduled(seq=3, name="add", args=[2, 2])
    ]
    assert wf.later(1, ActivityCompleted(seq=3, result=4, attempt=1)) == [
        WorkflowExecutionCompleted(result=6)
    ]


@workflow.defn
async def with_retry_policy() -> int:
    policy = tapeflow.RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=None,
        maximum_attempts=3,
    )
    return await workflow.execute_activity(add, 1, 2, retry=policy)


def test_the_retry_policy_is_recorded_with_the_scheduled_activity(run: RunFactory) -> None:
    wf = run(with_retry_policy)
    [scheduled] = wf.start()
    assert isinstance(scheduled, ActivityScheduled)
    assert scheduled.retry is not None
    assert scheduled.retry["maximum_attempts"] == 3
    assert scheduled.retry["backoff_coefficient"] == 2.0
    assert scheduled.retry["maximum_interval"] is None


@workflow.defn
async def by_name(value: int) -> Any:
    return await workflow.execute_activity("remote-thing", value, {"k": [1, 2]})


def test_an_activity_named_by_string_takes_and_returns_plain_json(run: RunFactory) -> None:
    wf = run(by_name)
    assert wf.start(7) == [ActivityScheduled(seq=1, name="remote-thing", args=[7, {"k": [1, 2]}])]
    assert wf.later(1, ActivityCompleted(seq=1, result={"any": ["json"]}, attempt=1)) == [
        WorkflowExecutionCompleted(result={"any": ["json"]})
    ]


@workflow.defn
async def wrong_args() -> int:
    return await workflow.execute_activity(add, "one", 2)


def test_activity_arguments_that_do_not_match_the_annotation_fail_the_workflow(
    run: RunFactory,
) -> None:
    wf = run(wrong_args)
    [decision] = wf.start()
    assert isinstance(decision, WorkflowExecutionFailed)
    assert decision.failure.type == "PayloadError"


@workflow.defn
async def gives_up_waiting() -> str:
    outcome = "finished"
    try:
        async with asyncio.timeout(5):
            await workflow.execute_activity(add, 1, 1)
    except TimeoutError:
        outcome = "gave up"
    await workflow.sleep(60)
    return outcome


def test_an_abandoned_activity_is_cancelled_and_its_late_outcome_dropped(
    run: RunFactory,
) -> None:
    wf = run(gives_up_waiting)
    assert wf.start() == [
        TimerStarted(seq=1, fire_at=at(5)),
        ActivityScheduled(seq=2, name="add", args=[1, 1]),
    ]
    assert wf.step(at(5), tapeflow.history.TimerFired(seq=1)) == [
        tapeflow.history.ActivityCancelled(seq=2),
        TimerStarted(seq=3, fire_at=at(65)),
    ]
    assert wf.step(at(6), ActivityCompleted(seq=2, result=2, attempt=1)) == []
    assert wf.step(at(65), tapeflow.history.TimerFired(seq=3)) == [
        WorkflowExecutionCompleted(result="gave up")
    ]
    wf.replayed().close()


def test_a_result_that_does_not_match_the_activity_annotation_raises_in_the_workflow(
    run: RunFactory,
) -> None:
    wf = run(two_in_a_row)
    wf.start(1)
    [decision] = wf.later(1, ActivityCompleted(seq=1, result="not a number", attempt=1))
    assert isinstance(decision, WorkflowExecutionFailed)
    assert decision.failure.type == "PayloadError"
    assert "result of activity 'add'" in decision.failure.message


@pytest.mark.parametrize("value", [2**63 - 1, -(2**63), 2**53 + 1])
def test_64_bit_integers_keep_full_precision(run: RunFactory, value: int) -> None:
    wf = run(two_in_a_row)
    assert wf.start(value)[0] == ActivityScheduled(seq=1, name="add", args=[value, 1])
    wf.later(1, ActivityCompleted(seq=1, result=value, attempt=1))
    assert wf.later(1, ActivityCompleted(seq=2, result=value - 1, attempt=1)) == [
        WorkflowExecutionCompleted(result=value - 1)
    ]
    assert wf.now > T0
