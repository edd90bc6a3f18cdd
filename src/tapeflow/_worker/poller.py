"""One poll loop: claim what there is room for, run each in its own task, sleep when idle.

Idle sleep ends at the first of: an in-process commit, the next known due time (a timer or
retry), the poll interval (work committed by other processes), or stop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import timedelta
from typing import Any, Generic, TypeVar

from tapeflow._worker.log_context import worker_logger
from tapeflow._worker.metrics import Metrics, now
from tapeflow._worker.queued_claims import QueuedClaims
from tapeflow._worker.slots import Slots
from tapeflow.backends.base import Backend, TaskKind
from tapeflow.backends.wakeups import FALLBACK_POLL_SECONDS, Watch, queue_topics, work_topic

log = worker_logger()
T = TypeVar("T")

MAX_CLAIM_BACKOFF = 5.0
"""Longest pause between claims while the backend fails, so work resumes soon after it is
back."""


class Poller(Generic[T]):
    def __init__(
        self,
        backend: Backend,
        kind: TaskKind,
        names: Sequence[str],
        slots: Slots,
        poll_interval: timedelta,
        claim: QueuedClaims[T],
        handle: Callable[[T], Coroutine[Any, Any, None]],
        queues: Sequence[str],
        owner: str | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._backend = backend
        self._kind = kind
        self._names = list(names)
        self._queues = list(queues)
        self._slots = slots
        self._poll = poll_interval.total_seconds()
        self._claim = claim
        self._handle = handle
        self._owner = owner
        self._metrics = metrics or Metrics()
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()
        self._slots.close()

    async def run(self) -> None:
        topics = {work_topic(self._kind, name) for name in self._names}
        self._metrics.polling(self._kind, True)
        try:
            with self._backend.watch(topics | queue_topics(self._claim.admitting)) as watch:
                await self._poll_until_stopped(watch)
        finally:
            self._metrics.polling(self._kind, False)

    async def _poll_until_stopped(self, watch: Watch) -> None:
        failures = 0
        while not self._stopping.is_set():
            free = self._slots.free()
            if free <= 0:
                await self._until(self._slots.wait_freed())
                continue
            watch.clear()
            started = now()
            try:
                claimed = await self._claim(free)
                failures = 0
            except Exception:
                self._metrics.claim_failed(self._kind)
                failures += 1
                delay = min(self._poll * 2**failures, MAX_CLAIM_BACKOFF)
                log.exception("claiming %s tasks failed; retrying in %.1fs", self._kind, delay)
                await self._until(asyncio.sleep(delay))
                continue
            self._metrics.claimed(self._kind, now() - started, len(claimed))
            for item in claimed:
                self._slots.start(self._handle(item))
            # All there was: no second claim to find nothing, and no wait at all if work
            # came meanwhile.
            if len(claimed) < free and not watch.woken:
                await self._until(watch.wait(await self._idle_wait()))

    async def drain(self, grace: float) -> None:
        await self._slots.drain(grace)

    async def _idle_wait(self) -> float:
        try:
            due = await self._backend.next_due(self._kind, self._names, self._owner, self._queues)
        except Exception:
            log.exception("looking up the next due %s task failed", self._kind)
            return self._poll
        longest = self._poll
        if self._backend.wakes_other_processes:  # wake-ups cover the rest; poll as a fallback
            longest = max(longest, FALLBACK_POLL_SECONDS)
        soonest = [t.total_seconds() for t in (due, self._claim.retry_in) if t is not None]
        return max(0.0, min([longest, *soonest]))

    async def _until(self, awaitable: Awaitable[object]) -> None:
        """Await ``awaitable`` unless stop comes first."""
        work = asyncio.ensure_future(awaitable)
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for future in (work, stop):
                if not future.done():
                    future.cancel()
