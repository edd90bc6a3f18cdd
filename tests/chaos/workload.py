"""The chaos workload: ten activities per workflow, a durable timer and an external event,
then "late" events sent while the workflow completes; and, one workflow in POISON_EVERY, a
poisoned one, whose code raises SystemExit for a while and whose activity ends its process
with ``sys.exit``: the fleet must stay up. A share of them is cancelled mid-flight (and then
runs one cleanup activity) and a smaller share terminated (``cancelled``, ``terminated``).

One in ten is a parent (``chaos_parent``): it runs two or three child workflows of three
activities each, the first with ``execute_child_workflow``, the others started, sent an event
each and awaited together, and sums their results. One in ten continues as new
(``chaos_relay``): RELAY_RUNS runs, each of one activity and one wait for an event, while
the driver sends RELAY_RUNS + 1 events across the run boundaries; its result lists the send
ids it took, in order. A few of each are terminated (a parent's open children with it).

Every activity writes its attempt to the side-effect ledger before it returns. The result of
each workflow is known in advance (``expected``), so a lost, repeated or reordered step shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

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
TERMINATED = (7, 13, 49)
"""Of each TERMINATE_EVERY workflows, these are terminated: 13 right after its cancel (so
that the terminate may land during the cleanup), 7 (a parent) and 49 (a relay) alone."""
COMPOSE_EVERY = 10
PARENT_AT = 7
"""A workflow whose index is this modulo COMPOSE_EVERY is a parent."""
RELAY_AT = 9
"""Likewise a relay (it continues as new)."""
CHILD_STEPS = 3
RELAY_RUNS = 5
RELAY_EVENTS = RELAY_RUNS + 1
"""One more than it takes: the last is unhandled, in the last run's history or refused."""

Kind = Literal["flow", "poisoned", "parent", "child", "relay"]


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


def parent(index: int) -> bool:
    return index % COMPOSE_EVERY == PARENT_AT


def relay(index: int) -> bool:
    return index % COMPOSE_EVERY == RELAY_AT


def kind(index: int) -> Kind:
    """What the workflow of this index runs (never both cancelled and composed)."""
    if poisoned(index):
        return "poisoned"
    return "parent" if parent(index) else "relay" if relay(index) else "flow"


def workflow_id(index: int) -> str:
    return f"{POISONED_PREFIX}{index}" if poisoned(index) else f"chaos-{index}"


def children(index: int) -> int:
    """How many children a parent runs: two or three."""
    return 2 + (index // COMPOSE_EVERY) % 2


def child_id(index: int, number: int) -> str:
    return f"chaos-{index}-child-{number}"


def child_waits(number: int) -> bool:
    """Whether the child waits for an event from its parent (those started, not executed)."""
    return number > 0


def child_event(index: int, number: int) -> Go:
    return Go(send_id=f"p{index}c{number}", value=event_value(index) + number)


def child_step(number: int, step: int) -> int:
    """The ``number`` a child's activity gets: distinct from a plain workflow's steps."""
    return 10 * (number + 1) + step


def relay_send_id(index: int, number: int) -> str:
    """The same for every try: a resend is only made once the try is known lost."""
    return f"r{index}n{number}"


def timer_ms(index: int) -> int:
    """200 ms to 600 ms."""
    return 200 + (index % 5) * 100


def event_value(index: int) -> int:
    return index * 7 + 3


def step_value(index: int, number: int) -> int:
    return index * 100 + number


def expected_child(index: int, number: int) -> int:
    steps = sum(step_value(index, child_step(number, s)) for s in range(CHILD_STEPS))
    return steps + (child_event(index, number).value if child_waits(number) else 0)


def expected(index: int) -> Any:
    """The result of the workflow of this index, if it completes."""
    if poisoned(index):
        return POISON_BASE + event_value(index)
    if parent(index):
        return sum(expected_child(index, n) for n in range(children(index)))
    if relay(index):
        return [relay_send_id(index, n) for n in range(RELAY_RUNS)]
    return sum(step_value(index, n) for n in range(ACTIVITIES)) + event_value(index)


@dataclass(frozen=True)
class Expected:
    """What the checks hold one workflow id to."""

    kind: Kind
    index: int
    """Its index in the workload (a child's, its parent's)."""
    result: Any
    parent: str | None = None
    """A child's parent's id."""
    number: int = 0
    """A child's number among its parent's."""


def expectations(indices: Iterable[int]) -> dict[str, Expected]:
    """Every workflow id these indices make, a parent's children too."""
    found: dict[str, Expected] = {}
    for index in indices:
        wid = workflow_id(index)
        found[wid] = Expected(kind(index), index, expected(index))
        if parent(index):
            for number in range(children(index)):
                child = Expected("child", index, expected_child(index, number), wid, number)
                found[child_id(index, number)] = child
    return found


def start_args(index: int) -> tuple[Any, ...]:
    if parent(index):
        return (index,)
    if relay(index):
        return (index, 0, [])
    return (index, timer_ms(index))


def _record() -> None:
    """This attempt's side effect, in the ledger."""
    info = activity.info()
    ledger.active().record(info.workflow_id, info.run_id, info.seq, info.attempt)


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


@workflow.defn
async def chaos_child(index: int, number: int, waits: bool) -> int:
    """A child: its steps, then (if started rather than executed) its parent's event."""
    total = 0
    for step in range(CHILD_STEPS):
        total += await workflow.execute_activity(chaos_step, index, child_step(number, step))
    if waits:
        go: Go = await workflow.wait_event(EVENT_NAME, type=Go)
        total += go.value
    return total


@workflow.defn
async def chaos_parent(index: int) -> int:
    """Its first child executed, the others started together, each sent its event, then
    awaited together: the sum of their results."""
    total = await workflow.execute_child_workflow(
        chaos_child, index, 0, child_waits(0), id=child_id(index, 0)
    )
    handles = [
        await workflow.start_child_workflow(
            chaos_child,
            index,
            number,
            child_waits(number),
            id=child_id(index, number),
            parent_close_policy="terminate",
        )
        for number in range(1, children(index))
    ]
    for number, handle in enumerate(handles, start=1):
        await handle.send_event(EVENT_NAME, child_event(index, number))
    results = await asyncio.gather(*(handle.result() for handle in handles))
    return total + sum(results)


@workflow.defn
async def chaos_relay(index: int, run: int, seen: list[str]) -> list[str]:
    """One run of RELAY_RUNS: an activity, an event taken, then the next run with the send
    ids taken so far. Events that come early wait in the inbox, or are carried over."""
    await workflow.execute_activity(chaos_step, index, run)
    go: Go = await workflow.wait_event(EVENT_NAME, type=Go)
    seen = [*seen, go.send_id]
    if run + 1 < RELAY_RUNS:
        workflow.continue_as_new(index, run + 1, seen)
    return seen


WORKFLOWS: dict[Kind, Callable[..., Awaitable[Any]]] = {
    "flow": chaos_flow,
    "poisoned": chaos_poisoned,
    "parent": chaos_parent,
    "child": chaos_child,
    "relay": chaos_relay,
}


def workflow_for(index: int) -> Callable[..., Awaitable[Any]]:
    return WORKFLOWS[kind(index)]
