"""Workflows and activities on queues with limits, and a worker program for them.

Activities return when they ran (``[start, end]``, wall clock of one machine), so that a
test can check from the results alone, across processes, how many ran at once and how
many started in any window. Run a worker with
``python -m tests.conformance.queue_workers URL``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import timedelta

import tapeflow
from tapeflow import activity, workflow

API = tapeflow.Queue("api", concurrency=3)
"""At most three of its activities run at once, across workers."""
RATED = tapeflow.Queue("rated", rate_limit=(4, timedelta(seconds=1)))
"""At most four of its activities start in any second, across workers."""
SESSIONS = tapeflow.Queue("sessions", concurrency=2)
"""At most two of its workflows are open at once."""


@activity.defn
async def call(seconds: float) -> list[float]:
    """A call to a slow service."""
    started = time.time()
    await asyncio.sleep(seconds)
    return [started, time.time()]


@workflow.defn
async def fan_out(count: int, queue: str, seconds: float) -> list[list[float]]:
    """``count`` calls on ``queue`` at once."""
    calls = (workflow.execute_activity(call, seconds, queue=queue) for _ in range(count))
    return list(await asyncio.gather(*calls))


@workflow.defn
async def session(seconds: float) -> list[float]:
    """Open for at least ``seconds``: its span is its activity's, on the default queue."""
    return await workflow.execute_activity(call, seconds)


def most_at_once(spans: list[list[float]]) -> int:
    """The most spans that overlap at one moment."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = most = 0
    for _, step in edges:  # an end sorts before a start at the same moment
        running += step
        most = max(most, running)
    return most


def most_started_within(spans: list[list[float]], window: float) -> int:
    """The most spans that started within any ``window`` seconds."""
    starts = sorted(start for start, _ in spans)
    return max(
        (
            sum(1 for other in starts[i:] if other - start < window)
            for i, start in enumerate(starts)
        ),
        default=0,
    )


async def _serve(url: str) -> None:
    async with tapeflow.connect(url) as backend:
        worker = tapeflow.Worker(
            backend,
            workflows=[fan_out, session],
            activities=[call],
            queues=["default", API, RATED, SESSIONS],
            max_concurrent_activities=10,
            lease_duration=timedelta(seconds=5),
            poll_interval=timedelta(milliseconds=100),
        )
        await worker.run()


if __name__ == "__main__":
    asyncio.run(_serve(sys.argv[1]))
