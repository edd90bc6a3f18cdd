"""Durable timers: workflow.sleep, asyncio.sleep, sleep_until and asyncio.timeout."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import pytest

from tapeflow import InvalidArgument, workflow
from tapeflow.history import (
    EventReceived,
    TimerCancelled,
    TimerFired,
    TimerStarted,
    WorkflowExecutionCompleted,
    WorkflowExecutionFailed,
)
from tests.engine.conftest import RunFactory
from tests.engine.harness import T0, at, started


@workflow.defn
async def naps(seconds: float) -> str:
    await workflow.sleep(timedelta(seconds=seconds))
    first = workflow.now()
    await asyncio.sleep(seconds)
    return f"{first.isoformat()} {workflow.now().isoformat()}"


def test_workflow_sleep_starts_a_timer_due_now_plus_the_delay(run: RunFactory) -> None:
    wf = run(naps)
    assert wf.start(90) == [TimerStarted(seq=1, fire_at=at(90))]


def test_a_fired_timer_resumes_the_workflow_and_asyncio_sleep_is_a_timer_too(
    run: RunFactory,
) -> None:
    wf = run(naps)
    wf.start(90)
    assert wf.step(at(91), TimerFired(seq=1)) == [TimerStarted(seq=2, fire_at=at(181))]
    assert wf.step(at(181.5), TimerFired(seq=2)) == [
        WorkflowExecutionCompleted(result=f"{at(91).isoformat()} {at(181.5).isoformat()}")
    ]


def test_nothing_happens_until_the_timer_fires(run: RunFactory) -> None:
    wf = run(naps)
    wf.start(90)
    assert wf.step(at(89)) == []
    assert wf.step(at(200)) == []  # time passing is not a timer firing: history says when


@pytest.mark.parametrize(
    ("start", "delay", "due"),
    [
        (T0.replace(microsecond=123457), 0.1, T0.replace(microsecond=223457)),
        (T0.replace(microsecond=999999), 0.000001, T0 + timedelta(seconds=1)),
        (T0, 86400 * 365.25 * 30, T0 + timedelta(days=365.25 * 30)),
        (datetime(2099, 12, 31, 23, 59, 59, 999999, tzinfo=T0.tzinfo), 1.5, None),
    ],
)
def test_fire_at_is_exact_to_the_microsecond(
    run: RunFactory, start: datetime, delay: float, due: datetime | None
) -> None:
    wf = run(naps)
    expected = due if due is not None else start + timedelta(seconds=delay)
    assert wf.start(delay, when=start) == [TimerStarted(seq=1, fire_at=expected)]


@workflow.defn
async def no_naps() -> int:
    await workflow.sleep(0)
    await workflow.sleep(timedelta(0))
    await asyncio.sleep(0)
    await asyncio.sleep(-5)
    return 1


def test_zero_and_negative_asyncio_sleeps_need_no_timer(run: RunFactory) -> None:
    wf = run(no_naps)
    assert wf.start() == [WorkflowExecutionCompleted(result=1)]


BAD_DURATIONS: list[Any] = [-1, timedelta(seconds=-1), float("nan"), -0.001]


@workflow.defn
async def bad_sleep(which: int) -> str:
    try:
        await workflow.sleep(BAD_DURATIONS[which])
    except InvalidArgument as err:
        return f"refused: {err}"
    return "slept"


@pytest.mark.parametrize("which", range(len(BAD_DURATIONS)))
def test_workflow_sleep_refuses_negative_and_nan_durations(run: RunFactory, which: int) -> None:
    wf = run(bad_sleep)
    [decision] = wf.start(which)
    assert isinstance(decision, WorkflowExecutionCompleted)
    assert decision.result.startswith("refused")


@workflow.defn
async def until(when: datetime) -> str:
    await workflow.sleep_until(when)
    return workflow.now().isoformat()


def test_sleep_until_starts_a_timer_due_at_that_instant(run: RunFactory) -> None:
    wf = run(until)
    due = at(3600).replace(microsecond=654321)
    assert wf.start(due) == [TimerStarted(seq=1, fire_at=due)]
    assert wf.step(due, TimerFired(seq=1)) == [WorkflowExecutionCompleted(result=due.isoformat())]


@pytest.mark.parametrize("seconds_ago", [0, 1, 86400])
def test_sleep_until_a_past_instant_returns_at_once_without_a_timer(
    run: RunFactory, seconds_ago: float
) -> None:
    wf = run(until)
    assert wf.start(at(-seconds_ago)) == [WorkflowExecutionCompleted(result=T0.isoformat())]


def test_sleep_until_the_end_of_time_is_exact(run: RunFactory) -> None:
    wf = run(until)
    forever = datetime(9999, 12, 31, tzinfo=T0.tzinfo)
    assert wf.start(forever) == [TimerStarted(seq=1, fire_at=forever)]


def test_sleep_until_converts_other_time_zones(run: RunFactory) -> None:
    from datetime import timezone

    wf = run(until)
    due = at(60).astimezone(timezone(timedelta(hours=-7)))
    assert wf.start(due) == [TimerStarted(seq=1, fire_at=at(60))]


@workflow.defn
async def until_naive() -> str:
    try:
        await workflow.sleep_until(datetime(2030, 1, 1))
    except InvalidArgument:
        return "refused"
    return "slept"


def test_sleep_until_refuses_a_naive_datetime(run: RunFactory) -> None:
    wf = run(until_naive)
    assert wf.start() == [WorkflowExecutionCompleted(result="refused")]


@workflow.defn
async def wait_with_timeout(seconds: float) -> Any:
    try:
        async with asyncio.timeout(seconds):
            payload = await workflow.wait_event("approve")
    except TimeoutError:
        payload = "timed out"
    await workflow.sleep(1000)
    return payload


def test_a_timeout_around_wait_event_starts_a_timer(run: RunFactory) -> None:
    wf = run(wait_with_timeout)
    assert wf.start(30) == [TimerStarted(seq=1, fire_at=at(30))]


def test_a_timeout_that_fires_raises_timeout_error_in_the_workflow(run: RunFactory) -> None:
    wf = run(wait_with_timeout)
    wf.start(30)
    assert wf.step(at(30), TimerFired(seq=1)) == [TimerStarted(seq=2, fire_at=at(1030))]
    assert wf.step(at(1030), TimerFired(seq=2)) == [WorkflowExecutionCompleted(result="timed out")]


def test_an_event_before_the_timeout_cancels_its_timer(run: RunFactory) -> None:
    wf = run(wait_with_timeout)
    wf.start(30)
    assert wf.step(at(10), EventReceived("approve", {"by": "ann"})) == [
        TimerCancelled(seq=1),
        TimerStarted(seq=2, fire_at=at(1010)),
    ]
    # the cancelled timer's firing may still arrive (it was already due): it is dropped
    assert wf.step(at(30), TimerFired(seq=1)) == []
    assert wf.step(at(1010), TimerFired(seq=2)) == [
        WorkflowExecutionCompleted(result={"by": "ann"})
    ]
    wf.replayed().close()


def test_a_timer_started_and_cancelled_in_one_activation_leaves_no_decision(
    run: RunFactory,
) -> None:
    wf = run(wait_with_timeout)
    # the event is already there when the workflow starts: wait_event returns at once
    assert wf.step(T0, started(wait_with_timeout, 30), EventReceived("approve", 1)) == [
        TimerStarted(seq=2, fire_at=at(1000))  # seq 1 went to the timer never recorded
    ]
    assert wf.step(at(1000), TimerFired(seq=2)) == [WorkflowExecutionCompleted(result=1)]
    wf.replayed().close()


@workflow.defn
async def races() -> str:
    winner = ""

    async def nap(name: str, seconds: float) -> None:
        nonlocal winner
        await asyncio.sleep(seconds)
        winner = winner or name

    tasks = [asyncio.ensure_future(nap(n, s)) for n, s in (("slow", 20), ("fast", 10))]
    _done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return winner


def test_the_loser_of_a_race_has_its_timer_cancelled(run: RunFactory) -> None:
    wf = run(races)
    assert wf.start() == [
        TimerStarted(seq=1, fire_at=at(20)),
        TimerStarted(seq=2, fire_at=at(10)),
    ]
    assert wf.step(at(10), TimerFired(seq=2)) == [
        TimerCancelled(seq=1),
        WorkflowExecutionCompleted(result="fast"),
    ]


def test_two_timers_firing_in_one_activation_resume_in_history_order(run: RunFactory) -> None:
    wf = run(races)
    wf.start()
    assert wf.step(at(20), TimerFired(seq=1), TimerFired(seq=2)) == [
        WorkflowExecutionCompleted(result="slow")
    ]


@workflow.defn
async def wait_for_timeout() -> str:
    try:
        await asyncio.wait_for(workflow.wait_event("never"), timeout=5)
    except TimeoutError:
        return "timed out"
    return "got it"


def test_asyncio_wait_for_is_durable_too(run: RunFactory) -> None:
    wf = run(wait_for_timeout)
    assert wf.start() == [TimerStarted(seq=1, fire_at=at(5))]
    assert wf.step(at(5), TimerFired(seq=1)) == [WorkflowExecutionCompleted(result="timed out")]


@workflow.defn
async def sleeps_in_a_loop(count: int) -> int:
    for _ in range(count):
        await asyncio.sleep(1)
    return count


def test_each_sleep_of_a_loop_gets_its_own_timer(run: RunFactory) -> None:
    wf = run(sleeps_in_a_loop)
    assert wf.start(3) == [TimerStarted(seq=1, fire_at=at(1))]
    assert wf.step(at(1), TimerFired(seq=1)) == [TimerStarted(seq=2, fire_at=at(2))]
    assert wf.step(at(2.5), TimerFired(seq=2)) == [TimerStarted(seq=3, fire_at=at(3.5))]
    assert wf.step(at(3.5), TimerFired(seq=3)) == [WorkflowExecutionCompleted(result=3)]


@workflow.defn
async def fails_after_sleep() -> None:
    await workflow.sleep(1)
    raise RuntimeError("woke up cross")


def test_an_error_after_a_timer_fails_the_workflow(run: RunFactory) -> None:
    wf = run(fails_after_sleep)
    wf.start()
    [decision] = wf.step(at(1), TimerFired(seq=1))
    assert isinstance(decision, WorkflowExecutionFailed)
    assert (decision.failure.type, decision.failure.message) == ("RuntimeError", "woke up cross")
