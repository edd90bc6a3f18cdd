"""The cases of the peers' harness (``../shared/peer-bench``), at its sizes, run the way it
runs tapeflow: the library's defaults, the worker in the client's process, plain-function
steps (``x -> x + 1``) in the worker's thread pool, 32 starts in flight.

These figures answer "what does a user get who writes ``tapeflow.Worker(backend, ...)`` and
nothing else", and sit beside the peers' figures measured with that harness in the same
minutes (docs/performance.md). The rest of the suite measures tuned worker processes.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import tapeflow
from benchmarks.cluster import workers
from benchmarks.databases import Database
from benchmarks.scenarios import Figures, Settings, percentile
from benchmarks.workloads import ACTIVITIES, WORKFLOWS, sync_sequential

START_CONCURRENCY = 32
"""Starts in flight at once, as the harness has them (its ``--enqueue-concurrency``)."""


@asynccontextmanager
async def _client(
    db: Database, settings: Settings, in_process: bool
) -> AsyncIterator[tapeflow.Client]:
    """A client, and a worker with the library's defaults: in this process, on the client's
    backend, or in a process of its own."""
    async with tapeflow.connect(db.url) as backend:
        if in_process:
            async with tapeflow.Worker(backend, workflows=WORKFLOWS, activities=ACTIVITIES):
                yield tapeflow.Client(backend)
        else:
            async with workers(db.url, 1, {}, settings.logs):
                yield tapeflow.Client(backend)


async def throughput(db: Database, settings: Settings, steps: int) -> Figures:
    """Start ``peers_throughput`` one-step workflows (``peers_throughput_n`` of ``steps``
    steps), then wait for each result in start order; timed from the first start."""
    count = settings.sizes.peers_throughput if steps == 1 else settings.sizes.peers_throughput_n
    room = asyncio.Semaphore(START_CONCURRENCY)
    async with _client(db, settings, in_process=True) as client:
        await (await client.start_workflow(sync_sequential, 1)).result(timeout=60)

        async def start() -> tapeflow.WorkflowHandle[int]:
            async with room:
                return await client.start_workflow(sync_sequential, steps)

        began = time.perf_counter()
        handles = await asyncio.gather(*(start() for _ in range(count)))
        started = time.perf_counter()
        wrong = 0
        for handle in handles:
            wrong += await handle.result(timeout=settings.timeout) != steps
        seconds = time.perf_counter() - began
    if wrong:
        raise AssertionError(f"{wrong} of {count} workflows returned a wrong result")
    return {
        "workflows": count,
        "steps": steps,
        "seconds": seconds,
        "start_seconds": started - began,
        "workflows_per_s": count / seconds,
        "activities_per_s": count * steps / seconds,
    }


async def latency(db: Database, settings: Settings, in_process: bool) -> Figures:
    """``peers_latency_samples`` sequential start-and-wait round trips of a one-step
    workflow, after ``peers_latency_warmup`` unmeasured ones."""
    sizes = settings.sizes
    samples: list[float] = []
    async with _client(db, settings, in_process) as client:
        for index in range(sizes.peers_latency_warmup + sizes.peers_latency_samples):
            began = time.perf_counter()
            handle = await client.start_workflow(sync_sequential, 1)
            await handle.result(timeout=settings.timeout)
            if index >= sizes.peers_latency_warmup:
                samples.append((time.perf_counter() - began) * 1000)
    return {
        "samples": len(samples),
        "median_ms": statistics.median(samples),
        "p95_ms": percentile(samples, 0.95),
        "max_ms": max(samples),
    }
