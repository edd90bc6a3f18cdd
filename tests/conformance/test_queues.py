"""Queues: work goes only to workers serving its queue; a queue's concurrency, rate limit
and priorities hold across workers and processes; bad queues are refused clearly.

The workers here run on the backend itself (``core_only`` would hide ``QueueLimits``, so
a worker could not admit anything), with the workflow cache on and off.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import tapeflow
from tapeflow import activity, workflow
from tapeflow.backends.queue_limits import QueueLimits
from tests.conformance._waiting import eventually
from tests.conformance.queue_workers import (
    API,
    RATED,
    SESSIONS,
    call,
    fan_out,
    most_at_once,
    most_started_within,
    session,
)

ROOT = Path(__file__).resolve().parents[2]
FAST = timedelta(milliseconds=50)


@pytest.fixture
def serving(
    backend: tapeflow.Backend, cache_size: int
) -> Callable[..., AbstractAsyncContextManager[tapeflow.Worker]]:
    @asynccontextmanager
    async def serve(queues: list[Any], **options: Any) -> AsyncIterator[tapeflow.Worker]:
        worker = tapeflow.Worker(
            backend,
            workflows=options.pop("workflows", [fan_out, session]),
            activities=options.pop("activities", [call]),
            queues=queues,
            workflow_cache_size=cache_size,
            max_concurrent_activities=options.pop("max_concurrent_activities", 10),
            poll_interval=FAST,
            **options,
        )
        async with worker:
            yield worker

    return serve


async def test_work_goes_only_to_workers_serving_its_queue(
    client: tapeflow.Client, serving: Callable[..., Any]
) -> None:
    handle = await client.start_workflow(session, 0.0, queue="reports")
    fanned = await client.start_workflow(fan_out, 2, "payments", 0.0)
    async with serving(["default"]):
        await asyncio.sleep(0.5)
        assert (await handle.describe()).status == "pending"  # no worker serves "reports"
        assert (await fanned.describe()).status == "running"  # its activities wait
        assert (await handle.describe()).queue == "reports"
        async with serving(["reports", "payments"], workflows=[session]):
            assert len(await handle.result(timeout=10)) == 2
            assert len(await fanned.result(timeout=10)) == 2


async def test_a_queue_bounds_its_running_activities_across_workers(
    client: tapeflow.Client, serving: Callable[..., Any]
) -> None:
    handle = await client.start_workflow(fan_out, 12, API.name, 0.2)
    async with serving(["default", API]), serving([API], workflows=[]):
        spans = await handle.result(timeout=30)
    assert most_at_once(spans) == API.concurrency  # reached, never passed


async def test_a_queue_bounds_its_open_workflows(
    client: tapeflow.Client, serving: Callable[..., Any]
) -> None:
    handles = [await client.start_workflow(session, 0.5, queue=SESSIONS) for _ in range(6)]
    seen: list[tapeflow.WorkflowRecord] = []

    async def two_admitted() -> bool:
        seen[:] = [await h.describe() for h in handles]
        return sum(r.status == "running" for r in seen) == SESSIONS.concurrency

    async with serving(["default", SESSIONS]):
        await eventually(two_admitted, "two sessions are admitted")
        spans = [await h.result(timeout=30) for h in handles]
    assert most_at_once(spans) == SESSIONS.concurrency
    pending = [r for r in seen if r.status == "pending"]
    assert len(pending) == 4
    assert all("waiting for admission to queue 'sessions'" in str(r.hint) for r in pending)


async def test_a_rate_limit_bounds_starts_per_period_across_workers(
    client: tapeflow.Client, serving: Callable[..., Any]
) -> None:
    handle = await client.start_workflow(fan_out, 10, RATED.name, 0.0)
    async with serving(["default", RATED]), serving([RATED], workflows=[]):
        spans = await handle.result(timeout=30)
    count, period = RATED.rate_limit or (0, timedelta(0))
    # The limit counts admissions (the database's clock); an activity's first line runs a
    # few milliseconds after its admission, so its measured start is checked over a
    # window that much shorter.
    assert most_started_within(spans, period.total_seconds() - 0.05) <= count
    starts = sorted(start for start, _ in spans)
    assert starts[-1] - starts[0] >= 2 * period.total_seconds() - 0.1  # 10 at 4 per second


@activity.defn
async def note(label: str) -> str:
    return label


@workflow.defn
async def ordered(label: str) -> str:
    await workflow.wait_event("go")
    return await workflow.execute_activity(note, label)


async def test_priority_orders_admission_then_start_time(
    client: tapeflow.Client, serving: Callable[..., Any]
) -> None:
    single = tapeflow.Queue("single", concurrency=1)
    blocker = await client.start_workflow(ordered, "blocker", queue=single)
    async with serving(["default", single], workflows=[ordered], activities=[note]):
        await asyncio.sleep(0.3)  # the blocker holds the only place
        labels = [("late", 9), ("first", 1), ("middle", 5), ("second", 1)]
        left = [blocker] + [
            await client.start_workflow(ordered, label, queue=single, priority=priority)
            for label, priority in labels
        ]
        admitted = []
        while left:  # one at a time: the one running is let go, and the next admitted
            await asyncio.sleep(0.2)
            (running,) = [h for h in left if (await h.describe()).status == "running"]
            await running.send_event("go")
            admitted.append(await running.result(timeout=10))
            left.remove(running)
    assert admitted == ["blocker", "first", "second", "middle", "late"]


@activity.defn
async def flaky(label: str) -> list[float]:
    """Fails on its first attempt: its retry waits a second, giving back its place."""
    if tapeflow.activity.info().attempt == 1:
        raise RuntimeError("not yet")
    return [0.0, 0.0]


@workflow.defn
async def retried_and_steady() -> list[str]:
    policy = tapeflow.RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3)
    first = workflow.execute_activity(flaky, "a", queue="one-at-a-time", retry=policy)
    await workflow.sleep(0.3)  # the flaky one fails first, then waits for its retry
    second = await workflow.execute_activity(note, "b", queue="one-at-a-time")
    await first
    return [second, "a"]


async def test_a_retry_waits_without_holding_its_place(
    client: tapeflow.Client, serving: Callable[..., Any], backend: tapeflow.Backend
) -> None:
    one = tapeflow.Queue("one-at-a-time", concurrency=1)
    handle = await client.start_workflow(retried_and_steady)
    async with serving(["default", one], workflows=[retried_and_steady], activities=[flaky, note]):
        done = asyncio.create_task(handle.result(timeout=20))
        await asyncio.sleep(0.8)  # "b" ran while "a" waited for its retry
        history = [e.kind for e in await handle.history()]
        assert await done == ["b", "a"]
    assert history.count("activity_completed") == 1


async def test_differing_declarations_warn_and_the_latest_wins(
    client: tapeflow.Client, backend: tapeflow.Backend, caplog: pytest.LogCaptureFixture
) -> None:
    assert isinstance(backend, QueueLimits)
    first = tapeflow.Queue("mail", concurrency=5)
    latest = tapeflow.Queue("mail", concurrency=2, rate_limit=(100, timedelta(minutes=1)))
    with caplog.at_level(logging.WARNING, "tapeflow.queues"):
        await client.start_workflow(session, 0.0, queue=first)
        await client.start_workflow(session, 0.0, queue=first)  # the same: said once
        assert not caplog.records
        await tapeflow.Client(backend).start_workflow(session, 0.0, queue=latest)
    (warning,) = caplog.records
    assert "queue 'mail' was declared as" in warning.getMessage()
    (mail,) = [q for q in await backend.list_queues() if q.queue.name == "mail"]
    assert mail.queue == latest
    assert mail.waiting == 3  # limited, and no worker serves it


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: tapeflow.Queue(""), "queue name"),
        (lambda: tapeflow.Queue("q", concurrency=0), "queue concurrency"),
        (lambda: tapeflow.Queue("q", rate_limit=(5, 60)), "queue rate_limit period"),  # type: ignore[arg-type]
        (lambda: tapeflow.Queue("q", rate_limit=(0, timedelta(1))), "queue rate_limit count"),
        (lambda: tapeflow.Queue("default", concurrency=1), "a queue other than 'default'"),
        (lambda: tapeflow.WorkerOptions(queues=[]), "WorkerOptions.queues"),
        (lambda: tapeflow.WorkerOptions(queues="emails"), "WorkerOptions.queues"),
        (lambda: tapeflow.WorkerOptions(queues=["a", "a"]), "distinct names"),
        (lambda: tapeflow.WorkerOptions(queues=[3]), "WorkerOptions.queues item"),  # type: ignore[list-item]
    ],
)
def test_bad_queues_are_refused_clearly(make: Callable[[], object], message: str) -> None:
    with pytest.raises(tapeflow.InvalidArgument, match=message):
        make()


@pytest.mark.parametrize("priority", [0, 11, 2.5, True, "1"])
async def test_a_bad_priority_is_refused_and_nothing_is_written(
    client: tapeflow.Client, priority: object
) -> None:
    with pytest.raises(tapeflow.InvalidArgument, match="priority"):
        await client.start_workflow(session, 0.0, id="never", priority=priority)  # type: ignore[call-overload]
    with pytest.raises(tapeflow.WorkflowNotFound):
        await client.describe("never")


async def test_three_worker_processes_hold_the_limits_and_survive_a_kill(
    backend_url: str, client: tapeflow.Client
) -> None:
    limited = await client.start_workflow(fan_out, 15, API.name, 0.3)
    rated = await client.start_workflow(fan_out, 10, RATED.name, 0.0)
    sessions = [await client.start_workflow(session, 0.3, queue=SESSIONS) for _ in range(6)]
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.conformance.queue_workers", backend_url, cwd=ROOT
        )
        for _ in range(3)
    ]
    try:
        await asyncio.sleep(1.0)
        workers[0].send_signal(signal.SIGKILL)  # its leases run out; the others go on
        api_spans = await limited.result(timeout=60)
        rated_spans = await rated.result(timeout=60)
        session_spans = [await s.result(timeout=60) for s in sessions]
    finally:
        for process in workers:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        await asyncio.gather(*(asyncio.wait_for(p.wait(), 30) for p in workers))
    assert len(api_spans) == 15
    # A killed worker's running calls are not seen to end; their places stay taken until
    # the lease runs out, so the bound holds even then.
    assert most_at_once(api_spans) <= (API.concurrency or 0)
    count, period = RATED.rate_limit or (0, timedelta(0))
    assert most_started_within(rated_spans, period.total_seconds() - 0.05) <= count
    assert most_at_once(session_spans) <= (SESSIONS.concurrency or 0)
