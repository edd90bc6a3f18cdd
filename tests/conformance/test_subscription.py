"""The subscription walk-through: cycles paid on their due dates, declined payments
carried over as overdue, progress read from outside with the debugger while it runs."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import tapeflow
from tests.conftest import WorkerFactory
from tests.scenarios.subscription import (
    SubscriptionInput,
    SubscriptionOutput,
    payment,
    subscription_workflow,
)

CYCLE = timedelta(milliseconds=300)
INPUT = SubscriptionInput(
    total_amount=103, cycles=5, cycle_duration=CYCLE, declined_cycles=[1, 2, 4]
)

# 103 in 5 cycles: 21, 21, 21, 20, 20. What is due each cycle (its amount plus overdue):
AMOUNT_TO_PAY = [21, 21, 42, 62, 20]
# The vars each cycle leaves behind (besides its completion time):
AFTER_CYCLE: list[dict[str, Any]] = [
    {"cycle_0_paid_amount": 21, "paid": 21, "overdue": 0},
    {"cycle_1_err": "PaymentDeclined: card declined for 21 in cycle 1", "paid": 21, "overdue": 21},
    {"cycle_2_err": "PaymentDeclined: card declined for 42 in cycle 2", "paid": 21, "overdue": 42},
    {"cycle_3_paid_amount": 62, "paid": 83, "overdue": 0},
    {"cycle_4_err": "PaymentDeclined: card declined for 20 in cycle 4", "paid": 83, "overdue": 20},
]


def expected_vars(completed: int, current: int) -> dict[str, Any]:
    """The vars once ``completed`` cycles are done and cycle ``current`` has begun."""
    expected: dict[str, Any] = {"paid": 0, "overdue": 0}
    for row in AFTER_CYCLE[:completed]:
        expected.update(row)
    expected.update(currentCycle=current, amountToPay=AMOUNT_TO_PAY[current])
    return expected


def split_times(found: dict[str, Any]) -> tuple[dict[str, Any], list[datetime]]:
    """The vars without the ``cycle_{i}_completed_at`` times, and those times in order."""
    times = [
        found[f"cycle_{i}_completed_at"]
        for i in range(INPUT.cycles)
        if f"cycle_{i}_completed_at" in found
    ]
    rest = {k: v for k, v in found.items() if not k.endswith("_completed_at")}
    return rest, times


def check_completion_times(times: list[datetime], started_at: datetime) -> None:
    for i, completed_at in enumerate(times):
        assert completed_at >= started_at + (i + 1) * CYCLE, f"cycle {i} ran before it was due"
    assert times == sorted(times)


async def test_subscription_pays_cycles_and_carries_declined_amounts_as_overdue(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    debugger = tapeflow.WorkflowDebugger(client.backend)
    handle = await client.start_workflow(subscription_workflow, INPUT, id="sub-1", version="1")
    assert await debugger.query_vars(subscription_workflow, "sub-1") == {}, "no worker ran it yet"

    async with worker(workflows=[subscription_workflow], activities=[payment]):
        started_at = (await handle.describe()).start_at

        # Mid-run: wait until cycle 2 has begun; cycles 0 and 1 are then settled.
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            mid_run = await debugger.query_vars(subscription_workflow, "sub-1")
            if mid_run.get("currentCycle", -1) >= 2:
                break
            assert asyncio.get_running_loop().time() < deadline, f"stuck at {mid_run}"
            await asyncio.sleep(0.02)
        mid_vars, mid_times = split_times(mid_run)
        current, completed = mid_vars["currentCycle"], len(mid_times)
        # Cycles before the current one are done (the last cycle may be done too, if the
        # poll came late).
        assert completed == current or completed == current + 1 == INPUT.cycles
        assert mid_vars == expected_vars(completed=completed, current=current)
        assert mid_vars["cycle_0_paid_amount"] == 21
        assert mid_vars["cycle_1_err"] == "PaymentDeclined: card declined for 21 in cycle 1"
        check_completion_times(mid_times, started_at)

        out = await handle.result(timeout=15)

    assert out == SubscriptionOutput(paid=83, overdue=20)
    assert out.paid + out.overdue == INPUT.total_amount

    final_vars, times = split_times(await debugger.query_vars(subscription_workflow, "sub-1"))
    assert final_vars == expected_vars(completed=5, current=4)
    assert final_vars == {
        "paid": 83,
        "overdue": 20,
        "currentCycle": 4,
        "amountToPay": 20,
        "cycle_0_paid_amount": 21,
        "cycle_1_err": "PaymentDeclined: card declined for 21 in cycle 1",
        "cycle_2_err": "PaymentDeclined: card declined for 42 in cycle 2",
        "cycle_3_paid_amount": 62,
        "cycle_4_err": "PaymentDeclined: card declined for 20 in cycle 4",
    }
    assert len(times) == 5
    check_completion_times(times, started_at)
    assert (await handle.describe()).status == tapeflow.WorkflowStatus.COMPLETED


async def test_subscription_run_by_separate_workflow_and_activity_workers(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    inp = SubscriptionInput(total_amount=10, cycles=3, cycle_duration=timedelta(milliseconds=50))
    # As in the seed: one worker for the workflow, another for the activity.
    async with worker(workflows=[subscription_workflow]), worker(activities=[payment]):
        handle = await client.start_workflow(subscription_workflow, inp, id="sub-all-paid")
        assert await handle.result(timeout=10) == SubscriptionOutput(paid=10, overdue=0)
    found = await tapeflow.WorkflowDebugger(client.backend).query_vars(
        subscription_workflow, "sub-all-paid"
    )
    assert [found[f"cycle_{i}_paid_amount"] for i in range(3)] == [4, 3, 3]
