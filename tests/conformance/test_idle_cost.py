"""An idle worker costs its database little: no lease renewals while it holds no lease,
and at most one statement a second where wake-ups come from every process."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any, cast

import tapeflow
from tapeflow import activity, workflow


@activity.defn
def unused_step() -> None:
    """Registered so that the activity poller runs."""


@workflow.defn
async def unused_flow() -> None:
    """Registered so that the workflow poller runs."""


class CountingBackend:
    """Forwards to a backend, counting the calls of each of its methods."""

    def __init__(self, backend: tapeflow.Backend) -> None:
        self._backend = backend
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._backend, name)
        if not asyncio.iscoroutinefunction(found):
            return found

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return await found(*args, **kwargs)

        return counted


def _idle_worker(counting: CountingBackend, **options: Any) -> tapeflow.Worker:
    backend = cast(tapeflow.Backend, counting)
    return tapeflow.Worker(backend, workflows=[unused_flow], activities=[unused_step], **options)


async def test_an_idle_worker_renews_no_leases(backend: tapeflow.Backend) -> None:
    counting = CountingBackend(backend)
    async with _idle_worker(counting, lease_duration=timedelta(milliseconds=150)):
        await asyncio.sleep(0.6)  # a dozen renewal intervals
    assert counting.calls["extend_leases"] == 0
    assert counting.calls["claim_workflow_tasks"] >= 1


async def test_an_idle_worker_asks_at_most_once_a_second_when_woken_by_every_process(
    backend: tapeflow.Backend,
) -> None:
    counting = CountingBackend(backend)
    async with _idle_worker(counting) as worker:  # the default options
        await asyncio.sleep(0.5)  # start-up: each poller claims and looks once
        wakes = backend.wakes_other_processes
        before = sum(counting.calls.values())
        await asyncio.sleep(3)
        during = sum(counting.calls.values()) - before
    assert worker.options.lease_duration == timedelta(seconds=30)
    if wakes:  # PostgreSQL: pollers look again only at their fallback interval
        assert during <= 3, counting.calls
    else:  # SQLite: polling every poll_interval is how other processes' work is seen,
        # and the schedule firing loop's look once a second (at most 4 in 3 s)
        polls = 3 * 2 * 2 / worker.options.poll_interval.total_seconds()
        assert during <= polls + 4, counting.calls
