"""A worker process of the chaos workload.

``python -m tests.chaos.worker URL [--cache N] [--lease S] [--poll S] [--activities N]
[--ready FILE] [--name NAME]``

It is named ``chaos-<pid>`` (the lease owner the driver looks for after killing it), or NAME
(a worker in a pid namespace of its own, where pids repeat from host to host), writes
every activity attempt to the ledger, and runs until SIGTERM. Failpoints come from
$TAPEFLOW_FAILPOINTS, read by ``tapeflow.connect`` when $TAPEFLOW_ENABLE_FAILPOINTS=1.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from datetime import timedelta
from pathlib import Path

import tapeflow
from tests.chaos import ledger
from tests.chaos.workload import WORKFLOWS, chaos_cleanup, chaos_exit, chaos_step

ACTIVITY_RETRY = tapeflow.RetryPolicy(
    initial_interval=timedelta(milliseconds=100),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=1),
)
"""An attempt fails only when the ledger's database is away: retry soon."""


def owner_name(pid: int) -> str:
    return f"chaos-{pid}"


async def serve(args: argparse.Namespace) -> None:
    book = ledger.Ledger(args.url)
    ledger.use(book)
    async with tapeflow.connect(args.url) as backend:
        worker = tapeflow.Worker(
            backend,
            workflows=list(WORKFLOWS.values()),
            activities=[chaos_step, chaos_cleanup, chaos_exit],
            name=args.name or owner_name(os.getpid()),
            workflow_cache_size=args.cache,
            max_concurrent_activities=args.activities,
            lease_duration=timedelta(seconds=args.lease),
            poll_interval=timedelta(seconds=args.poll),
            retry_policy=ACTIVITY_RETRY,
            shutdown_grace=timedelta(seconds=2),
        )
        running = asyncio.create_task(worker.run())
        await asyncio.sleep(0)  # run() has installed its SIGTERM handler and started
        if args.ready:
            Path(args.ready).touch()  # noqa: ASYNC240 (once, a few microseconds)
        await running
    book.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.worker")
    parser.add_argument("url")
    parser.add_argument("--cache", type=int, default=1000)
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--poll", type=float, default=0.15)
    parser.add_argument("--activities", type=int, default=8)
    parser.add_argument("--ready", help="a file to create once SIGTERM stops the worker cleanly")
    parser.add_argument("--name", help="the worker's name (default: chaos-<pid>)")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.WARNING,
        format=f"%(asctime)s {os.getpid()} %(name)s %(levelname)s %(message)s",
    )
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
