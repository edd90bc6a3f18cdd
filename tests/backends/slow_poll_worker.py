"""A worker that polls only every 5 s: what it does sooner, a wake-up made it do.

Run it with ``python -m tests.backends.slow_poll_worker sqlite:///path.db``.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta

import tapeflow
from tapeflow import activity, workflow

POLL_INTERVAL = timedelta(seconds=5)


@activity.defn
def double(value: int) -> int:
    return value * 2


@workflow.defn
async def doubled(value: int) -> int:
    return await workflow.execute_activity(double, value)


async def _serve(url: str) -> None:
    async with tapeflow.connect(url) as backend:
        worker = tapeflow.Worker(
            backend, workflows=[doubled], activities=[double], poll_interval=POLL_INTERVAL
        )
        await worker.run()


if __name__ == "__main__":
    asyncio.run(_serve(sys.argv[1]))
