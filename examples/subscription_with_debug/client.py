"""Client program: schedule a subscription, print its variables while it runs, then its result.

Run the worker program first, against the same database:

    export TAPEFLOW_DATABASE_URL=sqlite:///subscription.db
    python examples/subscription_with_debug/worker.py &
    python examples/subscription_with_debug/client.py --cycles 10 --duration 10

``--mode`` also does one step alone: ``schedule``,
``debug`` (print the variables now) or ``await`` (wait for the result), given ``--id``.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from watch import add_subscription_arguments, schedule, schedule_and_watch, show_result
from workflows import SubscriptionOutput, subscription_workflow

import tapeflow


async def main(args: argparse.Namespace) -> None:
    async with tapeflow.connect(args.url) as backend:
        if args.mode == "run":
            await schedule_and_watch(backend, args)
        elif args.mode == "schedule":
            await schedule(backend, args)
        elif args.mode == "debug":
            debugger = tapeflow.WorkflowDebugger(backend)
            variables = await debugger.query_vars(subscription_workflow, args.id)
            print(json.dumps(variables, indent=2))
        else:
            handle = tapeflow.Client(backend).get_handle(args.id, result_type=SubscriptionOutput)
            show_result(await handle.result())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mode",
        choices=["run", "schedule", "debug", "await"],
        default="run",
        help="run (default): schedule, watch the vars, print the result",
    )
    add_subscription_arguments(parser)
    arguments = parser.parse_args()
    if arguments.mode in ("debug", "await") and not arguments.id:
        parser.error(f"--mode {arguments.mode} needs --id")
    try:
        asyncio.run(main(arguments))
    except KeyboardInterrupt:
        raise SystemExit(130) from None
