"""Sync activities run in the worker's thread pool by default, or in a process pool."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

import tapeflow
from tapeflow import workflow
from tests.conformance.process_activities import POOL_SIZE, naps_in_parallel, whereabouts
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


ROOT = Path(__file__).resolve().parents[2]


def _pids(marker_dir: Path) -> list[int]:
    """The pool processes that started an activity (each left its pid as a marker)."""
    return [int(marker.name) for marker in marker_dir.iterdir()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_pool_processes_exit_when_their_worker_is_killed(
    backend_url: str, client: tapeflow.Client, tmp_path: Path
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    await client.start_workflow(naps_in_parallel, str(markers), id="naps")
    doomed = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.conformance.process_activities",
        backend_url,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 20
        while len(_pids(markers)) < POOL_SIZE:
            assert time.monotonic() < deadline, "the activities never started"
            await asyncio.sleep(0.05)
        children = _pids(markers)
        assert doomed.pid not in children
        assert all(map(_alive, children))
        doomed.send_signal(signal.SIGKILL)
        await asyncio.wait_for(doomed.wait(), 10)
    finally:
        if doomed.returncode is None:
            doomed.kill()
    deadline = time.monotonic() + 5
    try:
        while any(map(_alive, children)):
            assert time.monotonic() < deadline, f"pool processes outlived their worker: {children}"
            await asyncio.sleep(0.05)
    finally:
        for pid in filter(_alive, children):  # only if the test failed
            os.kill(pid, signal.SIGKILL)
