"""A sync activity that hangs does not keep a stopping worker alive, nor its attempt."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

import tapeflow
from tests.conformance.lease_workflows import hangs_first_time, run_hanging_step

ROOT = Path(__file__).resolve().parents[2]
LEASE = 60.0
"""Far longer than the test: the attempt is retried because its lease was released, not
because it ran out."""
GRACE = 1.0


@pytest.mark.parametrize("executor", ["thread", "process"])
async def test_a_worker_stopped_during_a_hung_sync_activity_exits_and_another_retries_it(
    backend_url: str, backend: tapeflow.Backend, tmp_path: Path, executor: str
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    client = tapeflow.Client(backend)
    handle = await client.start_workflow(run_hanging_step, str(markers), id="hung")
    args = [backend_url, str(LEASE), str(GRACE), executor]
    stopping = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.conformance.lease_workflows", *args, cwd=ROOT
    )
    try:
        deadline = time.monotonic() + 20
        while not any(markers.iterdir()):
            assert time.monotonic() < deadline, "the first attempt never started"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # well inside the hanging call
        stopping.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert await asyncio.wait_for(stopping.wait(), GRACE + 5) == 0
        assert time.monotonic() - signalled < GRACE + 5
    finally:
        if stopping.returncode is None:
            stopping.kill()
            await stopping.wait()

    async with tapeflow.Worker(
        backend,
        workflows=[run_hanging_step],
        activities=[hangs_first_time],
        lease_duration=timedelta(seconds=LEASE),
        poll_interval=timedelta(milliseconds=50),
    ):
        assert await handle.result(timeout=10) == 2
    assert sorted(p.name.split("-pid-")[0] for p in markers.iterdir()) == [
        "attempt-1",
        "attempt-2",
    ]
