"""Workers claim only what they registered; a workflow nobody runs stays pending, visibly."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

import tapeflow
from tapeflow import activity, workflow
from tests.conftest import WorkerFactory


@activity.defn
async def shout(text: str) -> str:
    return text.upper()


@workflow.defn
async def loud(text: str) -> str:
    return await workflow.execute_activity(shout, text)


@workflow.defn
async def quiet(text: str) -> str:
    return text


async def test_a_workflow_no_worker_registered_stays_pending_until_one_does(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    handle = await client.start_workflow(loud, "hi", id="waits-for-its-worker")
    async with worker(workflows=[quiet], activities=[shout]):
        other = await client.start_workflow(quiet, "sh", id="runs-now")
        assert await other.result(timeout=10) == "sh"
        with pytest.raises(TimeoutError):
            await handle.result(timeout=0.3)
    record = await handle.describe()
    assert record.status is tapeflow.WorkflowStatus.PENDING
    assert record.history_length == 0

    async with worker(workflows=[loud, quiet], activities=[shout]):
        assert await handle.result(timeout=10) == "HI"
    assert (await handle.describe()).status is tapeflow.WorkflowStatus.COMPLETED


async def test_workflow_worker_and_activity_worker_apart(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    """The split: one worker runs workflows, another runs activities."""
    async with worker(workflows=[loud]), worker(activities=[shout]):
        handle = await client.start_workflow(loud, "split", id="split-workers")
        assert await handle.result(timeout=10) == "SPLIT"


async def test_an_activity_no_worker_registered_waits_visibly(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[loud]):
        handle = await client.start_workflow(loud, "later", id="activity-waits")
        with pytest.raises(TimeoutError):
            await handle.result(timeout=0.5)
        assert (await handle.describe()).status is tapeflow.WorkflowStatus.RUNNING
        history = await client.backend.load_history(handle.id)
        assert history[-1].kind == "activity_scheduled"
        async with worker(activities=[shout]):
            assert await handle.result(timeout=10) == "LATER"


def test_worker_needs_definitions_and_known_options(backend: tapeflow.Backend) -> None:
    with pytest.raises(tapeflow.InvalidArgument, match="at least one"):
        tapeflow.Worker(backend)
    with pytest.raises(tapeflow.InvalidArgument, match="unknown worker option"):
        tapeflow.Worker(backend, workflows=[loud], lease_time=timedelta(seconds=1))
    with pytest.raises(tapeflow.NotADefinition):
        tapeflow.Worker(backend, activities=[print])
    with pytest.raises(tapeflow.InvalidArgument, match="lease_duration"):
        tapeflow.Worker(backend, workflows=[loud], lease_duration=timedelta(0))


async def test_stop_waits_for_running_activities(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    started = asyncio.Event()

    @activity.defn(name="slow_shout")
    async def slow_shout(text: str) -> str:
        started.set()
        await asyncio.sleep(0.3)
        return text.upper()

    @workflow.defn(name="slow_loud")
    async def slow_loud(text: str) -> str:
        return await workflow.execute_activity(slow_shout, text)

    handle = await client.start_workflow(slow_loud, "bye", id="graceful")
    async with worker(workflows=[slow_loud], activities=[slow_shout]):
        await asyncio.wait_for(started.wait(), 10)
    # the activity finished during shutdown: its completion is in the inbox, not lost
    async with worker(workflows=[slow_loud], activities=[slow_shout]):
        assert await handle.result(timeout=10) == "BYE"
    history = await client.backend.load_history(handle.id)
    assert sum(e.kind == "activity_completed" for e in history) == 1
