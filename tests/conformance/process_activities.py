"""Activities for the process-pool tests: module-level, so a pool process can import them.

``python -m tests.conformance.process_activities URL`` runs a worker of them with a process
pool, for a test to kill.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

import tapeflow
from tapeflow import activity, workflow

POOL_SIZE = 2


@activity.defn
def whereabouts(label: str) -> dict[str, int | str]:
    """Fails its first attempt, asking for a quick retry, to prove the override crosses
    the process boundary; then reports the pid and attempt it ran with."""
    info = activity.info()
    if info.attempt == 1:
        activity.retry_after(timedelta(milliseconds=10))
        raise RuntimeError("first attempt fails")
    return {"label": label, "pid": os.getpid(), "attempt": info.attempt}


@activity.defn
def exits_in_child(label: str) -> str:
    """Ends its pool process's call with SystemExit: a failed attempt, like any other."""
    sys.exit(f"{label}: sys.exit on attempt {activity.info().attempt}")


@activity.defn
def dies_on_first_attempt(label: str) -> str:
    """Kills its pool process outright on the first attempt (no exception to catch)."""
    if activity.info().attempt == 1:
        os._exit(1)
    return f"{label}: done on attempt {activity.info().attempt}"


@activity.defn
def naps_for_a_minute(marker_dir: str, index: int) -> None:
    """Leaves its pid in ``marker_dir``, then outlasts any test that waits for it."""
    (Path(marker_dir) / str(os.getpid())).touch()
    time.sleep(60)


@workflow.defn
async def naps_in_parallel(marker_dir: str) -> None:
    await asyncio.gather(
        *(workflow.execute_activity(naps_for_a_minute, marker_dir, i) for i in range(POOL_SIZE))
    )


async def _serve(url: str) -> None:
    async with tapeflow.connect(url) as backend:
        worker = tapeflow.Worker(
            backend,
            workflows=[naps_in_parallel],
            activities=[naps_for_a_minute],
            activity_executor="process",
            max_concurrent_activities=POOL_SIZE,
            poll_interval=timedelta(milliseconds=100),
        )
        await worker.run()


if __name__ == "__main__":
    asyncio.run(_serve(sys.argv[1]))
