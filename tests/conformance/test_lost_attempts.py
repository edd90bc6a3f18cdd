"""Attempts lost with their workers count: a task claimed past the retry policy's last
attempt fails for good instead of running again."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import tapeflow
from tapeflow import activity, workflow
from tests.conftest import WorkerFactory

ran: list[int] = []


@activity.defn
def fragile() -> str:
    ran.append(activity.info().attempt)
    return "ran"


@workflow.defn
async def twice_at_most() -> str:
    policy = tapeflow.RetryPolicy(maximum_attempts=2)
    try:
        return await workflow.execute_activity(fragile, retry=policy)
    except tapeflow.ActivityError as exc:
        return f"{exc.type} after {exc.attempt}"


async def test_a_task_past_its_last_attempt_fails_without_running(
    client: tapeflow.Client, backend: tapeflow.Backend, worker: WorkerFactory
) -> None:
    ran.clear()
    async with worker(workflows=[twice_at_most]):  # schedules the activity, runs none
        handle = await client.start_workflow(twice_at_most, id="lost-twice")
        lease = timedelta(milliseconds=50)
        for _ in range(2):  # two attempts whose workers die: their leases run out
            claimed: list[tapeflow.backends.base.ActivityTask] = []
            while not claimed:
                claimed = await backend.claim_activity_tasks(["fragile"], "doomed", lease, 1)
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.1)
        async with worker(activities=[fragile]):
            assert await handle.result(timeout=10) == "AttemptsExhausted after 3"
    assert ran == []
