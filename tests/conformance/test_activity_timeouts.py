"""Activity timeouts: an attempt past start_to_close or without a heartbeat for its
heartbeat timeout fails with TimeoutError and is retried under the retry policy, even when
the activity ignores being told; past schedule_to_close the activity fails for good."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest

import tapeflow
from tapeflow import activity, workflow
from tapeflow.history import ActivityCompleted, ActivityFailed
from tests.conformance._waiting import history
from tests.conftest import WorkerFactory

FAST_RETRY = tapeflow.RetryPolicy(
    initial_interval=timedelta(milliseconds=100), backoff_coefficient=1.0, maximum_attempts=2
)
ended: list[str] = []
"""Attempts that ran to their end after being timed out (their outcomes are discarded)."""


@activity.defn
async def stubborn_async() -> str:
    """Ignores the first cancellation and finishes late."""
    try:
        await asyncio.sleep(3)
    except asyncio.CancelledError:
        await asyncio.sleep(1)
    ended.append("async")
    return "late"


@activity.defn
def stubborn_sync() -> str:
    """Never heartbeats, so never hears it was told; finishes late."""
    time.sleep(1.5)
    ended.append("sync")
    return "late"


@activity.defn
def beats_on_the_second_try() -> str:
    if activity.info().attempt == 1:
        time.sleep(1.5)  # silent: past its heartbeat timeout
        return "silent"
    for _ in range(10):  # 1 s in all, never 0.5 s without a beat
        activity.heartbeat()
        time.sleep(0.1)
    return "beat"


@activity.defn
def always_flaky() -> str:
    raise RuntimeError("down")


@workflow.defn
async def limited(name: str) -> str:
    match name:
        case "stubborn_async":
            call = workflow.execute_activity(
                stubborn_async, retry=FAST_RETRY, start_to_close_timeout=timedelta(seconds=0.5)
            )
        case "stubborn_sync":
            call = workflow.execute_activity(
                stubborn_sync, retry=FAST_RETRY, start_to_close_timeout=timedelta(seconds=0.5)
            )
        case "heartbeat":
            call = workflow.execute_activity(
                beats_on_the_second_try,
                retry=FAST_RETRY,
                heartbeat_timeout=timedelta(seconds=0.5),
            )
        case "schedule_retries":
            call = workflow.execute_activity(
                always_flaky,
                retry=tapeflow.RetryPolicy(initial_interval=timedelta(milliseconds=300)),
                schedule_to_close_timeout=timedelta(seconds=1),
            )
        case _:
            call = workflow.execute_activity(
                stubborn_async, schedule_to_close_timeout=timedelta(seconds=0.5)
            )
    try:
        return await call
    except tapeflow.ActivityError as exc:
        return f"{exc.type} after {exc.attempt}: {exc.message}"


ACTIVITIES = [stubborn_async, stubborn_sync, beats_on_the_second_try, always_flaky]


@pytest.fixture(autouse=True)
def _fresh() -> None:
    ended.clear()


@pytest.mark.parametrize("name", ["stubborn_async", "stubborn_sync"])
async def test_start_to_close_times_out_each_attempt_even_if_ignored(
    client: tapeflow.Client, worker: WorkerFactory, name: str
) -> None:
    async with worker(workflows=[limited], activities=ACTIVITIES, max_concurrent_activities=4):
        handle = await client.start_workflow(limited, name, id=f"limited-{name}")
        outcome = await handle.result(timeout=15)
        assert outcome.startswith("TimeoutError after 2: ")
        assert "start_to_close_timeout of 0.5s" in outcome
        await asyncio.sleep(2)  # the ignored attempts end late; nothing of theirs is kept
    events = await history(client, handle.id)
    assert not any(isinstance(e, ActivityCompleted) for e in events)
    [failed] = [e for e in events if isinstance(e, ActivityFailed)]
    assert (failed.failure.type, failed.attempt) == ("TimeoutError", 2)


async def test_a_heartbeat_timeout_fails_a_silent_attempt_and_beats_keep_one_alive(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[limited], activities=ACTIVITIES):
        handle = await client.start_workflow(limited, "heartbeat", id="limited-heartbeat")
        assert await handle.result(timeout=15) == "beat"
    [done] = [e for e in await history(client, handle.id) if isinstance(e, ActivityCompleted)]
    assert done.attempt == 2


@pytest.mark.parametrize("name", ["schedule_retries", "schedule_running"])
async def test_past_schedule_to_close_the_activity_fails_for_good(
    client: tapeflow.Client, worker: WorkerFactory, name: str
) -> None:
    async with worker(workflows=[limited], activities=ACTIVITIES):
        handle = await client.start_workflow(limited, name, id=f"limited-{name}")
        outcome = await handle.result(timeout=15)
    assert outcome.startswith("TimeoutError after ")
    events = await history(client, handle.id)
    [failed] = [e for e in events if isinstance(e, ActivityFailed)]
    assert failed.failure.type == "TimeoutError"
    if name == "schedule_running":
        assert "schedule_to_close_timeout of 0.5s" in failed.failure.message
        assert failed.attempt == 1


async def test_timeouts_must_be_positive_timedeltas(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    @workflow.defn(name="bad_timeout")
    async def bad_timeout() -> str:
        try:
            await workflow.execute_activity(
                stubborn_sync, start_to_close_timeout=timedelta(seconds=-1)
            )
        except tapeflow.InvalidArgument as exc:
            return str(exc)
        return "accepted"

    async with worker(workflows=[bad_timeout], activities=ACTIVITIES):
        handle = await client.start_workflow(bad_timeout, id="bad-timeout")
        assert "start_to_close_timeout must be" in await handle.result(timeout=10)
