"""Values that cannot be stored, or would read back as something else, met at every point
where tapeflow writes one: arguments, events, workflow and activity results.

``tests/conformance/test_unstorable_values.py`` runs them on every backend, next to the
bystanders of ``tests.scenarios.hostile``.
"""

from __future__ import annotations

import asyncio
import itertools
from decimal import Decimal
from typing import Any

import tapeflow
from tapeflow import activity, workflow
from tests.scenarios.hostile import Caught

TOO_LONG = 10**4300
"""4,301 digits: one more than JSON readers take."""


# -- results that cannot be stored --------------------------------------------------------------


@workflow.defn
async def returns_too_long() -> int:
    return TOO_LONG


@activity.defn
def too_long_result() -> int:
    return TOO_LONG


@activity.defn
def counts_forever() -> Any:
    return itertools.count()


@activity.defn
async def generates() -> Any:
    """Async: its result is encoded on the worker's loop, which must not try to exhaust it."""
    await asyncio.sleep(0)
    return (n for n in itertools.count())


@activity.defn
def counts_as_list() -> list[int]:
    """Annotated as a list, returning an endless iterator: refused all the same."""
    return itertools.count()  # type: ignore[return-value]


@activity.defn
def returns_a_set() -> Any:
    return {"a", "b"}


@workflow.defn
async def catches_then_waits(activity_name: str) -> list[Any]:
    """Runs the named activity, records how it failed, then takes a normal event: a value
    that could not be stored must not stop the workflow from going on."""
    try:
        outcome: Any = await workflow.execute_activity(activity_name)
    except tapeflow.ActivityError as err:
        outcome = Caught(err.type, err.message, err.attempt)
    return [outcome, await workflow.wait_event("go")]


# -- failures whose text UTF-8 cannot hold -----------------------------------------------------

SURROGATE_MESSAGE = "bad \ud800 text"


@workflow.defn
async def raises_a_lone_surrogate() -> None:
    raise ValueError(SURROGATE_MESSAGE)


@activity.defn
def fails_with_a_lone_surrogate() -> None:
    raise tapeflow.NonRetryableError(SURROGATE_MESSAGE)


# -- untyped values JSON would change, and the same values annotated -----------------------------


@workflow.defn
async def takes_anything(value: Any) -> Any:
    return value


@activity.defn
def charge(amount, note: Any = None) -> str:  # type: ignore[no-untyped-def]
    return f"charged {amount}"


@workflow.defn
async def charges_untyped(amount: Decimal) -> str:
    """A Decimal handed on to an untyped activity argument: refused inside the workflow."""
    try:
        return await workflow.execute_activity(charge, amount)
    except tapeflow.PayloadError as err:
        return f"refused: {err}"


@activity.defn
def echo_precise(
    amount: Decimal, data: bytes, pair: tuple[int, int], tags: set[str]
) -> tuple[Decimal, bytes, tuple[int, int], set[str]]:
    return amount, data, pair, tags


@workflow.defn
async def precise_round_trip(
    amount: Decimal, data: bytes, pair: tuple[int, int], tags: set[str]
) -> tuple[Decimal, bytes, tuple[int, int], set[str]]:
    """Precise annotations at every hop: client, workflow, activity, and back."""
    got = await workflow.execute_activity(echo_precise, amount, data, pair, tags)
    event = await workflow.wait_event("amount", type=Decimal)
    return got[0] + event, got[1], got[2], got[3]  # Decimal + Decimal: not str + str


@workflow.defn
async def wants_ints(counts: list[int]) -> int:
    return sum(counts)
