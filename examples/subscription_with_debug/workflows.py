"""The subscription walk-through: a subscription paid in cycles, one payment per cycle.

Shared by the worker program (which runs the code), the client program and the demo (whose
debugger replays it to read the variables).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from datetime import timedelta

import tapeflow
from tapeflow import activity, workflow

FAILURE_RATE_VARIABLE = "SUBSCRIPTION_PAYMENT_FAILURE_RATE"
"""Share of payments the simulated provider declines (default 0.7, as in the walk-through)."""
SEED_VARIABLE = "SUBSCRIPTION_PAYMENT_SEED"
"""Seed of the simulated provider's randomness, for runs that repeat exactly."""


@dataclass
class PaymentInput:
    value: int


@dataclass
class SubscriptionInput:
    total_amount: int
    cycles: int
    cycle_duration: timedelta


@dataclass
class SubscriptionOutput:
    paid: int
    overdue: int


class PaymentProvider:
    """Stands in for a payment service that declines a share of the charges at random."""

    def __init__(self, failure_rate: float = 0.7, seed: int | None = None) -> None:
        if not 0 <= failure_rate <= 1:
            raise ValueError(f"failure_rate must be between 0 and 1, got {failure_rate}")
        self.failure_rate = failure_rate
        self._random = random.Random(seed)

    @classmethod
    def from_environment(
        cls, failure_rate: float | None = None, seed: int | None = None
    ) -> PaymentProvider:
        """A provider set by the arguments given, else by the environment variables above."""
        if failure_rate is None:
            failure_rate = float(os.environ.get(FAILURE_RATE_VARIABLE, "0.7"))
        if seed is None and os.environ.get(SEED_VARIABLE):
            seed = int(os.environ[SEED_VARIABLE])
        return cls(failure_rate, seed)

    def charge(self, amount: int) -> bool:
        return self._random.random() >= self.failure_rate


provider = PaymentProvider.from_environment()
"""The provider the payment activity uses; replace it to change its behaviour."""


@activity.defn(name="PaymentActivity")
def payment_activity(inp: PaymentInput) -> None:
    """Charge ``inp.value``. A decline is a final failure, handed to the workflow.

    Activities may be non-deterministic: their outcome is recorded once and replayed.
    """
    if not provider.charge(inp.value):
        raise tapeflow.NonRetryableError("payment failed")


def payment_cycles(total_amount: int, cycles: int) -> list[int]:
    """``total_amount`` split evenly, the remainder spread one unit each over the first cycles."""
    share, remainder = divmod(total_amount, cycles)
    return [share + (1 if cycle < remainder else 0) for cycle in range(cycles)]


@workflow.defn(name="SubscriptionWorkflow")
async def subscription_workflow(inp: SubscriptionInput) -> SubscriptionOutput:
    started_at = workflow.info().started_at
    amounts = payment_cycles(inp.total_amount, inp.cycles)
    paid = 0
    overdue = 0
    current_cycle = 0
    while True:
        workflow.set_var("paid", paid)
        workflow.set_var("overdue", overdue)
        workflow.set_var("currentCycle", current_cycle)
        if current_cycle >= inp.cycles:
            break
        amount = amounts[current_cycle]
        amount_to_pay = amount + overdue
        workflow.set_var("amountToPay", amount_to_pay)
        await workflow.sleep_until(started_at + (current_cycle + 1) * inp.cycle_duration)
        try:
            await workflow.execute_activity(payment_activity, PaymentInput(value=amount_to_pay))
        except tapeflow.ActivityError as err:
            overdue += amount
            workflow.set_var(f"cycle_{current_cycle}_err", err.message)
            workflow.logger.info("cycle %d: payment of %d declined", current_cycle, amount_to_pay)
        else:
            paid += amount_to_pay
            overdue = 0
            workflow.set_var(f"cycle_{current_cycle}_paid_amount", amount_to_pay)
            workflow.logger.info("cycle %d: paid %d", current_cycle, amount_to_pay)
        workflow.set_var("amountToPay", 0)
        workflow.set_var(f"cycle_{current_cycle}_completed_at", workflow.now().isoformat())
        current_cycle += 1
    return SubscriptionOutput(paid=paid, overdue=overdue)
