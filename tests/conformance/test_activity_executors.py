"""Sync activities run in the worker's thread pool by default, or in a process pool."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest

import tapeflow
from tapeflow import workflow
from tests.conformance.process_activities import whereabouts
from tests.conftest import WorkerFactory


@workflow.defn
async def locate(label: str) -> dict[str, int | str]:
    return await workflow.execute_activity(
        whereabouts, label, retry=tapeflow.RetryPolicy(initial_interval=timedelta(minutes=5))
    )


@pytest.mark.parametrize("executor", ["thread", "process"])
async def test_sync_activity_executor(
    client: tapeflow.Client, worker: WorkerFactory, executor: str
) -> None:
    async with worker(workflows=[locate], activities=[whereabouts], activity_executor=executor):
        handle = await client.start_workflow(locate, executor, id=f"locate-{executor}")
        result = await handle.result(timeout=30)
    assert result["label"] == executor
    assert result["attempt"] == 2  # retry_after beat the policy's 5 minutes
    assert (result["pid"] == os.getpid()) is (executor == "thread")
