"""Workflows for the lease tests, importable by a worker running in another process."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

import tapeflow
from tapeflow import activity, workflow


@activity.defn
def slow_step(marker_dir: str, seconds: float) -> int:
    """Leaves a file per attempt (named by the worker's pid), then works for ``seconds``."""
    attempt = activity.info().attempt
    Path(marker_dir, f"attempt-{attempt}-pid-{os.getpid()}").touch()
    time.sleep(seconds)
    return attempt


@workflow.defn
async def run_slow_step(marker_dir: str, seconds: float) -> int:
    return await workflow.execute_activity(
        slow_step, marker_dir, seconds, retry=tapeflow.RetryPolicy(initial_interval=timedelta(0))
    )


async def _serve(url: str, lease_seconds: float) -> None:
    async with tapeflow.connect(url) as backend:
        worker = tapeflow.Worker(
            backend,
            workflows=[run_slow_step],
            activities=[slow_step],
            lease_duration=timedelta(seconds=lease_seconds),
            poll_interval=timedelta(milliseconds=50),
        )
        await worker.run()


if __name__ == "__main__":
    asyncio.run(_serve(sys.argv[1], float(sys.argv[2])))
