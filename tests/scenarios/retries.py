"""Activity retries: a policy's attempts and backoff, final errors, and per-attempt overrides.

Every activity records its attempts in the journal named by its input, so a test sees how
many attempts ran and when. Each workflow reports the activity's outcome, a result or the
``ActivityError`` it caught, as an ``Outcome``.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import tapeflow
from tapeflow import activity, workflow
from tests.scenarios.journal import journal

FAST_FOREVER = tapeflow.RetryPolicy(
    initial_interval=timedelta(milliseconds=20), backoff_coefficient=1.5, maximum_attempts=None
)
FAST_THREE_ATTEMPTS = tapeflow.RetryPolicy(
    initial_interval=timedelta(milliseconds=20), maximum_attempts=3
)
SLOW = tapeflow.RetryPolicy(initial_interval=timedelta(seconds=30), maximum_attempts=3)
"""Retried so slowly that a test only finishes in time if an override is honoured."""


@dataclass(frozen=True)
class Flaky:
    journal_id: str
    failures: int
    """How many attempts fail before one succeeds."""


@dataclass(frozen=True)
class Override:
    journal_id: str
    delay: timedelta
    """How long after the first attempt started the second one may run."""


@dataclass(frozen=True)
class Outcome:
    result: str | None = None
    activity: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    attempt: int | None = None
    """The attempt the final failure came from."""


@activity.defn
def flaky(spec: Flaky) -> str:
    attempt = journal(spec.journal_id).record("flaky").attempt
    if attempt <= spec.failures:
        raise ConnectionError(f"attempt {attempt} could not connect")
    return f"succeeded on attempt {attempt}"


@activity.defn
def always_fails(journal_id: str) -> str:
    attempt = journal(journal_id).record("always_fails").attempt
    raise ValueError(f"bad value on attempt {attempt}")


@activity.defn
def declined(journal_id: str) -> str:
    journal(journal_id).record("declined")
    raise tapeflow.NonRetryableError("card declined", type="CardDeclined")


@activity.defn
def busy_then_ok_after(spec: Override) -> str:
    """Fails once, asking for the next attempt ``spec.delay`` later (``retry_after``)."""
    attempt = journal(spec.journal_id).record("busy_then_ok_after").attempt
    if attempt == 1:
        activity.retry_after(spec.delay)
        raise TimeoutError("upstream busy")
    return f"ok on attempt {attempt}"


@activity.defn
async def busy_then_ok_at(spec: Override) -> str:
    """Fails once, asking for the next attempt at a given time (``retry_at``), noted."""
    log = journal(spec.journal_id)
    attempt = activity.info().attempt
    if attempt == 1:
        first = log.record("busy_then_ok_at")
        retry_at = first.at + spec.delay
        log.record("retry_at", note=retry_at.isoformat())
        activity.retry_at(retry_at)
        raise TimeoutError("upstream busy")
    log.record("busy_then_ok_at")
    return f"ok on attempt {attempt}"


async def outcome_of(call: Awaitable[str]) -> Outcome:
    try:
        return Outcome(result=await call)
    except tapeflow.ActivityError as err:
        return Outcome(
            activity=err.activity,
            error_type=err.type,
            error_message=err.message,
            attempt=err.attempt,
        )


@workflow.defn
async def retry_until_success(spec: Flaky) -> Outcome:
    return await outcome_of(workflow.execute_activity(flaky, spec, retry=FAST_FOREVER))


@workflow.defn
async def retry_exhausted(journal_id: str) -> Outcome:
    return await outcome_of(
        workflow.execute_activity(always_fails, journal_id, retry=FAST_THREE_ATTEMPTS)
    )


@workflow.defn
async def retry_with_worker_default(journal_id: str) -> Outcome:
    """No policy of its own: the worker's ``retry_policy`` applies."""
    return await outcome_of(workflow.execute_activity(always_fails, journal_id))


@workflow.defn
async def non_retryable(journal_id: str) -> Outcome:
    return await outcome_of(workflow.execute_activity(declined, journal_id, retry=FAST_FOREVER))


@workflow.defn
async def retry_after_override(spec: Override) -> Outcome:
    return await outcome_of(workflow.execute_activity(busy_then_ok_after, spec, retry=SLOW))


@workflow.defn
async def retry_at_override(spec: Override) -> Outcome:
    return await outcome_of(workflow.execute_activity(busy_then_ok_at, spec, retry=SLOW))


HUGE_BACKOFF = tapeflow.RetryPolicy(
    initial_interval=timedelta(milliseconds=10), backoff_coefficient=1e300, maximum_interval=None
)
"""The second retry's delay, 1e298 s, is far past what either database can store."""


@activity.defn
def fails_with_huge_backoff(journal_id: str) -> str:
    attempt = journal(journal_id).record("fails_with_huge_backoff").attempt
    raise ConnectionError(f"attempt {attempt} could not connect")


@activity.defn
def asks_for_year_9999(journal_id: str) -> str:
    journal(journal_id).record("asks_for_year_9999")
    activity.retry_at(datetime(9999, 1, 1, tzinfo=UTC))
    raise TimeoutError("come back much later")


@workflow.defn
async def retry_with_huge_backoff(journal_id: str) -> Outcome:
    return await outcome_of(
        workflow.execute_activity(fails_with_huge_backoff, journal_id, retry=HUGE_BACKOFF)
    )


@workflow.defn
async def retry_in_year_9999(journal_id: str) -> Outcome:
    return await outcome_of(workflow.execute_activity(asks_for_year_9999, journal_id, retry=SLOW))
