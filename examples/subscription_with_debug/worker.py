"""Worker program: runs the subscription workflow and the payment activity until SIGINT/SIGTERM.

    export TAPEFLOW_DATABASE_URL=sqlite:///subscription.db
    python examples/subscription_with_debug/worker.py

Then schedule subscriptions with ``client.py`` from another shell, on the same database.
Start several to share the work: if one dies, another takes over its tasks once their lease
runs out (``--lease-seconds``, 30 by default).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from datetime import timedelta

import workflows
from workflows import payment_activity, subscription_workflow

import tapeflow


async def main(args: argparse.Namespace) -> None:
    async with tapeflow.connect(args.url) as backend:
        worker = tapeflow.Worker(
            backend,
            workflows=[subscription_workflow],
            activities=[payment_activity],
            name=args.name,
            lease_duration=timedelta(seconds=args.lease_seconds),
        )
        await worker.run()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="database URL (default: $TAPEFLOW_DATABASE_URL)")
    parser.add_argument("--name", help="shown as the lease owner (default: host:pid)")
    parser.add_argument(
        "--lease-seconds",
        type=float,
        default=30.0,
        help="how soon another worker takes over this one's tasks if it dies (default: 30)",
    )
    parser.add_argument("--failure-rate", type=float, help="share of payments declined")
    parser.add_argument("--seed", type=int, help="seed of the payment provider's randomness")
    args = parser.parse_args()
    if not args.lease_seconds > 0:
        parser.error("--lease-seconds must be positive")
    workflows.provider = workflows.PaymentProvider.from_environment(args.failure_rate, args.seed)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(main(args))
