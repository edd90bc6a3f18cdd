"""Activity retries: until success, until the policy's attempts are spent, never after a
final error, and at the time an attempt asked for (retry_after / retry_at)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import pytest

import tapeflow
from tapeflow.backends.base import TaskKind
from tapeflow.options import MAX_DELAY
from tests.conformance._waiting import eventually
from tests.conftest import WorkerFactory
from tests.scenarios.journal import new_journal
from tests.scenarios.retries import (
    SLOW,
    Flaky,
    Outcome,
    Override,
    always_fails,
    asks_for_year_9999,
    busy_then_ok_after,
    busy_then_ok_at,
    declined,
    fails_with_huge_backoff,
    flaky,
    non_retryable,
    retry_after_override,
    retry_at_override,
    retry_exhausted,
    retry_in_year_9999,
    retry_until_success,
    retry_with_huge_backoff,
    retry_with_worker_default,
)

ACTIVITIES = [flaky, always_fails, declined, busy_then_ok_after, busy_then_ok_at]


async def test_an_activity_is_retried_until_it_succeeds(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    with new_journal() as log:
        async with worker(workflows=[retry_until_success], activities=ACTIVITIES):
            handle = await client.start_workflow(retry_until_success, Flaky(log.id, failures=3))
            assert await handle.result(timeout=10) == Outcome(result="succeeded on attempt 4")
        assert log.attempts("flaky") == [1, 2, 3, 4]


async def test_retries_stop_after_maximum_attempts_and_the_workflow_gets_the_failure(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    with new_journal() as log:
        async with worker(workflows=[retry_exhausted], activities=ACTIVITIES):
            handle = await client.start_workflow(retry_exhausted, log.id)
            assert await handle.result(timeout=10) == Outcome(
                activity="always_fails",
                error_type="ValueError",
                error_message="bad value on attempt 3",
                attempt=3,
            )
        assert log.attempts("always_fails") == [1, 2, 3]


async def test_the_workers_retry_policy_applies_when_the_workflow_sets_none(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    policy = tapeflow.RetryPolicy(initial_interval=timedelta(milliseconds=20), maximum_attempts=2)
    with new_journal() as log:
        async with worker(
            workflows=[retry_with_worker_default], activities=ACTIVITIES, retry_policy=policy
        ):
            handle = await client.start_workflow(retry_with_worker_default, log.id)
            outcome = await handle.result(timeout=10)
        assert outcome.attempt == 2
        assert outcome.error_message == "bad value on attempt 2"
        assert log.attempts("always_fails") == [1, 2]


async def test_a_non_retryable_error_is_final_after_one_attempt(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    with new_journal() as log:
        async with worker(workflows=[non_retryable], activities=ACTIVITIES):
            handle = await client.start_workflow(non_retryable, log.id)
            assert await handle.result(timeout=10) == Outcome(
                activity="declined",
                error_type="CardDeclined",
                error_message="card declined",
                attempt=1,
            )
        assert log.attempts("declined") == [1]


async def test_retry_after_overrides_the_policys_backoff(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    delay = timedelta(milliseconds=200)
    assert delay < SLOW.delay_after(1) == timedelta(seconds=30)
    with new_journal() as log:
        async with worker(workflows=[retry_after_override], activities=ACTIVITIES):
            handle = await client.start_workflow(retry_after_override, Override(log.id, delay))
            assert await handle.result(timeout=10) == Outcome(result="ok on attempt 2")
        first, second = log.entries
        assert (first.attempt, second.attempt) == (1, 2)
        assert second.at - first.at >= delay


async def test_retry_at_sets_the_time_of_the_next_attempt(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    delay = timedelta(milliseconds=300)
    with new_journal() as log:
        async with worker(workflows=[retry_at_override], activities=ACTIVITIES):
            handle = await client.start_workflow(retry_at_override, Override(log.id, delay))
            assert await handle.result(timeout=10) == Outcome(result="ok on attempt 2")
        first, requested, second = log.entries
        assert [e.what for e in log.entries] == ["busy_then_ok_at", "retry_at", "busy_then_ok_at"]
        assert (first.attempt, second.attempt) == (1, 2)
        retry_at = datetime.fromisoformat(requested.note)
        assert retry_at == first.at + delay
        assert second.at >= retry_at


@pytest.mark.parametrize(
    ("scenario", "name", "attempts"),
    [
        pytest.param(
            retry_with_huge_backoff, fails_with_huge_backoff.__name__, [1, 2], id="backoff"
        ),
        pytest.param(retry_in_year_9999, "asks_for_year_9999", [1], id="retry_at"),
    ],
)
async def test_a_delay_past_what_the_database_holds_is_cut_to_max_delay(
    client: tapeflow.Client, worker: WorkerFactory, scenario: Any, name: str, attempts: list[int]
) -> None:
    lease = timedelta(seconds=1)
    with new_journal() as log:
        async with worker(
            workflows=[scenario],
            activities=[fails_with_huge_backoff, asks_for_year_9999],
            lease_duration=lease,
        ):
            await client.start_workflow(scenario, log.id)

            async def retry_scheduled() -> bool:
                due = await client.backend.next_due(TaskKind.ACTIVITY, [name])
                return due is not None and due > MAX_DELAY - timedelta(minutes=1)

            await eventually(retry_scheduled, "the retry is scheduled MAX_DELAY ahead")
            await asyncio.sleep(2 * lease.total_seconds())  # its old lease has run out
            assert log.attempts(name) == attempts
        due = await client.backend.next_due(TaskKind.ACTIVITY, [name])
        assert due is not None
        assert MAX_DELAY - timedelta(minutes=1) < due <= MAX_DELAY
