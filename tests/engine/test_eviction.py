"""Closing an instance (the worker evicts it, a replay is done with it) ends its coroutines
at once and quietly: their ``finally`` blocks run then, but every workflow call there is
refused, nothing is decided, logged or printed, and nothing is left for the garbage
collector to run later outside the workflow. A ``finally`` run by the workflow itself
(it finished, or a timeout cancelled its wait) still acts as usual."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any, cast

import pytest

from tapeflow import activity, testing, workflow
from tapeflow._engine.instance import Activation, WorkflowInstance
from tapeflow._worker.cache import WorkflowCache
from tapeflow.backends.base import Backend
from tapeflow.debugger import WorkflowDebugger
from tapeflow.history import (
    ActivityCancelled,
    ActivityScheduled,
    HistoryEvent,
    TimerFired,
    WorkflowExecutionCompleted,
)
from tests.engine.conftest import RunFactory
from tests.engine.harness import T0, Run, at, complete, started

reached: list[str] = []
"""What the workflows below got to, in order."""


@activity.defn
def tidy(what: str) -> str:
    return f"tidied {what}"


@activity.defn
def slow() -> None:
    pass


@workflow.defn
async def tidies_up_in_finally(name: str) -> str:
    try:
        await workflow.sleep(60)
        return name
    finally:
        reached.append(f"{name}: finally")
        workflow.logger.warning("tidying up %s", name)
        reached.append(f"{name}: logged")
        await workflow.execute_activity(tidy, name)
        reached.append(f"{name}: tidied")


@workflow.defn
async def waits_every_way() -> None:
    """Tasks of create_task, gather and a TaskGroup, an asyncio.timeout around an activity,
    and an event, each tidying up in its own ``finally``."""

    async def waits(name: str, seconds: float) -> None:
        try:
            await workflow.sleep(seconds)
        finally:
            reached.append(name)
            await workflow.sleep(1)
            reached.append(f"{name} slept")

    spawned = asyncio.create_task(waits("spawned", 10))
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(waits("grouped", 20))
            gathered = asyncio.gather(waits("gathered", 30), workflow.wait_event("go"))
            async with asyncio.timeout(40):
                await workflow.execute_activity(slow)
            await gathered
        await spawned
    finally:
        reached.append("main")
        workflow.set_var("tidied", True)
        reached.append("main set a var")


@workflow.defn
async def will_not_stop() -> None:
    """Swallows the GeneratorExit and waits once more, then tries to start a task."""
    waiting = workflow.execute_activity(slow)
    try:
        await waiting
    except BaseException:
        reached.append("caught")
    try:
        await waiting
    finally:
        reached.append("finally")
        spawned = asyncio.create_task(asyncio.sleep(1))
        reached.append(f"spawned {spawned}")


@pytest.fixture(autouse=True)
def fresh_reached() -> Iterator[None]:
    reached.clear()
    yield
    reached.clear()


@pytest.fixture
def unraisable(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What reaches ``sys.unraisablehook`` ("Exception ignored in ..."), collected."""
    seen: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    return seen


def assert_nothing_left(
    unraisable: list[Any], capsys: pytest.CaptureFixture[str], recwarn: pytest.WarningsRecorder
) -> None:
    """After the garbage collector: nothing unraisable, printed or warned."""
    gc.collect()
    assert unraisable == []
    assert capsys.readouterr().err == ""
    assert [str(w.message) for w in recwarn] == []


def test_an_evicted_instance_ends_its_finally_at_the_first_workflow_call(
    unraisable: list[Any],
    capsys: pytest.CaptureFixture[str],
    recwarn: pytest.WarningsRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wf = Run(tidies_up_in_finally)
    wf.start("ann")
    instance = wf.instance
    with caplog.at_level(logging.DEBUG):
        instance.close()
    assert reached == ["ann: finally", "ann: logged"]
    assert caplog.records == []
    assert instance.commands.take_decisions() == []
    del wf, instance
    assert_nothing_left(unraisable, capsys, recwarn)
    assert reached == ["ann: finally", "ann: logged"]


def test_every_task_is_ended_newest_first_and_nothing_is_decided(
    unraisable: list[Any], capsys: pytest.CaptureFixture[str], recwarn: pytest.WarningsRecorder
) -> None:
    wf = Run(waits_every_way)
    decisions = wf.start()
    assert len(decisions) == 5  # four timers and the activity
    instance = wf.instance
    instance.close()
    assert reached == ["gathered", "grouped", "spawned", "main"]
    assert instance.commands.take_decisions() == []
    assert instance.vars == {}
    instance.close()  # closing again does nothing
    del wf, instance
    assert_nothing_left(unraisable, capsys, recwarn)
    assert reached == ["gathered", "grouped", "spawned", "main"]


def test_a_coroutine_that_swallows_the_ending_is_ended_all_the_same(
    unraisable: list[Any], capsys: pytest.CaptureFixture[str], recwarn: pytest.WarningsRecorder
) -> None:
    wf = Run(will_not_stop)
    wf.start()
    wf.close()
    assert reached == ["caught", "finally"]
    del wf
    assert_nothing_left(unraisable, capsys, recwarn)


def test_the_cache_ends_the_instance_it_evicts(
    unraisable: list[Any], capsys: pytest.CaptureFixture[str], recwarn: pytest.WarningsRecorder
) -> None:
    cache = WorkflowCache(size=1)
    for name in ("ann", "bob"):
        wf = Run(tidies_up_in_finally, workflow_id=name)
        wf.start(name)
        wf.instance.run_id = name
        cache.put(wf.instance)
    assert reached == ["ann: finally", "ann: logged"]
    cache.clear()
    assert reached == ["ann: finally", "ann: logged", "bob: finally", "bob: logged"]
    del wf
    assert_nothing_left(unraisable, capsys, recwarn)


def test_a_replay_left_waiting_is_ended_quietly(
    unraisable: list[Any], capsys: pytest.CaptureFixture[str], recwarn: pytest.WarningsRecorder
) -> None:
    wf = Run(tidies_up_in_finally)
    wf.start("ann")
    wf.close()
    reached.clear()
    assert testing.replay(tidies_up_in_finally, wf.history) == testing.Replayed({}, False)
    assert reached == ["ann: finally", "ann: logged"]
    assert_nothing_left(unraisable, capsys, recwarn)


class _Stored:
    def __init__(self, history: list[HistoryEvent]) -> None:
        self._history = history

    async def load_history(self, workflow_id: str, run_id: str | None = None) -> list[HistoryEvent]:
        return self._history


async def test_the_debugger_ends_the_instances_it_replays_quietly(
    unraisable: list[Any], capsys: pytest.CaptureFixture[str], recwarn: pytest.WarningsRecorder
) -> None:
    wf = Run(tidies_up_in_finally)
    wf.start("ann")
    wf.close()
    reached.clear()
    debugger = WorkflowDebugger(cast(Backend, _Stored(wf.history)))
    assert await debugger.query_vars(tidies_up_in_finally, wf.workflow_id) == {}
    assert reached == ["ann: finally", "ann: logged"]
    assert_nothing_left(unraisable, capsys, recwarn)


def test_an_instance_closed_while_another_thread_runs_it_is_ended_by_that_thread(
    unraisable: list[Any], capsys: pytest.CaptureFixture[str], recwarn: pytest.WarningsRecorder
) -> None:
    """As when a worker gives up on an activation stuck past its timeout."""
    entered, release = threading.Event(), threading.Event()

    @workflow.defn(name="blocks")
    async def blocks() -> None:
        try:
            entered.set()
            release.wait()  # a blocking call, as workflow code should not make
            await workflow.sleep(1)
        finally:
            reached.append("finally")
            await workflow.sleep(1)

    instance = WorkflowInstance(Run(blocks).definition, "blocks")
    stuck = threading.Thread(target=instance.activate, args=(Activation(T0, [started(blocks)]),))
    stuck.start()
    assert entered.wait(5)
    instance.close()  # returns at once: the thread holds the loop
    assert reached == []
    release.set()
    stuck.join(5)
    assert reached == ["finally"]
    assert instance.commands.take_decisions() == []
    del instance
    assert_nothing_left(unraisable, capsys, recwarn)


@workflow.defn
async def tidies_up_when_its_wait_times_out() -> str:
    try:
        async with asyncio.timeout(5):
            await workflow.execute_activity(slow)
        return "done"
    except TimeoutError:
        return "timed out"
    finally:
        workflow.logger.warning("tidying up")
        await workflow.execute_activity(tidy, "after the timeout")


def test_a_finally_run_as_the_workflow_finishes_still_acts(run: RunFactory) -> None:
    wf = run(tidies_up_in_finally)
    wf.start("ann")
    tidying = ActivityScheduled(seq=2, name="tidy", args=["ann"])
    assert wf.step(at(60), TimerFired(seq=1)) == [tidying]
    assert wf.step(at(61), complete(tidying, "tidied ann")) == [
        WorkflowExecutionCompleted(result="ann")
    ]
    assert reached == ["ann: finally", "ann: logged", "ann: tidied"]


def test_a_finally_run_as_a_timeout_cancels_the_wait_still_acts(
    run: RunFactory, caplog: pytest.LogCaptureFixture
) -> None:
    wf = run(tidies_up_when_its_wait_times_out)
    tidying = ActivityScheduled(seq=3, name="tidy", args=["after the timeout"])
    with caplog.at_level(logging.WARNING, logger="tapeflow.workflow"):
        wf.start()
        assert wf.step(at(5), TimerFired(seq=1)) == [ActivityCancelled(seq=2), tidying]
    assert [r.getMessage() for r in caplog.records] == ["tidying up"]
    assert wf.step(at(6), complete(tidying, "tidied")) == [
        WorkflowExecutionCompleted(result="timed out")
    ]
