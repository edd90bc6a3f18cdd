"""Many worker processes share one database: every workflow completes exactly once, with
the right result, and no activity outcome is recorded twice."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import tapeflow
from tapeflow.history import ActivityCompleted, ActivityFailed
from tests.conformance.fleet import STEPS, expected, five_steps

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = 4


async def test_four_worker_processes_share_the_work(
    backend_url: str, client: tapeflow.Client
) -> None:
    count = 500 if backend_url.startswith("postgresql") else 200
    handles = [
        await client.start_workflow(five_steps, index, id=f"fleet-{index}")
        for index in range(count)
    ]
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.conformance.fleet",
            backend_url,
            "0" if n % 2 else "1000",  # half the fleet replays every task, half keeps a cache
            cwd=ROOT,
        )
        for n in range(PROCESSES)
    ]
    try:
        results = await asyncio.gather(*(h.result(timeout=240) for h in handles))
    finally:
        for process in workers:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        codes = [await asyncio.wait_for(p.wait(), 30) for p in workers]
    assert results == [expected(index) for index in range(count)]
    assert codes == [0] * PROCESSES  # every worker stopped cleanly on SIGTERM

    for handle in handles:
        history = await client.backend.load_history(handle.id)
        outcomes = [e.seq for e in history if isinstance(e, ActivityCompleted | ActivityFailed)]
        assert sorted(outcomes) == list(range(1, STEPS + 1)), handle.id
        terminal = [e for e in history if e.kind in ("workflow_completed", "workflow_failed")]
        assert len(terminal) == 1
        assert history[-1] is terminal[0]
