"""Small deterministic workflows recorded end to end as golden histories.

Their outcome never depends on timing: activities are pure functions of their input and
attempt number, events are kept until waited for, and timers are short. Changing any of
these functions (names, arguments, order of commands) makes its golden file stop replaying:
that is the point. Add a new workflow rather than changing one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import tapeflow
from tapeflow import activity, workflow

FAST_RETRY = tapeflow.RetryPolicy(
    initial_interval=timedelta(milliseconds=20),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(milliseconds=100),
    maximum_attempts=4,
)


# -- activities ----------------------------------------------------------------------------------


@dataclass
class Item:
    sku: str
    quantity: int


@dataclass
class Order:
    id: str
    items: list[Item]


@dataclass
class Invoice:
    order_id: str
    lines: list[int]
    total: int
    reference: str


@activity.defn
def price_of(item: Item) -> int:
    return sum(ord(c) for c in item.sku) % 50 * item.quantity


@activity.defn
async def validate(order: Order) -> bool:
    return bool(order.items)


@activity.defn
def charge(order_id: str, total: int) -> str:
    return f"charged {order_id}:{total}"


@activity.defn
def flaky(succeed_on: int) -> int:
    """Fails (retryably) until attempt ``succeed_on``; returns the attempt it succeeded on."""
    attempt = activity.info().attempt
    if attempt < succeed_on:
        raise RuntimeError(f"attempt {attempt} failed")
    return attempt


@activity.defn
def refuse(reason: str) -> None:
    raise tapeflow.NonRetryableError(reason, type="Refused")


@activity.defn
def square(value: int) -> int:
    return value * value


@activity.defn
def move_money(account: str, amount: int) -> str:
    if account.startswith("frozen"):
        raise tapeflow.NonRetryableError(f"{account} is frozen", type="AccountFrozen")
    return f"{account}{amount:+d}"


ACTIVITIES: list[Callable[..., Any]] = [
    price_of,
    validate,
    charge,
    flaky,
    refuse,
    square,
    move_money,
]


# -- workflows -----------------------------------------------------------------------------------


@workflow.defn
async def order_pipeline(order: Order) -> Invoice:
    """Activities in sequence, a fan-out with gather, a timer, a typed dataclass result."""
    workflow.set_var("stage", "validating")
    if not await workflow.execute_activity(validate, order):
        raise ValueError("empty order")
    workflow.set_var("stage", "pricing")
    lines = await asyncio.gather(*(workflow.execute_activity(price_of, i) for i in order.items))
    workflow.set_var("lines", list(lines))
    await workflow.sleep(timedelta(milliseconds=150))
    workflow.set_var("stage", "charging")
    reference = await workflow.execute_activity(charge, order.id, sum(lines))
    workflow.set_var("stage", "done")
    return Invoice(order.id, list(lines), sum(lines), reference)


@workflow.defn
async def timers_and_randomness(naps: int) -> dict[str, Any]:
    """workflow.sleep, asyncio.sleep, sleep_until (past and future), a timeout that fires,
    a race whose loser's timer is cancelled, random numbers and a uuid."""
    started = workflow.info().started_at
    await workflow.sleep_until(started - timedelta(seconds=1))  # past: no timer
    for _ in range(naps):
        await asyncio.sleep(0.05)
    await workflow.sleep_until(workflow.now() + timedelta(milliseconds=50))
    try:
        async with asyncio.timeout(0.1):
            await workflow.wait_event("never-sent")
    except TimeoutError:
        timed_out = True
    else:
        timed_out = False
    slow = asyncio.ensure_future(workflow.sleep(3600))
    fast = asyncio.ensure_future(workflow.sleep(0.05))
    await asyncio.wait([slow, fast], return_when=asyncio.FIRST_COMPLETED)
    slow.cancel()
    dice = [workflow.random().randint(1, 6) for _ in range(5)]
    workflow.set_var("dice", dice)
    return {"timed_out": timed_out, "dice": dice, "id": str(workflow.uuid4())}


@workflow.defn
async def approvals(needed: int) -> dict[str, Any]:
    """on_event sees every note; wait_event takes approvals oldest first under a timeout."""
    notes: list[str] = []
    workflow.on_event("note", notes.append)
    approvers: list[str] = []
    while len(approvers) < needed:
        async with asyncio.timeout(30):
            approvers.append(await workflow.wait_event("approve"))
        workflow.set_var("approvers", list(approvers))
    squared = await workflow.execute_activity(square, len(approvers))
    await workflow.wait_event("close")
    return {"approvers": approvers, "notes": notes, "squared": squared}


@workflow.defn
async def retries(succeed_on: int) -> dict[str, Any]:
    """An activity retried until it succeeds, then one that fails for good."""
    attempt = await workflow.execute_activity(flaky, succeed_on, retry=FAST_RETRY)
    try:
        await workflow.execute_activity(flaky, 99, retry=FAST_RETRY)
    except tapeflow.ActivityError as err:
        exhausted = [err.type, err.message, err.attempt]
    try:
        await workflow.execute_activity(refuse, "no thanks")
    except tapeflow.ActivityError as err:
        refused = [err.type, err.message, err.attempt]
    return {"attempt": attempt, "exhausted": exhausted, "refused": refused}


@dataclass
class Transfer:
    amount: int
    accounts: list[str]


@workflow.defn
async def saga(transfer: Transfer) -> list[str]:
    """Each step withdraws; when one fails, the done steps are compensated in reverse order."""
    done: list[str] = []
    log: list[str] = []
    try:
        for account in transfer.accounts:
            log.append(await workflow.execute_activity(move_money, account, -transfer.amount))
            done.append(account)
    except tapeflow.ActivityError as err:
        log.append(f"failed: {err.message}")
        for account in reversed(done):
            log.append(await workflow.execute_activity(move_money, account, transfer.amount))
    workflow.set_var("log", log)
    return log


@workflow.defn
async def fan_out_sum(count: int) -> int:
    results = await asyncio.gather(*(workflow.execute_activity(square, i) for i in range(count)))
    return sum(results)


@workflow.defn
async def gives_up(reason: str) -> None:
    """Fails: the activity's final error escapes the workflow."""
    await workflow.sleep(0.05)
    await workflow.execute_activity(refuse, reason)


@workflow.defn
async def packs(item: str) -> str:
    """A child of ``composed``."""
    await workflow.sleep(0.02)
    return f"{item} packed"


@workflow.defn
async def waits_for_label() -> str:
    """A child of ``composed`` that its parent sends an event."""
    label: str = await workflow.wait_event("label", type=str)
    return label


@workflow.defn
async def composed(items: list[str]) -> dict[str, Any]:
    """Children with derived ids and a given one, an event for a child, one for nobody."""
    packed = await asyncio.gather(*(workflow.execute_child_workflow(packs, i) for i in items))
    labeller = await workflow.start_child_workflow(
        waits_for_label, id=f"{workflow.info().workflow_id}-label"
    )
    await labeller.send_event("label", "fragile")
    label = await labeller.result()
    try:
        await workflow.send_event("nobody-has-this-id", "label", None)
        missing = False
    except tapeflow.WorkflowNotFound:
        missing = True
    return {"packed": list(packed), "label": label, "missing": missing}


# -- one workflow across a patch: before it, with it, with it deprecated ------------------------


async def _priced(order: Order) -> list[int]:
    lines = await asyncio.gather(*(workflow.execute_activity(price_of, i) for i in order.items))
    await workflow.wait_event("confirm")
    return list(lines)


@workflow.defn(name="patched_checkout")
async def checkout_before_patch(order: Order) -> Invoice:
    """The checkout as first deployed: it charges the whole total."""
    lines = await _priced(order)
    reference = await workflow.execute_activity(charge, order.id, sum(lines))
    return Invoice(order.id, lines, sum(lines), reference)


@workflow.defn(name="patched_checkout")
async def patched_checkout(order: Order) -> Invoice:
    """The checkout patched to take 10% off, where it charges: a history from before the
    patch has no marker there and replays down the old branch."""
    lines = await _priced(order)
    total = sum(lines)
    if workflow.patched("discount"):
        total -= total // 10
    reference = await workflow.execute_activity(charge, order.id, total)
    return Invoice(order.id, lines, total, reference)


@workflow.defn(name="patched_checkout")
async def checkout_patch_deprecated(order: Order) -> Invoice:
    """The checkout once no history from before the patch is left: the old branch is gone."""
    lines = await _priced(order)
    workflow.deprecate_patch("discount")
    total = sum(lines) - sum(lines) // 10
    reference = await workflow.execute_activity(charge, order.id, total)
    return Invoice(order.id, lines, total, reference)


CHILDREN: list[Callable[..., Any]] = [packs, waits_for_label]
"""Workflows that the recorded ones start as children."""

WORKFLOWS: list[Callable[..., Any]] = [
    order_pipeline,
    timers_and_randomness,
    approvals,
    retries,
    saga,
    fan_out_sum,
    gives_up,
    composed,
]
