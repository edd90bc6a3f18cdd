"""Workflows for the update tests, importable by a worker running in another process."""

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
def pack(marker_dir: str, item: str) -> str:
    """Leaves a file per attempt (named by the worker's pid); the first attempt hangs, so
    that its worker can be killed in the middle of the update that called it."""
    attempt = activity.info().attempt
    Path(marker_dir, f"attempt-{attempt}-pid-{os.getpid()}").touch()
    if attempt == 1:
        time.sleep(600)
    return f"{item} packed"


@workflow.defn
async def packing(marker_dir: str) -> list[str]:
    """Packs what each "pack" update asks for, until it is told to ship."""
    packed: list[str] = []

    async def pack_item(item: str) -> str:
        done = await workflow.execute_activity(
            pack, marker_dir, item, retry=tapeflow.RetryPolicy(initial_interval=timedelta(0))
        )
        packed.append(done)
        return done

    workflow.on_update("pack", pack_item)
    await workflow.wait_event("ship")
    return packed


async def _serve(url: str, lease_seconds: float) -> None:
    async with tapeflow.connect(url) as backend:
        worker = tapeflow.Worker(
            backend,
            workflows=[packing],
            activities=[pack],
            lease_duration=timedelta(seconds=lease_seconds),
            poll_interval=timedelta(milliseconds=50),
        )
        await worker.run()


if __name__ == "__main__":
    url, lease = sys.argv[1:]
    asyncio.run(_serve(url, float(lease)))
