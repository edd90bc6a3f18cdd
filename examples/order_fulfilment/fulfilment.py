"""Order fulfilment: a parent workflow, child workflows, and compensation on cancellation.

``fulfil`` takes the payment in one child workflow and ships the order in another. An
order cancelled while it ships has its shipping child cancelled with it (the child puts
its reserved stock back) and its payment refunded by the parent. Each order's outcome
goes to an ``audit_log`` workflow as an event; the log continues as new after every entry,
so its history never grows, and the entries travel with it from run to run.

One process: a worker and a client on a fresh SQLite database (or --url).

    python examples/order_fulfilment/fulfilment.py
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import tapeflow
from tapeflow import activity, workflow

AUDIT_LOG = "audit-log"
RELEASED: list[str] = []
"""The stock the shipping children put back (the activities run in this process)."""


@dataclass
class Order:
    id: str
    items: list[str]
    amount: int


# -- activities ----------------------------------------------------------------------------


@activity.defn
def charge_card(order: Order) -> str:
    return f"CH-{order.id}"


@activity.defn
def refund(charge: str) -> str:
    return f"refunded {charge}"


@activity.defn
def reserve_stock(item: str) -> str:
    return item


@activity.defn
def release_stock(item: str) -> None:
    RELEASED.append(item)


@activity.defn
def hand_to_courier(order: Order) -> str:
    return f"TRK-{order.id}"


# -- workflows -----------------------------------------------------------------------------


@workflow.defn
async def take_payment(order: Order) -> str:
    return await workflow.execute_activity(charge_card, order)


@workflow.defn
async def ship(order: Order, courier_wait_seconds: float) -> str:
    """Reserve every item, wait for the courier, hand the parcel over; cancelled before
    that, put the reserved items back."""
    reserved: list[str] = []
    try:
        for item in order.items:
            reserved.append(await workflow.execute_activity(reserve_stock, item))
            workflow.set_var("reserved", reserved)
        await workflow.sleep(timedelta(seconds=courier_wait_seconds))
        return await workflow.execute_activity(hand_to_courier, order)
    except asyncio.CancelledError:
        for item in reserved:
            await workflow.execute_activity(release_stock, item)
        raise


@workflow.defn
async def fulfil(order: Order, courier_wait_seconds: float) -> str:
    charge = await workflow.execute_child_workflow(take_payment, order, id=f"pay-{order.id}")
    shipping = await workflow.start_child_workflow(
        ship,
        order,
        courier_wait_seconds,
        id=f"ship-{order.id}",
        parent_close_policy="cancel",  # closing first, let it finish putting stock back
    )
    try:
        tracking = await shipping.result()  # cancelling this wait cancels the child
    except asyncio.CancelledError:
        await workflow.execute_activity(refund, charge)
        await workflow.send_event(AUDIT_LOG, "entry", f"{order.id} cancelled, {charge} refunded")
        raise
    await workflow.send_event(AUDIT_LOG, "entry", f"{order.id} shipped as {tracking}")
    return tracking


@workflow.defn
async def audit_log(entries: list[str], runs: int) -> str:
    """One entry per run: each continues as new, handing its entries to the next."""
    entry = await workflow.wait_event("entry", type=str)
    if entry == "close":
        return f"{len(entries)} entries in {runs} runs: {entries}"
    workflow.continue_as_new([*entries, entry], runs + 1)


# -- the demo ------------------------------------------------------------------------------


async def main(url: str) -> None:
    async with (
        tapeflow.connect(url) as backend,
        tapeflow.Worker(
            backend,
            workflows=[fulfil, take_payment, ship, audit_log],
            activities=[charge_card, refund, reserve_stock, release_stock, hand_to_courier],
        ),
    ):
        client = tapeflow.Client(backend)
        log = await client.start_workflow(audit_log, [], 1, id=AUDIT_LOG)

        quick = Order("order-1", ["book"], 12)
        tracking = await (await client.start_workflow(fulfil, quick, 0.0, id=quick.id)).result()
        print(f"{quick.id}: shipped, tracking {tracking}")

        slow = Order("order-2", ["lamp", "rug"], 80)
        handle = await client.start_workflow(fulfil, slow, 3600.0, id=slow.id)
        shipping = client.get_handle(f"ship-{slow.id}")
        await _until_reserved(backend, shipping.id, len(slow.items))
        await handle.cancel(reason="the customer changed their mind")
        try:
            await handle.result()
        except tapeflow.WorkflowCancelled as err:
            print(f"{slow.id}: {err.type}: {err.message}")
        try:
            await shipping.result()
        except tapeflow.WorkflowCancelled:
            described = await shipping.describe()
            print(f"{shipping.id}: {described.status}, child of {described.parent_id}")
        print(f"stock put back: {sorted(RELEASED)}")

        await log.send_event("entry", "close")
        print(f"{AUDIT_LOG}: {await log.result()}")


async def _until_reserved(backend: tapeflow.Backend, workflow_id: str, items: int) -> None:
    """Wait until the shipping workflow has reserved ``items`` items: its variables, read
    by replaying its history."""
    debugger = tapeflow.WorkflowDebugger(backend)
    for _ in range(400):
        try:
            found = await debugger.query_vars(ship, workflow_id)
        except tapeflow.WorkflowNotFound:  # not started yet
            found = tapeflow.debugger.WorkflowVars({}, 0, None)
        if len(found.get("reserved", [])) == items:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{workflow_id} did not reserve its {items} items")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="database URL (default: a fresh temporary SQLite file)")
    args = parser.parse_args()
    if args.url:
        asyncio.run(main(args.url))
    else:
        with tempfile.TemporaryDirectory(prefix="tapeflow-orders-") as directory:
            asyncio.run(main(f"sqlite:///{Path(directory) / 'orders.db'}"))
