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


@activity.defn
def hangs_first_time(marker_dir: str) -> int:
    """The first attempt hangs in a sync call (ten minutes); the next returns at once."""
    attempt = activity.info().attempt
    Path(marker_dir, f"attempt-{attempt}-pid-{os.getpid()}").touch()
    if attempt == 1:
        time.sleep(600)
    return attempt


@workflow.defn
async def run_hanging_step(marker_dir: str) -> int:
    return await workflow.execute_activity(
        hangs_first_time, marker_dir, retry=tapeflow.RetryPolicy(initial_interval=timedelta(0))
    )


async def _serve(
    url: str, lease_seconds: float, grace_seconds: float = 10, executor: str = "thread"
) -> None:
    async with tapeflow.connect(url) as backend:
        worker = tapeflow.Worker(
            backend,
            workflows=[run_slow_step, run_hanging_step],
            activities=[slow_step, hangs_first_time],
            lease_duration=timedelta(seconds=lease_seconds),
            poll_interval=timedelta(milliseconds=50),
            shutdown_grace=timedelta(seconds=grace_seconds),
            activity_executor=executor,
        )
        await worker.run()


if __name__ == "__main__":
    url, lease, *rest = sys.argv[1:]
    grace, executor = (float(rest[0]), rest[1]) if rest else (10.0, "thread")
    asyncio.run(_serve(url, float(lease), grace, executor))
