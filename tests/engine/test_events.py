"""External events: kept from arrival, wait_event oldest first, on_event sees every one."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from tapeflow import WorkflowSandboxError, workflow
from tapeflow.history import (
    EventReceived,
    TimerFired,
    TimerStarted,
    WorkflowExecutionCompleted,
    WorkflowExecutionFailed,
)
from tests.engine.conftest import RunFactory
from tests.engine.harness import T0, at, started


@workflow.defn
async def collect(count: int) -> list[Any]:
    return [await workflow.wait_event("item") for _ in range(count)]


def test_wait_event_returns_events_in_arrival_order(run: RunFactory) -> None:
    wf = run(collect)
    assert wf.start(3) == []
    assert wf.later(1, EventReceived("item", "a")) == []
    assert wf.later(1, EventReceived("item", "b"), EventReceived("other", "x")) == []
    assert wf.later(1, EventReceived("item", "c")) == [
        WorkflowExecutionCompleted(result=["a", "b", "c"])
    ]


def test_events_that_arrive_before_the_wait_are_kept_oldest_first(run: RunFactory) -> None:
    wf = run(collect)
    events = [EventReceived("item", n) for n in (1, 2, 3, 4)]
    assert wf.step(T0, started(collect, 3), *events) == [
        WorkflowExecutionCompleted(result=[1, 2, 3])
    ]


@workflow.defn
async def sleep_then_collect() -> list[Any]:
    await workflow.sleep(60)
    return [await workflow.wait_event("item"), await workflow.wait_event("item")]


def test_events_sent_while_the_workflow_sleeps_are_not_lost(run: RunFactory) -> None:
    wf = run(sleep_then_collect)
    wf.start()
    assert wf.step(at(10), EventReceived("item", {"n": 1})) == []
    assert wf.step(at(20), EventReceived("item", {"n": 2})) == []
    assert wf.step(at(60), TimerFired(seq=1)) == [
        WorkflowExecutionCompleted(result=[{"n": 1}, {"n": 2}])
    ]


@workflow.defn
async def listens() -> list[Any]:
    seen: list[Any] = []
    await workflow.sleep(10)
    workflow.on_event("ping", seen.append)
    workflow.on_event("ping", lambda p: seen.append(("second", p)))
    await workflow.wait_event("stop")
    return seen


def test_on_event_sees_past_events_then_new_ones_in_history_order(run: RunFactory) -> None:
    wf = run(listens)
    wf.start()
    wf.step(at(1), EventReceived("ping", 1), EventReceived("ping", 2))
    wf.step(at(10), TimerFired(seq=1), EventReceived("ping", 3))
    assert wf.step(at(11), EventReceived("ping", 4), EventReceived("stop", None)) == [
        WorkflowExecutionCompleted(
            # each callback gets the past events when it is registered, then the new ones
            result=[1, 2, 3, ["second", 1], ["second", 2], ["second", 3], 4, ["second", 4]]
        )
    ]


@workflow.defn
async def callback_and_wait() -> list[Any]:
    seen: list[Any] = []
    workflow.on_event("x", seen.append)
    first = await workflow.wait_event("x")
    second = await workflow.wait_event("x")
    return [first, second, seen]


def test_on_event_and_wait_event_each_see_every_event(run: RunFactory) -> None:
    wf = run(callback_and_wait)
    wf.start()
    assert wf.later(1, EventReceived("x", "a"), EventReceived("x", "b")) == [
        WorkflowExecutionCompleted(result=["a", "b", ["a", "b"]])
    ]


@dataclass
class Approval:
    by: str
    amount: int


@workflow.defn
async def typed_event() -> str:
    approval = await workflow.wait_event("approval", type=Approval)
    assert isinstance(approval, Approval)
    got: list[Approval] = []
    workflow.on_event("approval", got.append, type=Approval)
    await asyncio.sleep(0)  # callbacks run on the loop, like any other task
    return f"{approval.by}:{approval.amount}:{type(got[0]).__name__}"


def test_event_payloads_come_back_as_the_requested_type(run: RunFactory) -> None:
    wf = run(typed_event)
    wf.start()
    assert wf.later(1, EventReceived("approval", {"by": "ann", "amount": 5})) == [
        WorkflowExecutionCompleted(result="ann:5:Approval")
    ]


def test_an_event_payload_that_does_not_match_its_type_fails_the_workflow(
    run: RunFactory,
) -> None:
    wf = run(typed_event)
    wf.start()
    [decision] = wf.later(1, EventReceived("approval", {"by": "ann"}))
    assert isinstance(decision, WorkflowExecutionFailed)
    assert decision.failure.type == "PayloadError"
    assert "approval" in decision.failure.message


@workflow.defn
async def async_listener() -> list[int]:
    seen: list[int] = []

    async def on_ping(payload: int) -> None:
        await workflow.sleep(5)
        seen.append(payload)

    workflow.on_event("ping", on_ping)
    await workflow.wait_event("stop")
    await workflow.sleep(100)
    return seen


def test_an_async_on_event_callback_runs_as_a_workflow_task(run: RunFactory) -> None:
    wf = run(async_listener)
    wf.start()
    assert wf.step(at(1), EventReceived("ping", 7)) == [TimerStarted(seq=1, fire_at=at(6))]
    assert wf.step(at(2), EventReceived("stop", None)) == [TimerStarted(seq=2, fire_at=at(102))]
    assert wf.step(at(6), TimerFired(seq=1)) == []
    assert wf.step(at(102), TimerFired(seq=2)) == [WorkflowExecutionCompleted(result=[7])]
    wf.replayed().close()


@workflow.defn
async def crashing_listener() -> None:
    def on_bad(payload: Any) -> None:
        raise ValueError(f"cannot handle {payload!r}")

    workflow.on_event("bad", on_bad)
    await workflow.wait_event("never")


def test_an_error_in_an_on_event_callback_fails_the_workflow(run: RunFactory) -> None:
    wf = run(crashing_listener)
    wf.start()
    [decision] = wf.later(1, EventReceived("bad", 13))
    assert isinstance(decision, WorkflowExecutionFailed)
    assert (decision.failure.type, decision.failure.message) == ("ValueError", "cannot handle 13")
    assert wf.instance.finished


@workflow.defn
async def patient_after_timeout() -> list[Any]:
    got: list[Any] = []
    try:
        async with asyncio.timeout(5):
            got.append(await workflow.wait_event("go"))
    except TimeoutError:
        got.append("timed out")
    got.append(await workflow.wait_event("go"))
    return got


def test_an_event_arriving_with_the_timeout_is_kept_for_the_next_wait(run: RunFactory) -> None:
    """The timer firing and the event land in one activation, the timer first: the wait
    times out, and the event must still be there for the next wait_event (events are
    kept, never dropped)."""
    wf = run(patient_after_timeout)
    wf.start()
    assert wf.step(at(5), TimerFired(seq=1), EventReceived("go", 1)) == [
        WorkflowExecutionCompleted(result=["timed out", 1])
    ]


def test_an_event_arriving_just_before_the_timeout_is_returned(run: RunFactory) -> None:
    wf = run(patient_after_timeout)
    wf.start()
    decisions = wf.step(at(5), EventReceived("go", 1), TimerFired(seq=1))
    assert decisions == []
    assert wf.step(at(6), EventReceived("go", 2)) == [WorkflowExecutionCompleted(result=[1, 2])]


@workflow.defn
async def sandbox_in_callback() -> None:
    def on_ping(payload: Any) -> None:
        asyncio.get_running_loop().run_in_executor(None, print)

    workflow.on_event("ping", on_ping)
    await workflow.wait_event("never")


def test_a_sandbox_violation_in_an_on_event_callback_fails_the_task_not_the_workflow(
    run: RunFactory,
) -> None:
    wf = run(sandbox_in_callback)
    wf.start()
    with pytest.raises(WorkflowSandboxError, match="run_in_executor"):
        wf.later(1, EventReceived("ping", 1))


@workflow.defn
async def count_with_callback(count: int) -> list[int]:
    """What the callback had seen as each wait_event returned."""
    seen: list[Any] = []
    workflow.on_event("item", seen.append)
    observed = []
    for _ in range(count):
        await workflow.wait_event("item")
        observed.append(len(seen))
    return observed


def test_a_callback_sees_each_event_no_later_than_wait_event_returns_it(
    run: RunFactory,
) -> None:
    wf = run(count_with_callback)
    events = [EventReceived("item", n) for n in (1, 2, 3)]
    assert wf.step(T0, started(count_with_callback, 3), *events) == [
        WorkflowExecutionCompleted(result=[3, 3, 3])
    ]


def test_a_callback_keeps_up_with_events_that_arrive_one_by_one(run: RunFactory) -> None:
    wf = run(count_with_callback)
    wf.start(2)
    assert wf.later(1, EventReceived("item", 1)) == []
    assert wf.later(1, EventReceived("item", 2)) == [WorkflowExecutionCompleted(result=[1, 2])]
