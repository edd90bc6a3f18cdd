"""Keeps the leases of running tasks alive, in one batch per renewal."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import timedelta

from tapeflow._worker.log_context import worker_logger
from tapeflow.backends.base import Backend, LeaseRef, TaskKind
from tapeflow.history import JSONValue

log = worker_logger()


class LeaseKeeper:
    def __init__(
        self,
        backend: Backend,
        lease: timedelta,
        heartbeats: Callable[[], dict[str, JSONValue]] = dict,
        on_lost_activity: Callable[[str], None] = lambda task_id: None,
    ) -> None:
        self._backend = backend
        self._lease = lease
        self._heartbeats = heartbeats
        self._on_lost_activity = on_lost_activity
        """Told the id of an activity task whose lease is gone, so its attempt stops."""
        self._held: set[LeaseRef] = set()
        self._soon = asyncio.Event()

    def renew_now(self) -> None:
        """Renew at once, not at the next third of the lease: a task held may be gone (its
        workflow just ended), and its attempt should hear of it now."""
        self._soon.set()

    def hold(self, ref: LeaseRef) -> None:
        self._held.add(ref)

    def release(self, ref: LeaseRef) -> None:
        self._held.discard(ref)

    async def run(self) -> None:
        """Renew every third of the lease until cancelled; an idle worker asks nothing."""
        interval = self._lease.total_seconds() / 3
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._soon.wait()
            self._soon.clear()
            held = list(self._held)
            if not held:
                continue
            try:
                lost = await self._backend.extend_leases(held, self._lease, self._heartbeats())
            except Exception:
                log.exception("renewing %d lease(s) failed; will try again", len(held))
                continue
            for ref in lost:
                if ref not in self._held:  # merely finished while the renewal was on its way
                    continue
                self._held.discard(ref)
                if ref.kind is TaskKind.ACTIVITY:  # cancelled, its run ended, or taken over
                    log.info("activity task %s is no longer this worker's; it is told", ref.id)
                    self._on_lost_activity(ref.id)
                else:
                    log.warning(
                        "lost the lease of workflow task %s; its result is discarded", ref.id
                    )
