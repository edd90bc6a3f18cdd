"""The chaos workload: ten activities per workflow, a durable timer and an external event.

Every activity writes its attempt to the side-effect ledger before it returns. The result of
each workflow is known in advance (``expected``), so a lost, repeated or reordered step shows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

from tapeflow import activity, workflow
from tests.chaos import ledger

ACTIVITIES = 10
TIMER_BEFORE = 3
"""The durable timer runs just before this activity."""
EVENT_BEFORE = 6
"""The workflow waits for its external event just before this activity."""
EVENT_NAME = "go"
WORK_SECONDS = 0.02
"""What an activity spends after its side effect: a kill may land in between."""


@dataclass(frozen=True)
class Go:
    """The external event. ``send_id`` tells one send from another (a resend is visible)."""

    send_id: str
    value: int


def workflow_id(index: int) -> str:
    return f"chaos-{index}"


def timer_ms(index: int) -> int:
    """200 ms to 600 ms."""
    return 200 + (index % 5) * 100


def event_value(index: int) -> int:
    return index * 7 + 3


def step_value(index: int, number: int) -> int:
    return index * 100 + number


def expected(index: int) -> int:
    return sum(step_value(index, n) for n in range(ACTIVITIES)) + event_value(index)


@activity.defn
def chaos_step(index: int, number: int) -> int:
    info = activity.info()
    ledger.active().record(info.workflow_id, info.seq, info.attempt)
    time.sleep(WORK_SECONDS)
    return step_value(index, number)


@workflow.defn
async def chaos_flow(index: int, timer: int) -> int:
    total = 0
    for number in range(ACTIVITIES):
        if number == TIMER_BEFORE:
            await workflow.sleep(timedelta(milliseconds=timer))
        if number == EVENT_BEFORE:
            go: Go = await workflow.wait_event(EVENT_NAME, type=Go)
            total += go.value
        total += await workflow.execute_activity(chaos_step, index, number)
    return total
