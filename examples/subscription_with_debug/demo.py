"""The subscription walk-through in one process: a worker, then a client watching the workflow.

It runs on the database that --url or $TAPEFLOW_DATABASE_URL names; without either, on a
fresh SQLite database in a temporary directory, made for this run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path

import workflows
from watch import add_subscription_arguments, say, schedule_and_watch
from workflows import payment_activity, subscription_workflow

import tapeflow


async def main(args: argparse.Namespace, url: str) -> None:
    async with (
        tapeflow.connect(url) as backend,
        tapeflow.Worker(
            backend, workflows=[subscription_workflow], activities=[payment_activity]
        ) as worker,
    ):
        say(f"tapeflow demo: a subscription paid in cycles, on {backend!r}")  # no password
        rate = workflows.provider.failure_rate
        say(f"worker {worker.name} started; each payment fails with probability {rate:.0%}")
        await schedule_and_watch(backend, args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_subscription_arguments(parser)
    parser.add_argument("--failure-rate", type=float, help="share of payments declined (0.7)")
    parser.add_argument("--seed", type=int, help="seed of the payment provider's randomness")
    args = parser.parse_args()
    workflows.provider = workflows.PaymentProvider.from_environment(args.failure_rate, args.seed)
    url = args.url or os.environ.get("TAPEFLOW_DATABASE_URL")
    try:
        if url:
            asyncio.run(main(args, url))
        else:
            with tempfile.TemporaryDirectory(prefix="tapeflow-demo-") as directory:
                asyncio.run(main(args, f"sqlite:///{Path(directory) / 'demo.db'}"))
    except (tapeflow.BackendUnavailable, tapeflow.InvalidArgument) as exc:
        raise SystemExit(f"tapeflow demo: {exc}") from None  # what is wrong, not a traceback
    except KeyboardInterrupt:
        raise SystemExit(130) from None
