"""asyncio inside workflows: wait(FIRST_COMPLETED), TaskGroup, Event, Queue, timeout and
sleep work as in any asyncio program, and every wait on time is a durable timer."""

from __future__ import annotations

from datetime import UTC, timedelta

import tapeflow
from tapeflow.history import (
    HistoryEvent,
    TimerCancelled,
    TimerFired,
    TimerStarted,
    WorkflowTaskStarted,
)
from tests.conformance._waiting import history, history_has
from tests.conftest import WorkerFactory
from tests.scenarios.asyncio_composition import (
    ClockReport,
    PipelineResult,
    TimeoutReport,
    clock_and_info,
    echo,
    first_completed,
    pipeline,
    refuse,
    task_group_failure,
    timeouts,
    triple,
)

ACTIVITIES = [echo, triple, refuse]


def timer_events(events: list[HistoryEvent]) -> list[tuple[str, int]]:
    return [
        (e.kind, e.seq) for e in events if isinstance(e, TimerStarted | TimerFired | TimerCancelled)
    ]


def timer_delay(events: list[HistoryEvent], seq: int) -> timedelta:
    """How far ahead of its workflow task's time timer ``seq`` was set."""
    task_at = None
    for event in events:
        if isinstance(event, WorkflowTaskStarted):
            task_at = event.at
        if isinstance(event, TimerStarted) and event.seq == seq:
            assert task_at is not None
            return event.fire_at - task_at
    raise AssertionError(f"no timer {seq}")


def about(delay: timedelta, expected: timedelta) -> bool:
    return abs(delay - expected) < timedelta(milliseconds=1)


async def test_wait_first_completed_and_the_losers_are_cancelled(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[first_completed], activities=ACTIVITIES):
        handle = await client.start_workflow(first_completed, id="race")
        assert await handle.result(timeout=10) == ["activity", "short timer"]
    events = await history(client, "race")
    # seq 1 is the activity, seq 2 the hour (cancelled once the activity won), seq 3 the
    # short sleep that beat the event.
    assert timer_events(events) == [
        ("timer_started", 2),
        ("timer_cancelled", 2),
        ("timer_started", 3),
        ("timer_fired", 3),
    ]
    assert about(timer_delay(events, 2), timedelta(hours=1))
    assert about(timer_delay(events, 3), timedelta(milliseconds=100))


async def test_task_group_with_a_queue_and_an_event_between_tasks(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[pipeline], activities=ACTIVITIES):
        handle = await client.start_workflow(pipeline, 5, id="pipeline")
        assert await handle.result(timeout=10) == PipelineResult(
            items=[0, 3, 6, 9, 12], counted_by_watcher=5
        )


async def test_a_failing_task_group_child_cancels_its_sibling_timer(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[task_group_failure], activities=ACTIVITIES):
        handle = await client.start_workflow(task_group_failure, id="group-fails")
        assert await handle.result(timeout=10) == (
            "activity 'refuse' failed after 1 attempt(s): Refused: no thanks"
        )
    assert timer_events(await history(client, "group-fails")) == [
        ("timer_started", 1),
        ("timer_cancelled", 1),
    ]


async def test_asyncio_timeout_around_wait_event_expires_and_does_not(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[timeouts]):
        handle = await client.start_workflow(timeouts, id="timeouts")
        # The first timeout expires on its own; send the ping only after that.
        await history_has(client, "timeouts", lambda e: isinstance(e, TimerFired))
        await client.send_event("timeouts", "ping", "pong")
        assert await handle.result(timeout=10) == TimeoutReport(first="timed out", ping="pong")
    events = await history(client, "timeouts")
    assert timer_events(events) == [
        ("timer_started", 1),
        ("timer_fired", 1),
        ("timer_started", 2),
        ("timer_cancelled", 2),
    ]
    assert about(timer_delay(events, 1), timedelta(milliseconds=200))
    assert about(timer_delay(events, 2), timedelta(hours=1))


async def test_asyncio_sleep_is_a_durable_timer_and_info_describes_the_workflow(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[clock_and_info]):
        handle = await client.start_workflow(clock_and_info, id="clock", version="2024-06")
        report: ClockReport = await handle.result(timeout=10)
    record = await handle.describe()

    assert report.workflow_id == "clock"
    assert report.name == "clock_and_info"
    assert report.version == "2024-06"
    assert report.started_at == record.start_at
    assert report.is_replaying is False
    start, after_sleep, after_workflow_sleep = report.times
    assert all(t.utcoffset() == timedelta(0) for t in report.times)
    assert start.tzinfo is not None
    assert start.astimezone(UTC) >= report.started_at
    assert after_sleep - start >= timedelta(milliseconds=200)
    assert after_workflow_sleep - after_sleep >= timedelta(milliseconds=100)
    assert abs(report.loop_time - after_workflow_sleep.timestamp()) < 1e-6

    events = await history(client, "clock")
    assert timer_events(events) == [
        ("timer_started", 1),
        ("timer_fired", 1),
        ("timer_started", 2),
        ("timer_fired", 2),
    ]
    assert about(timer_delay(events, 1), timedelta(milliseconds=200))
    assert about(timer_delay(events, 2), timedelta(milliseconds=100))

    # The debugger re-executes the history, so there the workflow is replaying.
    debugger = tapeflow.WorkflowDebugger(client.backend)
    assert await debugger.query_vars(clock_and_info, "clock") == {"replaying_at_start": True}
