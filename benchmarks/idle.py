"""What an idle worker asks of its database: statements per second, default options.

    .venv/bin/python -m benchmarks.idle sqlite:///idle.db --seconds 30
    .venv/bin/python -m benchmarks.idle postgresql://postgres@127.0.0.1:5432/test

The worker runs a workflow and an activity with nothing to do (its leases held: none);
every statement its process sends is counted (see ``counting``), from the end of start-up.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import tapeflow
from benchmarks import counting
from tapeflow import activity, workflow


@activity.defn
def noop() -> None:
    """Registered so that the activity poller runs too."""


@workflow.defn
async def idle() -> None:
    """Registered so that the workflow poller runs too."""


async def measure(url: str, seconds: float) -> dict[str, float]:
    if url.startswith("postgres"):
        counting.count_psycopg()
    async with tapeflow.connect(url) as backend:
        counting.count_sqlite(backend)
        async with tapeflow.Worker(backend, workflows=[idle], activities=[noop]):
            await asyncio.sleep(1.0)  # start-up: the first claims and looks
            before, started = counting.snapshot(), time.monotonic()
            await asyncio.sleep(seconds)
            after, elapsed = counting.snapshot(), time.monotonic() - started
    return {key: (after[key] - before[key]) / elapsed for key in after}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="database URL")
    parser.add_argument("--seconds", type=float, default=30.0, help="idle time measured")
    args = parser.parse_args()
    rates = asyncio.run(measure(args.url, args.seconds))
    print(
        f"{args.url.split(':', 1)[0]}: {rates['queries']:.2f} statements/s, "
        f"{rates['transactions']:.2f} transactions/s over {args.seconds:g} s idle"
    )


if __name__ == "__main__":
    main()
