"""The client side of the walk-through, shared by ``client.py`` and ``demo.py``: schedule the
subscription, print its variables (read with the debugger) as they change, print the result.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from datetime import timedelta
from typing import Any

from workflows import (
    SubscriptionInput,
    SubscriptionOutput,
    payment_cycles,
    subscription_workflow,
)

import tapeflow


def add_subscription_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="database URL (default: $TAPEFLOW_DATABASE_URL)")
    parser.add_argument("--id", help="workflow id (default: a new one)")
    parser.add_argument("--total", type=int, default=103, help="amount to pay (default: 103)")
    parser.add_argument("--cycles", type=int, default=5, help="payment cycles (default: 5)")
    parser.add_argument(
        "--duration", type=float, default=2.0, help="seconds per cycle (default: 2)"
    )
    parser.add_argument(
        "--poll", type=float, help="seconds between two looks at the vars (default: 0.5)"
    )


async def schedule(backend: tapeflow.Backend, args: argparse.Namespace) -> str:
    """Start a subscription as the arguments describe; returns its workflow id."""
    if args.cycles < 1 or args.total < 0 or args.duration < 0:
        raise SystemExit("--cycles must be at least 1, --total and --duration not negative")
    inp = SubscriptionInput(
        total_amount=args.total,
        cycles=args.cycles,
        cycle_duration=timedelta(seconds=args.duration),
    )
    handle = await tapeflow.Client(backend).start_workflow(
        subscription_workflow,
        inp,
        id=args.id or f"subscription-{uuid.uuid4().hex[:8]}",
        version="1",
    )
    amounts = ", ".join(str(a) for a in payment_cycles(inp.total_amount, inp.cycles))
    say(
        f"scheduled {handle.id}: {inp.total_amount} in {inp.cycles} cycles of "
        f"{args.duration:g}s ({amounts})"
    )
    return handle.id


async def watch(backend: tapeflow.Backend, workflow_id: str, poll: float) -> SubscriptionOutput:
    """Print the workflow's variables whenever they change, until it ends; then its result."""
    say("its variables, read with the debugger (a local replay of the stored history):")
    debugger = tapeflow.WorkflowDebugger(backend)
    handle = tapeflow.Client(backend).get_handle(workflow_id, result_type=SubscriptionOutput)
    result = asyncio.ensure_future(handle.result())
    began = time.monotonic()
    shown: dict[str, Any] = {}
    hinted = False
    while True:
        await asyncio.wait({result}, timeout=poll)
        current = await debugger.query_vars(subscription_workflow, workflow_id)
        if not current and not hinted and time.monotonic() - began > 3:
            record = await handle.describe()
            if record.status is tapeflow.WorkflowStatus.PENDING:
                say("still pending: is a worker running on the same database?")
                hinted = True
        changed = {name: value for name, value in current.items() if shown.get(name) != value}
        if changed:
            show_changes(time.monotonic() - began, changed)
            shown = current
        if result.done():
            break
    output: SubscriptionOutput = result.result()
    show_result(output)
    return output


async def schedule_and_watch(
    backend: tapeflow.Backend, args: argparse.Namespace
) -> SubscriptionOutput:
    workflow_id = await schedule(backend, args)
    return await watch(backend, workflow_id, args.poll or min(0.5, max(args.duration / 4, 0.05)))


def show_changes(elapsed: float, changed: dict[str, Any]) -> None:
    """One line for the running totals, one for what the cycle just ended recorded."""
    totals = {name: value for name, value in changed.items() if not name.startswith("cycle_")}
    cycle = {name: value for name, value in changed.items() if name.startswith("cycle_")}
    prefix = f"[{elapsed:5.1f}s] "
    for group in (totals, cycle):
        if group:
            say(prefix + "  ".join(f"{name}={json.dumps(value)}" for name, value in group.items()))
            prefix = " " * len(prefix)


def show_result(output: SubscriptionOutput) -> None:
    say(f"result: paid={output.paid} overdue={output.overdue}")


def say(line: str) -> None:
    print(line, flush=True)
