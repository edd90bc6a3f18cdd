"""side_effect records a value once and replays it; wait_condition wakes when its
predicate holds after any change of state; info().history_length counts the run's events."""

from __future__ import annotations

from typing import Any

import pytest

from tapeflow import workflow
from tapeflow.history import (
    EventReceived,
    MarkerRecorded,
    TimerFired,
    TimerStarted,
    WorkflowExecutionCompleted,
    WorkflowExecutionFailed,
)
from tests.engine.conftest import RunFactory
from tests.engine.harness import at

made: list[int] = []


def make() -> int:
    made.append(1)
    return len(made)


@workflow.defn
async def stamps() -> list[Any]:
    first = await workflow.side_effect(make)
    await workflow.sleep(10)
    second = await workflow.side_effect(lambda: {"n": len(made) * 10})
    return [first, second]


def test_a_side_effect_is_made_once_and_replayed(run: RunFactory) -> None:
    made.clear()
    live = run(stamps)
    assert live.start() == [
        MarkerRecorded(seq=1, name="side_effect", details=1),
        TimerStarted(seq=2, fire_at=at(10)),
    ]
    [marker, done] = live.step(at(10), TimerFired(seq=2))
    assert marker == MarkerRecorded(seq=3, name="side_effect", details={"n": 10})
    assert done == WorkflowExecutionCompleted(result=[1, {"n": 10}])
    made.append(99)  # were the functions called again, they would see this
    replayed = live.replayed()
    assert replayed.finished
    assert made == [1, 99]
    replayed.close()


@workflow.defn
async def waits_for_two(timeout: float | None) -> list[str]:
    seen: list[str] = []
    workflow.on_event("item", seen.append)
    try:
        await workflow.wait_condition(lambda: len(seen) >= 2, timeout=timeout)
    except TimeoutError:
        return ["timed out", *seen]
    return seen


def test_wait_condition_wakes_once_its_predicate_holds(run: RunFactory) -> None:
    live = run(waits_for_two)
    assert live.start(None) == []
    assert live.later(1, EventReceived(name="item", payload="a")) == []
    assert live.later(1, EventReceived(name="item", payload="b")) == [
        WorkflowExecutionCompleted(result=["a", "b"])
    ]
    live.replayed().close()


def test_wait_condition_with_a_timeout_raises_timeout_error(run: RunFactory) -> None:
    live = run(waits_for_two)
    assert live.start(30.0) == [TimerStarted(seq=1, fire_at=at(30))]
    live.later(1, EventReceived(name="item", payload="a"))
    assert live.step(at(30), TimerFired(seq=1)) == [
        WorkflowExecutionCompleted(result=["timed out", "a"])
    ]
    live.replayed().close()


@workflow.defn
async def broken_predicate() -> str:
    await workflow.wait_condition(lambda: 1 / 0)
    return "never"


def test_a_predicate_that_raises_fails_the_workflow_where_it_waits(run: RunFactory) -> None:
    live = run(broken_predicate)
    [failed] = live.start()
    assert isinstance(failed, WorkflowExecutionFailed)
    assert failed.failure.type == "ZeroDivisionError"


@workflow.defn
async def counts_its_history() -> list[int]:
    lengths = [workflow.info().history_length]
    await workflow.sleep(1)
    lengths.append(workflow.info().history_length)
    workflow.set_var("lengths", lengths)
    await workflow.wait_event("go")
    return lengths


def test_history_length_counts_the_events_so_far_the_same_on_replay(run: RunFactory) -> None:
    live = run(counts_its_history)
    live.start()  # task started, workflow started: 2; then the timer's decision
    live.step(at(1), TimerFired(seq=1))  # 3 before, + task started + fired = 5
    assert live.vars["lengths"] == [2, 5]
    replayed = live.replayed()
    assert replayed.vars["lengths"] == [2, 5]
    replayed.close()


@pytest.mark.parametrize("bad", [None, 5, "x"])
def test_side_effect_and_wait_condition_want_functions(run: RunFactory, bad: object) -> None:
    @workflow.defn(name="misuses")
    async def misuses() -> str:
        errors = []
        for call in (workflow.side_effect, workflow.wait_condition):
            try:
                await call(bad)  # type: ignore[arg-type]
            except Exception as exc:
                errors.append(type(exc).__name__)
        return ",".join(errors)

    [done] = run(misuses).start()
    assert done == WorkflowExecutionCompleted(result="InvalidArgument,InvalidArgument")
