"""The chaos workload: ten activities per workflow, a durable timer and an external event,
then "late" events sent while the workflow completes; and, one workflow in POISON_EVERY, a
poisoned one, whose code raises SystemExit for a while and whose activity ends its process
with ``sys.exit``: the fleet must stay up. A share of them is cancelled mid-flight (and then
runs one cleanup activity) and a smaller share terminated (``cancelled``, ``terminated``).

Every activity writes its attempt to the side-effect ledger before it returns. The result of
each workflow is known in advance (``expected``), so a lost, repeated or reordered step shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from tapeflow import ActivityError, RetryPolicy, activity, workflow
from tests.chaos import ledger

ACTIVITIES = 10
TIMER_BEFORE = 3
"""The durable timer runs just before this activity."""
EVENT_BEFORE = 6
"""The workflow waits for its external event just before this activity."""
EVENT_NAME = "go"
LATE_EVENT_NAME = "late"
"""Events the workflow never waits for, sent around the time it completes: each one that
``send_event`` accepted must be in its history all the same."""
LATE_EVENTS = 2
POISON_EVERY = 50
"""One workflow in this many is ``chaos_poisoned``."""
POISON_ATTEMPTS = 2
POISON_SECONDS = timedelta(seconds=2.5)
POISONED_PREFIX = "chaos-poison-"
POISON_BASE = 1_000_000
WORK_SECONDS = 0.02
"""What an activity spends after its side effect: a kill may land in between."""
CANCEL_EVERY = 10
"""One workflow in this many is cancelled mid-flight."""
TERMINATE_EVERY = 60
TERMINATED = (7, 13)
"""Of each TERMINATE_EVERY workflows, these are terminated: 13 right after its cancel (so
that the terminate may land during the cleanup), 7 alone."""


@dataclass(frozen=True)
class Go:
    """The external event. ``send_id`` tells one send from another (a resend is visible)."""

    send_id: str
    value: int


def poisoned(index: int) -> bool:
    return index % POISON_EVERY == POISON_EVERY // 2


def cancelled(index: int) -> bool:
    """Whether the client cancels it mid-flight (never a poisoned one, which is 5 modulo 10)."""
    return index % CANCEL_EVERY == 3


def terminated(index: int) -> bool:
    """Whether the client terminates it (never a poisoned one either)."""
    return index % TERMINATE_EVERY in TERMINATED


def workflow_id(index: int) -> str:
    return f"{POISONED_PREFIX}{index}" if poisoned(index) else f"chaos-{index}"


def timer_ms(index: int) -> int:
    """200 ms to 600 ms."""
    return 200 + (index % 5) * 100


def event_value(index: int) -> int:
    return index * 7 + 3


def step_value(index: int, number: int) -> int:
    return index * 100 + number


def expected(index: int) -> int:
    if poisoned(index):
        return POISON_BASE + event_value(index)
    return sum(step_value(index, n) for n in range(ACTIVITIES)) + event_value(index)


def _record() -> None:
    """This attempt's side effect, in the ledger."""
    info = activity.info()
    ledger.active().record(info.workflow_id, info.seq, info.attempt)


@activity.defn
def chaos_step(index: int, number: int) -> int:
    _record()
    time.sleep(WORK_SECONDS)
    return step_value(index, number)


@activity.defn
def chaos_cleanup(index: int) -> int:
    """What a cancelled workflow runs before it lets the cancel out: a side effect like the
    others, so the ledger shows whether it ran."""
    _record()
    time.sleep(WORK_SECONDS)
    return index


@workflow.defn
async def chaos_flow(index: int, timer: int) -> int:
    total = 0
    try:
        for number in range(ACTIVITIES):
            if number == TIMER_BEFORE:
                await workflow.sleep(timedelta(milliseconds=timer))
            if number == EVENT_BEFORE:
                go: Go = await workflow.wait_event(EVENT_NAME, type=Go)
                total += go.value
            total += await workflow.execute_activity(chaos_step, index, number)
    except asyncio.CancelledError:
        await workflow.execute_activity(chaos_cleanup, index)
        raise
    return total


@activity.defn
def chaos_exit() -> None:
    """A poisoned activity: it ends the process it runs in, or would, were it not caught."""
    _record()
    sys.exit(3)


@workflow.defn
async def chaos_poisoned(index: int, timer: int) -> int:
    """Poisoned twice over. Its code raises SystemExit in every workflow task of its first
    POISON_SECONDS (deterministic all the same: no task that ran then was committed), so its
    task fails and is retried with backoff until then. Then its activity fails every attempt
    by ``sys.exit``, and the workflow sees it fail for good and waits for its event like the
    others."""
    if workflow.now() < workflow.info().started_at + POISON_SECONDS:
        raise SystemExit("poisoned workflow code")
    with contextlib.suppress(ActivityError):
        await workflow.execute_activity(
            chaos_exit,
            retry=RetryPolicy(
                initial_interval=timedelta(milliseconds=timer), maximum_attempts=POISON_ATTEMPTS
            ),
        )
    go: Go = await workflow.wait_event(EVENT_NAME, type=Go)
    return POISON_BASE + go.value


def workflow_for(index: int) -> Callable[[int, int], Awaitable[int]]:
    return chaos_poisoned if poisoned(index) else chaos_flow
