"""The measurements. Each runs once on a fresh database and returns its figures; the CLI
repeats them and keeps the median."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tapeflow
from benchmarks import counting
from benchmarks.cluster import delta, total_stats, workers
from benchmarks.cpu import CpuWatch, postgres_pids
from benchmarks.databases import Database, own_transactions, server_transactions, wait_closed
from benchmarks.workloads import one_step, sequential, sleeper
from tapeflow._definition import definition_of
from tapeflow._engine.replay import replay_new
from tapeflow.history import WorkflowTaskStarted

Figures = dict[str, Any]


@dataclass(frozen=True)
class Sizes:
    throughput: int = 2000
    """Workflows per throughput run of 1-activity workflows."""
    throughput_n: int = 2000
    """Workflows per throughput run of ``steps``-activity workflows."""
    steps: int = 10
    """Activities per workflow in the second throughput shape."""
    latency_samples: int = 200
    latency_warmup: int = 20
    timers: int = 20
    timer_ms: int = 1000
    history_short: int = 100
    history_long: int = 10_000
    history_long_shared: int = 1_000
    """The long workflow when ``workers`` processes share it (cache misses replay it)."""
    history_runs: int = 0
    """Runs of the history measurement (0: as many as of every other)."""
    idle_seconds: float = 20.0
    idle_settle: float = 11.0
    """PostgreSQL publishes an idle session's counts up to 10 s late: the window starts after
    the worker's start-up counts are in."""
    idle_publish: float = 11.0
    """PostgreSQL: how long after the window pg_stat_database is read (0: it is not)."""
    peers_throughput: int = 2000
    """The peers' harness: one-step workflows per throughput run (``benchmarks.peers``)."""
    peers_throughput_n: int = 1000
    """The peers' harness: ten-step workflows per throughput run."""
    peers_latency_samples: int = 50
    peers_latency_warmup: int = 5

    def scaled(self, factor: float) -> Sizes:
        def scale(n: int, least: int) -> int:
            return max(least, round(n * factor))

        return Sizes(
            throughput=scale(self.throughput, 4),
            throughput_n=scale(self.throughput_n, 4),
            steps=self.steps,
            latency_samples=scale(self.latency_samples, 5),
            latency_warmup=scale(self.latency_warmup, 2),
            timers=scale(self.timers, 2),
            timer_ms=self.timer_ms,
            history_short=scale(self.history_short, 5),
            history_long=scale(self.history_long, 20),
            history_long_shared=scale(self.history_long_shared, 20),
            history_runs=self.history_runs,
            idle_seconds=max(2.0, self.idle_seconds * factor),
            idle_settle=self.idle_settle if factor >= 1 else 0.5,
            idle_publish=self.idle_publish,
            peers_throughput=scale(self.peers_throughput, 4),
            peers_throughput_n=scale(self.peers_throughput_n, 4),
            peers_latency_samples=scale(self.peers_latency_samples, 5),
            peers_latency_warmup=scale(self.peers_latency_warmup, 2),
        )


QUICK = Sizes(
    throughput=10,
    throughput_n=10,
    latency_samples=10,
    latency_warmup=2,
    timers=3,
    history_short=5,
    history_long=20,
    history_long_shared=20,
    idle_seconds=1.0,
    idle_settle=0.2,
    idle_publish=0.0,
    peers_throughput=10,
    peers_throughput_n=4,
    peers_latency_samples=5,
    peers_latency_warmup=2,
)


@dataclass
class Settings:
    sizes: Sizes
    workers: int
    worker_options: dict[str, Any]
    logs: Path
    start_concurrency: int = 10
    """Starts in flight at once from the benchmark process (PostgreSQL's pool has 10)."""
    timeout: float = 600.0
    """Longest wait for one measurement's results."""
    calibration: dict[str, int] = field(default_factory=dict)
    """PostgreSQL: transactions of a run without workflows (start-up, shut-down), by URL kind."""


async def _open(db: Database) -> tapeflow.Backend:
    backend = await tapeflow.connect(db.url)
    counting.count_sqlite(backend)
    return backend


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


# -- throughput and commits -----------------------------------------------------------------


async def throughput(db: Database, settings: Settings, steps: int) -> Figures:
    """``size`` workflows of ``steps`` activities (1: ``one_step``), started concurrently while
    the workers run, timed from the first start to the last result."""
    count = settings.sizes.throughput if steps == 1 else settings.sizes.throughput_n
    figures = await _run_workflows(db, settings, steps, count)
    elapsed = figures["seconds"]
    figures["workflows_per_s"] = count / elapsed
    figures["activities_per_s"] = count * steps / elapsed
    return figures


async def calibrate(db: Database, settings: Settings) -> int:
    """PostgreSQL transactions of a measurement that runs no workflow: worker start-up and
    shut-down, the client's connection and the readings themselves."""
    figures = await _run_workflows(db, settings, 1, 0)
    return int(figures["server_transactions"])


async def _warm_up(client: tapeflow.Client) -> None:
    """One workflow before the clock starts: connections opened, code paths warm."""
    handle = await client.start_workflow(one_step, -1, id=f"warm-up-{uuid.uuid4().hex}")
    await handle.result(timeout=60)


async def _run_workflows(db: Database, settings: Settings, steps: int, count: int) -> Figures:
    server_before = server_transactions(db) if db.kind == "postgres" else 0
    own_before = own_transactions()
    async with workers(db.url, settings.workers, settings.worker_options, settings.logs) as procs:
        backend = await _open(db)
        try:
            client = tapeflow.Client(backend)
            await _warm_up(client)
            roles = {
                "workers": [p.pid for p in procs],
                "client": [os.getpid()],
                "postgres": postgres_pids(db),
            }
            workers_before, client_before = await total_stats(procs), counting.snapshot()
            cpu = CpuWatch(roles)
            began, started, ended = await drive(client, steps, count, settings)
            used = cpu.stop({"postgres": postgres_pids(db)})
            workers_after, client_after = await total_stats(procs), counting.snapshot()
        finally:
            await backend.close()
    figures: Figures = {
        "workflows": count,
        "steps": steps,
        "seconds": ended - began,
        "start_seconds": started - began,
        "workers_counted": delta(workers_after, workers_before),
        "client_counted": delta(client_after, client_before),
        "cpu_seconds": used,
        "others_cpu_share": used["others"] / max(1e-9, (ended - began) * (os.cpu_count() or 1)),
    }
    if db.kind == "postgres":
        wait_closed(db)
        server_after = server_transactions(db)
        # What the readings cost the server themselves is not the measurement's.
        figures["server_transactions"] = (
            server_after - server_before - (own_transactions() - own_before)
        )
    if count:
        counted = figures["workers_counted"]["transactions"]
        counted += figures["client_counted"]["transactions"]
        figures["counted_transactions_per_workflow"] = counted / count
        figures["counted_queries_per_workflow"] = (
            figures["workers_counted"]["queries"] + figures["client_counted"]["queries"]
        ) / count
        figures["worker_transactions_per_workflow"] = (
            figures["workers_counted"]["transactions"] / count
        )
        calibration = settings.calibration.get(db.kind)
        if db.kind == "postgres" and calibration is not None:
            figures["server_transactions_per_workflow"] = (
                figures["server_transactions"] - calibration
            ) / count
    return figures


async def drive(
    client: tapeflow.Client, steps: int, count: int, settings: Settings
) -> tuple[float, float, float]:
    """Start ``count`` workflows of ``steps`` activities (``start_concurrency`` starts in
    flight at once, while the workers already run them), then wait for each result in start
    order. Returns the perf_counter at the first start, after the last start, at the last
    result."""
    room = asyncio.Semaphore(settings.start_concurrency)

    async def start(index: int) -> tapeflow.WorkflowHandle[int]:
        async with room:
            if steps == 1:
                return await client.start_workflow(one_step, index)
            return await client.start_workflow(sequential, steps)

    began = time.perf_counter()
    handles = await asyncio.gather(*(start(i) for i in range(count)))
    started = time.perf_counter()
    deadline = began + settings.timeout
    for handle in handles:  # in start order: by then most have ended
        await handle.result(timeout=max(0.001, deadline - time.perf_counter()))
    return began, started, time.perf_counter()


# -- latency and timers ---------------------------------------------------------------------

TIMER_SPACING = 0.05
"""Seconds between two timer workflows' starts: 20 of them are due over one second."""


async def latency(db: Database, settings: Settings) -> Figures:
    """Start a one-activity workflow and wait for its result, one at a time."""
    sizes = settings.sizes
    async with workers(db.url, settings.workers, settings.worker_options, settings.logs):
        backend = await _open(db)
        try:
            client = tapeflow.Client(backend)
            samples: list[float] = []
            for index in range(sizes.latency_warmup + sizes.latency_samples):
                began = time.perf_counter()
                handle = await client.start_workflow(one_step, index)
                await handle.result(timeout=settings.timeout)
                if index >= sizes.latency_warmup:
                    samples.append((time.perf_counter() - began) * 1000)
        finally:
            await backend.close()
    return {
        "samples": len(samples),
        "median_ms": statistics.median(samples),
        "p95_ms": percentile(samples, 0.95),
        "max_ms": max(samples),
    }


async def timers(db: Database, settings: Settings) -> Figures:
    """Overlapping workflows, each sleeping ``timer_ms`` on a durable timer, started
    ``TIMER_SPACING`` apart: how late each resumes after its due time (workflow time: the
    backend's clock at the claim that delivers the timer)."""
    sizes = settings.sizes
    async with workers(db.url, settings.workers, settings.worker_options, settings.logs):
        backend = await _open(db)
        try:
            client = tapeflow.Client(backend)
            handles = []
            for _ in range(sizes.timers):
                handles.append(await client.start_workflow(sleeper, sizes.timer_ms))
                await asyncio.sleep(TIMER_SPACING)
            late = [await h.result(timeout=settings.timeout) for h in handles]
        finally:
            await backend.close()
    return {
        "samples": len(late),
        "median_ms": statistics.median(late),
        "p95_ms": percentile(late, 0.95),
        "max_ms": max(late),
    }


# -- history length -------------------------------------------------------------------------


async def history(db: Database, settings: Settings, processes: int, long: int) -> Figures:
    """One workflow of ``history_short`` sequential activities, then one of ``long``, run by
    ``processes`` workers: time per activity of each, and the memory of a live instance
    replayed from the long one's history.

    With one worker process every workflow task finds its instance in that worker's cache;
    with more, a task claimed by another worker than the last one replays the history."""
    sizes = settings.sizes
    figures: Figures = {"workers": processes}
    async with workers(db.url, processes, settings.worker_options, settings.logs) as procs:
        backend = await _open(db)
        try:
            client = tapeflow.Client(backend)
            for label, steps in (("short", sizes.history_short), ("long", long)):
                before = await total_stats(procs)
                began = time.perf_counter()
                handle = await client.start_workflow(sequential, steps)
                done, finished = steps, True
                try:
                    await handle.result(timeout=settings.timeout)
                except TimeoutError:  # quadratic somewhere: report what got done
                    finished = False
                    length = (await handle.describe()).history_length
                    done = max(1, (length - 3) // 3)
                elapsed = time.perf_counter() - began
                after = await total_stats(procs)
                counted = delta(after, before)
                lookups = counted["cache_hits"] + counted["cache_misses"]
                figures[label] = {
                    "activities": steps,
                    "finished": finished,
                    "activities_done": done,
                    "seconds": elapsed,
                    "ms_per_activity": elapsed * 1000 / done,
                    "workers_counted": counted,
                    "cache_miss_share": counted["cache_misses"] / max(1, lookups),
                }
            figures["ratio"] = (
                figures["long"]["ms_per_activity"] / figures["short"]["ms_per_activity"]
            )
            figures["instance"] = await _instance_memory(backend, handle.id)
        finally:
            await backend.close()
    return figures


async def _instance_memory(backend: tapeflow.Backend, workflow_id: str) -> Figures:
    """Replay the history of ``workflow_id`` up to its last workflow task (so the instance is
    live, waiting on its last activity, as the worker's cache holds it) into a fresh instance:
    the time, and the memory it keeps (tracemalloc, the history itself not counted)."""
    events = await backend.load_history(workflow_id)
    last_task = max(i for i, e in enumerate(events) if isinstance(e, WorkflowTaskStarted))
    events = events[:last_task]
    definition = definition_of(sequential, "workflow")

    began = time.perf_counter()
    replay_new(definition, workflow_id, events).close()
    replay_ms = (time.perf_counter() - began) * 1000

    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        instance = replay_new(definition, workflow_id, events)
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    instance.close()
    return {
        "events": len(events),
        "replay_ms": replay_ms,
        "replay_us_per_event": replay_ms * 1000 / len(events),
        "kept_bytes": kept - baseline,
        "peak_bytes": peak - baseline,
    }


# -- idle cost ------------------------------------------------------------------------------


async def idle(db: Database, settings: Settings) -> Figures:
    """One worker with everything registered and nothing to do: the database calls it makes
    per second, counted in the worker process over ``idle_seconds`` and, on PostgreSQL, by
    pg_stat_database over that window plus ``PUBLISH_DELAY`` (an idle session publishes its
    counts up to 10 s late; stopping the worker would add its shut-down)."""
    sizes = settings.sizes
    by_server = db.kind == "postgres" and sizes.idle_publish > 0
    async with workers(db.url, 1, settings.worker_options, settings.logs) as procs:
        await asyncio.sleep(sizes.idle_settle)
        server_before = server_transactions(db) if by_server else 0
        own_before, began = own_transactions(), time.monotonic()
        before = await procs[0].stats()
        await asyncio.sleep(sizes.idle_seconds)
        after = await procs[0].stats()
        if by_server:
            await asyncio.sleep(sizes.idle_publish)
            server = server_transactions(db) - server_before - (own_transactions() - own_before)
            server_seconds = time.monotonic() - began
    seconds = after["time"] - before["time"]
    figures: Figures = {
        "seconds": seconds,
        "queries_per_s": (after["queries"] - before["queries"]) / seconds,
        "transactions_per_s": (after["transactions"] - before["transactions"]) / seconds,
    }
    if by_server:
        figures["server_transactions_per_s"] = server / server_seconds
    return figures


Scenario = Callable[[Database, Settings], Awaitable[Figures]]
