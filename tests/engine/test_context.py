"""What workflow code reads from its context: time, info, vars, randomness, asyncio tools."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from tapeflow import TapeflowError, activity, workflow
from tapeflow.history import (
    ActivityCompleted,
    ActivityScheduled,
    EventReceived,
    TimerCancelled,
    TimerFired,
    TimerStarted,
    WorkflowExecutionCompleted,
)
from tests.engine.conftest import RunFactory
from tests.engine.harness import T0, at, replay_decisions


@activity.defn
def record(value: Any) -> None:
    return None


@workflow.defn
async def observer() -> None:
    """Reports what it sees by scheduling ``record`` activities with it."""
    info = workflow.info()
    await workflow.execute_activity(
        record,
        [
            info.workflow_id,
            info.name,
            info.version,
            info.started_at.isoformat(),
            workflow.now().isoformat(),
            info.is_replaying,
            workflow.is_replaying(),
        ],
    )
    await workflow.sleep(30)
    await workflow.execute_activity(
        record, [workflow.now().isoformat(), workflow.info().is_replaying]
    )


def test_info_and_now_during_a_live_run(run: RunFactory) -> None:
    wf = run(observer, "obs-7")
    [scheduled] = wf.start(version="v2", when=at(-100))
    assert isinstance(scheduled, ActivityScheduled)
    started_at = at(-100).isoformat()
    assert scheduled.args == [["obs-7", "observer", "v2", started_at, started_at, False, False]]


def test_now_is_the_time_of_the_activation(run: RunFactory) -> None:
    wf = run(observer)
    [first] = wf.start(when=at(0))
    assert isinstance(first, ActivityScheduled)
    assert first.args[0][4] == T0.isoformat()
    wf.step(at(2), ActivityCompleted(seq=1, result=None, attempt=1))
    [scheduled] = wf.step(at(40.25), TimerFired(seq=2))
    assert isinstance(scheduled, ActivityScheduled)
    assert scheduled.args == [[at(40.25).isoformat(), False]]


def test_is_replaying_is_true_during_replay(run: RunFactory) -> None:
    wf = run(observer)
    wf.start()
    wf.later(2, ActivityCompleted(seq=1, result=None, attempt=1))
    wf.step(at(31), TimerFired(seq=2))
    emitted, instance = replay_decisions(observer, wf.history)
    instance.close()
    first, _, third = emitted
    assert isinstance(first[0], ActivityScheduled)
    assert first[0].args[0][5:] == [True, True]
    assert isinstance(third[0], ActivityScheduled)
    assert third[0].args == [[at(31).isoformat(), True]]


def test_started_at_is_utc_even_when_recorded_in_another_zone(run: RunFactory) -> None:
    from datetime import timezone

    wf = run(observer)
    [scheduled] = wf.start(when=T0.astimezone(timezone(timedelta(hours=5, minutes=30))))
    assert isinstance(scheduled, ActivityScheduled)
    assert scheduled.args[0][3] == T0.isoformat()
    assert scheduled.args[0][3].endswith("+00:00")


@activity.defn
def measure(value: int) -> int:
    return value


@workflow.defn
async def counter(steps: int) -> int:
    total = 0
    workflow.set_var("total", total)
    workflow.set_var("phase", "counting")
    for _ in range(steps):
        total += await workflow.execute_activity(measure, total)
        workflow.set_var("total", total)
    workflow.set_var("phase", "done")
    workflow.set_var("detail", {"steps": steps, "log": [1, 2]})
    return total


def test_set_var_is_visible_after_each_activation(run: RunFactory) -> None:
    wf = run(counter)
    wf.start(2)
    assert wf.vars == {"total": 0, "phase": "counting"}
    wf.later(1, ActivityCompleted(seq=1, result=5, attempt=1))
    assert wf.vars == {"total": 5, "phase": "counting"}
    wf.later(1, ActivityCompleted(seq=2, result=7, attempt=1))
    assert wf.vars == {"total": 12, "phase": "done", "detail": {"steps": 2, "log": [1, 2]}}
    replayed = wf.replayed()
    assert replayed.vars == wf.vars
    replayed.close()


@workflow.defn
async def dice() -> list[Any]:
    first = [workflow.random().randint(1, 6) for _ in range(5)]
    ident = str(workflow.uuid4())
    await workflow.sleep(1)
    second = [workflow.random().random(), str(workflow.uuid4())]
    return [first, ident, second]


def test_random_and_uuid4_replay_identically(run: RunFactory) -> None:
    wf = run(dice, "dice-1")
    wf.start()
    [live] = wf.step(at(1), TimerFired(seq=1))
    emitted, instance = replay_decisions(dice, wf.history, "dice-1")
    instance.close()
    assert emitted[-1] == [live]
    assert isinstance(live, WorkflowExecutionCompleted)
    ident = live.result[1]
    assert len(ident) == 36
    assert ident[14] == "4"  # a version 4 UUID


def test_random_differs_between_workflow_ids(run: RunFactory) -> None:
    results = []
    for workflow_id in ("dice-1", "dice-2"):
        wf = run(dice, workflow_id)
        wf.start()
        [end] = wf.step(at(1), TimerFired(seq=1))
        assert isinstance(end, WorkflowExecutionCompleted)
        results.append(end.result)
    assert results[0] != results[1]


@pytest.mark.parametrize(
    "call",
    [
        workflow.now,
        workflow.info,
        workflow.is_replaying,
        workflow.random,
        workflow.uuid4,
        lambda: workflow.set_var("x", 1),
        lambda: workflow.execute_activity(record, 1),
        lambda: workflow.on_event("x", print),
        lambda: workflow.patched("x"),
        lambda: workflow.deprecate_patch("x"),
    ],
)
def test_the_workflow_api_refuses_to_run_outside_a_workflow(call: Any) -> None:
    with pytest.raises(TapeflowError, match="inside a running workflow"):
        call()


async def test_the_workflow_api_refuses_to_run_on_an_ordinary_event_loop() -> None:
    with pytest.raises(TapeflowError, match="inside a running workflow"):
        workflow.now()
    with pytest.raises(TapeflowError, match="inside a running workflow"):
        await workflow.wait_event("x")


@workflow.defn
async def asyncio_toolkit() -> list[Any]:
    log: list[Any] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    ready = asyncio.Event()
    lock = asyncio.Lock()

    async def producer() -> None:
        for i in range(3):
            await asyncio.sleep(1)
            await queue.put(i)
        ready.set()

    async def consumer() -> None:
        await ready.wait()
        async with lock:
            while not queue.empty():
                log.append(queue.get_nowait())

    async with asyncio.TaskGroup() as group:
        group.create_task(producer())
        group.create_task(consumer())
    done, _ = await asyncio.wait(
        [asyncio.ensure_future(workflow.execute_activity(record, "x"))], timeout=10
    )
    log.append(len(done))
    return log


def test_task_groups_queues_events_locks_and_wait_work_inside_a_workflow(
    run: RunFactory,
) -> None:
    wf = run(asyncio_toolkit)
    assert wf.start() == [TimerStarted(seq=1, fire_at=at(1))]
    assert wf.step(at(1), TimerFired(seq=1)) == [TimerStarted(seq=2, fire_at=at(2))]
    assert wf.step(at(2), TimerFired(seq=2)) == [TimerStarted(seq=3, fire_at=at(3))]
    assert wf.step(at(3), TimerFired(seq=3)) == [
        ActivityScheduled(seq=4, name="record", args=["x"]),
        TimerStarted(seq=5, fire_at=at(13)),
    ]
    assert wf.later(1, ActivityCompleted(seq=4, result=None, attempt=1)) == [
        TimerCancelled(seq=5),
        WorkflowExecutionCompleted(result=[0, 1, 2, 1]),
    ]
    emitted, instance = replay_decisions(asyncio_toolkit, wf.history)
    instance.close()
    assert emitted == wf.activations


@workflow.defn
async def event_in_task() -> str:
    async def waiter() -> str:
        return str(await workflow.wait_event("name"))

    task = asyncio.ensure_future(waiter())
    await workflow.sleep(5)
    return "hello " + await task


def test_child_tasks_see_the_workflow_context(run: RunFactory) -> None:
    wf = run(event_in_task)
    wf.start()
    assert wf.step(at(1), EventReceived("name", "ann")) == []
    assert wf.step(at(5), TimerFired(seq=1)) == [WorkflowExecutionCompleted(result="hello ann")]
