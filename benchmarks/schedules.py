"""``python -m benchmarks.schedules``: how late schedules fire.

On a fresh database (a SQLite file, or a PostgreSQL schema of its own, dropped after), with
``--workers`` worker processes that run the workflow ``ping`` (each a ``tapeflow.Worker``,
so each fires schedules), two phases of ``--seconds`` each:

1. one schedule due every second;
2. ``--schedules`` schedules due every second, all at the same instants (the workers race
   for each, and fire them one after another).

For each due time it reads two delays on the database's clock: *fired*, from the due time
(the workflow id names it) to the workflow's creation (``created_at``: the firing
transaction), and *ran*, from the due time to the workflow's first task
(``workflow.now()``, which ``ping`` returns). The first two due times of each phase are left
out (the workers' connections warm up). Prints the median, p95 and max of each, in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import statistics
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import tapeflow
from benchmarks.databases import DEFAULT_POSTGRES_URL, fresh
from tapeflow import workflow
from tapeflow.backends.presence import WorkerPresence

ROOT = Path(__file__).resolve().parent.parent
WARM_UP = 2
"""Due times left out at the start of each phase."""


@workflow.defn
async def ping() -> str:
    """When its first task ran, on the database's clock."""
    return workflow.now().isoformat()


async def serve(url: str) -> None:
    """A worker process: runs ``ping`` and fires its schedules until SIGTERM."""
    async with tapeflow.connect(url) as backend:
        worker = tapeflow.Worker(
            backend,
            workflows=[ping],
            max_concurrent_workflow_tasks=50,
            poll_interval=timedelta(milliseconds=50),
        )
        await worker.run()


async def _workers_up(backend: tapeflow.Backend, count: int) -> None:
    assert isinstance(backend, WorkerPresence)
    for _ in range(300):
        running = [
            w for w in await backend.list_workers(timedelta(minutes=1)) if w.state == "running"
        ]
        if len(running) >= count:
            await asyncio.sleep(0.5)  # their loops have read the (empty) schedules
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{count} worker processes did not start")


async def _phase(
    client: tapeflow.Client, name: str, schedules: int, seconds: float
) -> tuple[list[float], list[float]]:
    """Run ``schedules`` schedules due every second for ``seconds``; the fired and ran
    delays (ms) of their due times after the warm-up."""
    ids = [f"{name}-{n}" for n in range(schedules)]
    for schedule_id in ids:
        await client.create_schedule(schedule_id, ping, every=timedelta(seconds=1))
    await asyncio.sleep(seconds)
    for schedule_id in ids:
        await client.get_schedule(schedule_id).delete()
    fired: list[float] = []
    ran: list[float] = []
    for schedule_id in ids:
        page = await client.list_workflows(id_prefix=f"{schedule_id}@", limit=1000)
        started = sorted(page.workflows, key=lambda summary: summary.id)[WARM_UP:]
        for summary in started:
            due = datetime.fromisoformat(summary.id.partition("@")[2])
            first_task = datetime.fromisoformat(
                await client.get_handle(summary.id).result(timeout=30)
            )
            fired.append((summary.created_at - due).total_seconds() * 1000)
            ran.append((first_task - due).total_seconds() * 1000)
    return fired, ran


def _row(label: str, delays: list[float]) -> str:
    if not delays:
        return f"| {label} | 0 | | | |"
    ordered = sorted(delays)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return (
        f"| {label} | {len(ordered)} | {statistics.median(ordered):.1f} | {p95:.1f} | "
        f"{ordered[-1]:.1f} |"
    )


async def measure(url: str, workers: int, schedules: int, seconds: float) -> list[str]:
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "benchmarks.schedules", "--serve", url, cwd=ROOT
        )
        for _ in range(workers)
    ]
    try:
        async with tapeflow.connect(url) as backend:
            client = tapeflow.Client(backend)
            await _workers_up(backend, workers)
            lone = await _phase(client, "lone", 1, seconds)
            together = await _phase(client, "together", schedules, seconds)
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for process in processes:
            await process.wait()
    return [
        _row("1 schedule: fired after due", lone[0]),
        _row("1 schedule: first task ran after due", lone[1]),
        _row(f"{schedules} schedules due together: fired after due", together[0]),
        _row(f"{schedules} schedules due together: first task ran after due", together[1]),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.schedules", description=__doc__)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="postgres")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--schedules", type=int, default=20, help="schedules due together")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each phase")
    parser.add_argument("--serve", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(serve(args.serve))
        return 0
    kinds = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    for kind in kinds:
        with (
            tempfile.TemporaryDirectory() as scratch,
            fresh(kind, args.postgres_url, Path(scratch)) as db,
        ):
            rows = asyncio.run(measure(db.url, args.workers, args.schedules, args.seconds))
        print(f"\nSchedules on {kind}: {args.workers} worker processes, {args.seconds:g} s a phase")
        print("| Fire lateness (ms, database clock) | due times | median | p95 | max |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for row in rows:
            print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
