"""Workflow code that never returns costs its worker a bounded number of threads.

A task whose workflow code runs past ``workflow_task_timeout`` fails and its thread is
left to it. The workflow is not run again on that worker while that thread is stuck, so
retries add no threads; past ``max_abandoned_workflow_threads`` stuck threads the worker
takes no workflow tasks at all (``health()`` says so, other workers go on), until one of
them returns.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from datetime import timedelta

import pytest

import tapeflow
from tapeflow._worker.workflow_threads import THREAD_NAME, WORKFLOW_THREADS
from tests.conformance._bystanders import bystanders_finish, start_bystanders
from tests.conformance._waiting import eventually
from tests.conftest import WorkerFactory
from tests.scenarios.hostile import double, steady
from tests.scenarios.poison import RELEASE, spins_forever

SHORT = timedelta(seconds=0.2)


def engine_threads() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name == THREAD_NAME)


async def test_a_spinning_workflow_holds_one_thread_of_its_worker_however_often_retried(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    RELEASE.clear()
    before = engine_threads()
    most = 0
    try:
        async with worker(workflows=[spins_forever], workflow_task_timeout=SHORT) as running:
            handle = await client.start_workflow(spins_forever, id="spinner")
            # Three tasks in this time: the first times out, and its retries (1 s and 2 s
            # of backoff later) find its code still spinning.
            deadline = time.monotonic() + 3.6
            while time.monotonic() < deadline:
                most = max(most, engine_threads() - before)
                await asyncio.sleep(0.05)
            health = running.health()
            error = (await handle.describe()).task_error
    finally:
        RELEASE.set()
    assert most <= WORKFLOW_THREADS + 1  # the engine's own, and one stuck
    assert health == tapeflow.WorkerHealth(
        accepting_workflow_tasks=True, abandoned_threads=1, reason=None
    )
    assert error is not None
    assert "still runs on this worker" in error, error


async def test_past_the_cap_a_worker_takes_no_workflow_tasks_until_a_thread_returns(
    client: tapeflow.Client, worker: WorkerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    RELEASE.clear()
    try:
        async with worker(
            workflows=[spins_forever, steady],
            activities=[double],
            workflow_task_timeout=SHORT,
            max_abandoned_workflow_threads=2,
        ) as stuck:

            async def refusing() -> bool:
                return not stuck.health().accepting_workflow_tasks

            spinners = [await client.start_workflow(spins_forever, id=f"spin-{n}") for n in (1, 2)]
            await eventually(refusing, "the worker refuses workflow tasks", timeout=5)
            refused = stuck.health()
            bystanders = await start_bystanders(client, "capped")
            await asyncio.sleep(0.5)
            untouched = [(await b.describe()).history_length for b in bystanders]
            async with worker(workflows=[steady], activities=[double]):
                await bystanders_finish(bystanders)  # on the other worker
            RELEASE.set()  # the stuck threads return: the worker takes workflow tasks again

            async def accepting() -> bool:  # both threads returned, not only the first
                return stuck.health().abandoned_threads == 0

            await eventually(accepting, "the worker takes workflow tasks again", timeout=5)
            recovered = stuck.health()
            results = [await s.result(timeout=10) for s in spinners]
    finally:
        RELEASE.set()
    assert refused.accepting_workflow_tasks is False
    assert refused.abandoned_threads == 2
    assert refused.reason is not None
    assert "2 threads" in refused.reason, refused.reason
    assert untouched == [0, 0, 0]
    assert recovered == tapeflow.WorkerHealth(
        accepting_workflow_tasks=True, abandoned_threads=0, reason=None
    )
    assert results == ["released", "released"]
    assert any(
        record.levelno == logging.ERROR and "takes no workflow tasks" in record.getMessage()
        for record in caplog.records
    )
