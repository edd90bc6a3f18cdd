"""A workload for many worker processes: five sequential activities per workflow.

Run a worker of it with ``python -m tests.conformance.fleet URL [cache_size]``.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta

import tapeflow
from tapeflow import activity, workflow

STEPS = 5


@activity.defn
def step(index: int, number: int) -> int:
    return index * 10 + number


@workflow.defn
async def five_steps(index: int) -> int:
    total = 0
    for number in range(STEPS):
        total += await workflow.execute_activity(step, index, number)
    return total


def expected(index: int) -> int:
    return sum(index * 10 + number for number in range(STEPS))


async def _serve(url: str, cache_size: int) -> None:
    async with tapeflow.connect(url) as backend:
        worker = tapeflow.Worker(
            backend,
            workflows=[five_steps],
            activities=[step],
            workflow_cache_size=cache_size,
            max_concurrent_activities=4,
            lease_duration=timedelta(seconds=5),
            poll_interval=timedelta(milliseconds=100),
        )
        await worker.run()


if __name__ == "__main__":
    asyncio.run(_serve(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1000))
