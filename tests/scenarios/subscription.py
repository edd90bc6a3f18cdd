"""The subscription_with_debug walk-through, with a deterministic payment stub.

``total_amount`` is split over ``cycles`` evenly, the remainder spread one unit each over
the first cycles. Cycle ``i`` (from 0) is due at ``started_at + (i + 1) * cycle_duration``;
then the amount due plus what is overdue is charged. A declined payment (a final failure)
makes that whole amount overdue; a successful one clears it. Progress is kept in vars for
the debugger: ``currentCycle`` and ``amountToPay`` (set when a cycle begins), ``paid``,
``overdue``, and per cycle ``cycle_{i}_paid_amount`` or ``cycle_{i}_err`` and
``cycle_{i}_completed_at``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import tapeflow
from tapeflow import activity, workflow


@dataclass(frozen=True)
class SubscriptionInput:
    total_amount: int
    cycles: int
    cycle_duration: timedelta
    declined_cycles: list[int] = field(default_factory=list)
    """The payment stub declines the charges of these cycles (the seed fails at random)."""


@dataclass(frozen=True)
class SubscriptionOutput:
    paid: int
    overdue: int


@dataclass(frozen=True)
class PaymentInput:
    cycle: int
    amount: int
    declined: bool


PAYMENT_RETRY = tapeflow.RetryPolicy(
    initial_interval=timedelta(milliseconds=50), maximum_attempts=3
)


@activity.defn(name="PaymentActivity")
def payment(inp: PaymentInput) -> None:
    if inp.declined:
        raise tapeflow.NonRetryableError(
            f"card declined for {inp.amount} in cycle {inp.cycle}", type="PaymentDeclined"
        )


def cycle_amounts(total_amount: int, cycles: int) -> list[int]:
    """``total_amount`` in ``cycles`` parts, the remainder one unit each on the first parts."""
    base, remainder = divmod(total_amount, cycles)
    return [base + (1 if i < remainder else 0) for i in range(cycles)]


@workflow.defn(name="SubscriptionWorkflow")
async def subscription_workflow(inp: SubscriptionInput) -> SubscriptionOutput:
    started_at = workflow.info().started_at
    paid = overdue = 0
    workflow.set_var("paid", paid)
    workflow.set_var("overdue", overdue)
    for i, amount in enumerate(cycle_amounts(inp.total_amount, inp.cycles)):
        amount_to_pay = amount + overdue
        workflow.set_var("currentCycle", i)
        workflow.set_var("amountToPay", amount_to_pay)
        await workflow.sleep_until(started_at + (i + 1) * inp.cycle_duration)
        try:
            await workflow.execute_activity(
                payment,
                PaymentInput(cycle=i, amount=amount_to_pay, declined=i in inp.declined_cycles),
                retry=PAYMENT_RETRY,
            )
        except tapeflow.ActivityError as err:
            overdue = amount_to_pay
            workflow.set_var(f"cycle_{i}_err", f"{err.type}: {err.message}")
        else:
            paid += amount_to_pay
            overdue = 0
            workflow.set_var(f"cycle_{i}_paid_amount", amount_to_pay)
        workflow.set_var(f"cycle_{i}_completed_at", workflow.now())
        workflow.set_var("paid", paid)
        workflow.set_var("overdue", overdue)
    return SubscriptionOutput(paid=paid, overdue=overdue)
