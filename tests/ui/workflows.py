"""Workflows the UI tests look at; the UI is started with this module to replay them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from tapeflow import RetryPolicy, activity, workflow

QUICK_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=50), maximum_attempts=3)


@activity.defn
def reserve(item: str) -> str:
    return f"reserved {item}"


@activity.defn
def charge(amount: int) -> str:
    if activity.info().attempt < 2:
        raise RuntimeError("card declined, try again")
    return f"charged {amount}"


@activity.defn
def ship(item: str) -> str:
    raise ValueError(f"no courier for {item!r}")


@workflow.defn
async def counter(label: str) -> int:
    """Counts the ``tick`` events it gets, in a variable, until a ``stop``."""
    count = 0
    workflow.set_var("count", count)
    workflow.set_var("label", label)
    while await workflow.wait_event("tick") != "stop":
        count += 1
        workflow.set_var("count", count)
    return count


@workflow.defn
async def receipt(order: str) -> str:
    return await workflow.execute_activity(reserve, order)


@workflow.defn
async def order(item: str) -> str:
    """Something of everything for the timeline: activities (one retried, one failing), a
    timer, a child, an event."""
    workflow.set_var("stage", "reserving")
    await workflow.execute_activity(reserve, item)
    workflow.set_var("stage", "charging")
    await workflow.execute_activity(charge, 42, retry=QUICK_RETRY)
    await workflow.sleep(0.3)
    workflow.set_var("stage", "receipt")
    await workflow.execute_child_workflow(
        receipt, item, id=f"{workflow.info().workflow_id}-receipt"
    )
    workflow.set_var("stage", "waiting for approval")
    approved = await workflow.wait_event("approve")
    workflow.set_var("stage", "shipping")
    workflow.set_var("approved_by", approved)
    return await workflow.execute_activity(ship, item, retry=RetryPolicy(maximum_attempts=1))


WORKFLOWS: list[Callable[..., Any]] = [counter, order, receipt]
ACTIVITIES: list[Callable[..., Any]] = [reserve, charge, ship]
