"""Hostile input: workflows and activities that misbehave on purpose, and bystanders.

``tests/conformance/test_hostile_input.py`` runs them on every backend. A bystander
(``steady``) runs alongside each hostile case: it must finish, whatever the hostile one does.
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import tapeflow
from tapeflow import activity, workflow

MIB = 1024 * 1024
OVER_LIMIT = "x" * (3 * MIB)
"""A string over the default 2 MiB payload limit."""
UNDER_LIMIT = "y" * MIB
"""A string well under it, which must still go through."""
HUGE_MESSAGE = "x" * 1_000_000


# -- the bystander ---------------------------------------------------------------------------


@activity.defn
def double(n: int) -> int:
    return 2 * n


@workflow.defn
async def steady(n: int) -> int:
    """A workflow that must complete next to every hostile one."""
    return await workflow.execute_activity(double, n)


# -- names and activities nobody registered ----------------------------------------------------


@workflow.defn(name="no_such_workflow")
async def late_registered(n: int) -> str:
    """Registered only once the test is satisfied that nobody runs the workflow."""
    return f"finally ran with {n}"


@workflow.defn
async def calls_missing_activity(n: int) -> Any:
    return await workflow.execute_activity("missing_activity", n)


@activity.defn(name="missing_activity")
def late_activity(n: int) -> str:
    return f"missing_activity ran with {n}"


# -- values that do not match their annotations or cannot be stored ----------------------------


class Opaque:
    """Not JSON: no converter knows it."""


@workflow.defn
async def returns_wrong_type() -> int:
    return "not an int"  # type: ignore[return-value]


@activity.defn
def returns_opaque() -> Any:
    """Its annotation allows anything JSON can hold; its value is not that."""
    return Opaque()


@activity.defn
def returns_unsupported_type() -> Opaque:
    """Annotated with a type no converter knows."""
    return Opaque()


@dataclass(frozen=True)
class Caught:
    type: str
    message: str
    attempt: int


@workflow.defn
async def catches_opaque_result(activity_name: str) -> Caught:
    try:
        await workflow.execute_activity(activity_name)
    except tapeflow.ActivityError as err:
        return Caught(err.type, err.message, err.attempt)
    return Caught("", "no error", 0)


@activity.defn
def takes_int(n: int) -> int:
    return n


@workflow.defn
async def passes_opaque_argument() -> int:
    """Encoding the activity's arguments fails inside the workflow; uncaught, it fails it."""
    return await workflow.execute_activity(takes_int, Opaque())


@workflow.defn
async def passes_wrong_argument_by_name() -> Caught:
    """By name, nothing checks the arguments in the workflow: the activity refuses them."""
    try:
        await workflow.execute_activity("takes_int", "not a number")
    except tapeflow.ActivityError as err:
        return Caught(err.type, err.message, err.attempt)
    return Caught("", "no error", 0)


@dataclass(frozen=True)
class Point:
    x: int
    y: int


@workflow.defn
async def wants_a_point(point: Point) -> int:
    return point.x + point.y


@workflow.defn
async def halves(x: float) -> float:
    return x / 2


@workflow.defn
async def waits_for_typed_events() -> list[str]:
    """A payload that does not match ``type`` raises in the workflow, which goes on."""
    seen: list[str] = []
    for _ in range(2):
        try:
            point = await workflow.wait_event("point", type=Point)
        except tapeflow.PayloadError as err:
            seen.append(f"refused: {type(err).__name__}")
        else:
            seen.append(f"point {point.x},{point.y}")
    return seen


# -- waiting for events ------------------------------------------------------------------------


@workflow.defn
async def waits_for_go(tag: str) -> str:
    payload = await workflow.wait_event("go")
    return f"{tag}:{payload}"


@workflow.defn
async def first_event_length() -> int:
    payload = await workflow.wait_event("data", type=str)
    return len(payload)


# -- size limits -------------------------------------------------------------------------------


@activity.defn
def returns_over_limit() -> str:
    return OVER_LIMIT


@workflow.defn
async def catches_big_result() -> Caught:
    try:
        value = await workflow.execute_activity(returns_over_limit)
    except tapeflow.ActivityError as err:
        return Caught(err.type, err.message[:500], err.attempt)
    return Caught("", f"got {len(value)} characters", 0)


@activity.defn
def echo_text(text: str) -> int:
    return len(text)


@workflow.defn
async def big_argument_then_big_result() -> str:
    """Scheduling an activity with an oversized argument raises at once; the workflow goes on
    and returns an oversized result, which fails it."""
    try:
        workflow.execute_activity(echo_text, OVER_LIMIT)
    except tapeflow.PayloadError:
        workflow.set_var("argument", "refused")
    return OVER_LIMIT


# -- huge error messages ------------------------------------------------------------------------


@activity.defn
def fails_with_huge_message() -> None:
    raise tapeflow.NonRetryableError(HUGE_MESSAGE)


@workflow.defn
async def catches_huge_activity_error() -> Caught:
    try:
        await workflow.execute_activity(fails_with_huge_message)
    except tapeflow.ActivityError as err:
        return Caught(err.type, err.message, err.attempt)
    return Caught("", "no error", 0)


@workflow.defn
async def raises_huge_message() -> None:
    raise ValueError(HUGE_MESSAGE)


# -- timers of odd durations ---------------------------------------------------------------------


@workflow.defn
async def odd_timers() -> list[str]:
    """Zero and negative asyncio sleeps return at once; bad workflow.sleep durations raise."""
    report: list[str] = []
    await workflow.sleep(timedelta(0))
    await workflow.sleep(0)
    report.append("zero: returned")
    await asyncio.sleep(-1)
    await asyncio.sleep(0)
    report.append("asyncio.sleep(-1): returned")
    await workflow.sleep_until(datetime(2000, 1, 1, tzinfo=UTC))
    report.append("sleep_until(past): returned")
    bad: list[timedelta | float] = [-1, timedelta(seconds=-1), math.nan]
    for duration in bad:
        try:
            await workflow.sleep(duration)
        except tapeflow.InvalidArgument:
            report.append(f"sleep({duration!r}): InvalidArgument")
    try:
        await asyncio.sleep(math.nan)
    except ValueError:
        report.append("asyncio.sleep(nan): ValueError")
    return report


@workflow.defn
async def sleeps_nan() -> None:
    await workflow.sleep(math.nan)


@workflow.defn
async def sleeps_negative() -> None:
    await workflow.sleep(-1)


# -- determinism ---------------------------------------------------------------------------------


@activity.defn
def step_a(item: str) -> str:
    return f"a:{item}"


@activity.defn
def step_b(item: str) -> str:
    return f"b:{item}"


@activity.defn
def step_c(item: str) -> str:
    return f"c:{item}"


@activity.defn
def step_x(item: str) -> str:
    return f"x:{item}"


STEPS = [step_a, step_b, step_c, step_x]


@workflow.defn(name="pipeline")
async def pipeline(item: str) -> list[str]:
    """Two steps, an event, a third step. Its history is 8 events long while it waits."""
    done = [await workflow.execute_activity(step_a, item)]
    done.append(await workflow.execute_activity(step_b, item))
    await workflow.wait_event("go")
    done.append(await workflow.execute_activity(step_c, item))
    return done


@workflow.defn(name="pipeline")
async def pipeline_reordered(item: str) -> list[str]:
    done = [await workflow.execute_activity(step_b, item)]
    done.append(await workflow.execute_activity(step_a, item))
    await workflow.wait_event("go")
    done.append(await workflow.execute_activity(step_c, item))
    return done


@workflow.defn(name="pipeline")
async def pipeline_removed(item: str) -> list[str]:
    done = [await workflow.execute_activity(step_a, item)]
    await workflow.wait_event("go")
    done.append(await workflow.execute_activity(step_c, item))
    return done


@workflow.defn(name="pipeline")
async def pipeline_inserted(item: str) -> list[str]:
    done = [await workflow.execute_activity(step_a, item)]
    done.append(await workflow.execute_activity(step_x, item))
    done.append(await workflow.execute_activity(step_b, item))
    await workflow.wait_event("go")
    done.append(await workflow.execute_activity(step_c, item))
    return done


@workflow.defn(name="pipeline")
async def pipeline_random(item: str) -> list[str]:
    """Reads ``random`` (not ``workflow.random()``) into an activity's arguments: a replay
    decides other arguments, which the recorded decision catches."""
    done = [await workflow.execute_activity(step_a, f"{item}/{random.random()}")]
    done.append(await workflow.execute_activity(step_b, item))
    await workflow.wait_event("go")
    done.append(await workflow.execute_activity(step_c, item))
    return done


@dataclass(frozen=True)
class Draws:
    now: datetime
    number: float
    uuid: str


@activity.defn
def record_draws(draws: Draws) -> None:
    """Its arguments are recorded in history: a replay that drew otherwise would not match."""


@workflow.defn
async def draws_twice() -> list[Draws]:
    """The documented alternatives to the clock and ``random``, drawn in two activations."""
    first = Draws(workflow.now(), workflow.random().random(), str(workflow.uuid4()))
    await workflow.execute_activity(record_draws, first)
    await workflow.wait_event("go")
    second = Draws(workflow.now(), workflow.random().random(), str(workflow.uuid4()))
    await workflow.execute_activity(record_draws, second)
    workflow.set_var("first", first.number)
    return [first, second]


# -- blocking the loop ----------------------------------------------------------------------------

BLOCK_SECONDS = 30.0
RELEASE = threading.Event()
"""Set by the test once it has seen what it needs: blocked workflow code then returns soon,
so no thread goes on sleeping or spinning into the next test."""


@workflow.defn
async def waits_in_the_loop() -> str:
    """Blocks on a lock-like wait: time.sleep would be refused at once by the sandbox, but
    waits on threading primitives are not caught, only by the task timeout."""
    end = time.monotonic() + BLOCK_SECONDS
    while time.monotonic() < end and not RELEASE.is_set():
        RELEASE.wait(0.05)  # the hostile part
    return "woke up"


@workflow.defn
async def spins_in_the_loop() -> str:
    end = time.monotonic() + BLOCK_SECONDS
    while time.monotonic() < end and not RELEASE.is_set():
        pass
    return "stopped spinning"


# -- names with metacharacters ---------------------------------------------------------------------


def named_activity(name: str) -> Callable[[str], str]:
    @activity.defn(name=name)
    def answer(value: str) -> str:
        return f"{activity.info().activity_name}|{value}"

    return answer


def named_workflow(name: str) -> Callable[[list[str]], Awaitable[list[str]]]:
    @workflow.defn(name=name)
    async def run(names: list[str]) -> list[str]:
        """Waits for one event per name, then calls the activity of that name with it."""
        payloads = [await workflow.wait_event(n, type=str) for n in names]
        results = await asyncio.gather(
            *(workflow.execute_activity(n, p) for n, p in zip(names, payloads, strict=True))
        )
        return [workflow.info().name, *results]

    return run


CONTROL_NAMES = {
    "nul": "nul\x00name",
    "newline": "new\nline",
    "escape": "esc\x1b[31m",
    "delete": "del\x7f",
    "c1-control": "nel\x85",
    "lone-surrogate": "lone\ud800",
}
"""Names no id, name or version may take."""
BAD_ACTIVITY_NAMES = ["", "x" * 256, *CONTROL_NAMES.values()]


@workflow.defn
async def calls_activity_named(index: int) -> str:
    """The bad name is made inside the workflow: no client check stands in the way."""
    try:
        workflow.execute_activity(BAD_ACTIVITY_NAMES[index], 1)
    except tapeflow.InvalidArgument as err:
        return f"refused: {err}"
    return "scheduled"


# -- pickle bytes --------------------------------------------------------------------------------


def leave_marker(path: str) -> None:
    Path(path).write_text("unpickled!")


class Booby:
    """Unpickling this creates a file: proof that something unpickled it."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[[str], None], tuple[str]]:
        return leave_marker, (self.marker,)
