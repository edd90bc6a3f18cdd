"""Deletes the closed workflows past a worker's retention, on a slow loop of its own."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta

from tapeflow._worker.log_context import worker_logger
from tapeflow.backends.base import Backend

log = worker_logger()

EVERY = 60.0
"""Seconds between two collections, on average (each waits 0.5 to 1.5 times this, so that
workers started together do not all look at once)."""

BATCH = 100
"""Workflows deleted per transaction: each is short, so no task's write waits long."""


class Retention:
    """Runs beside the pollers and never in their way: each batch is one transaction of
    its own, a failure (the backend is down) is logged and tried again next time, and a
    batch another worker is collecting (``delete_closed`` says None) is left to it."""

    def __init__(self, backend: Backend, keep: timedelta, batch: int = BATCH) -> None:
        self._backend = backend
        self._keep = keep
        self._batch = batch

    async def run(self) -> None:
        """Collect about every ``EVERY`` seconds until cancelled."""
        while True:
            await asyncio.sleep(EVERY * random.uniform(0.5, 1.5))
            try:
                deleted = await self.collect()
            except Exception as exc:
                log.warning("deleting closed workflows failed (%s); will try again", exc)
                continue
            if deleted:
                log.info("deleted %d workflow(s) closed more than %s ago", deleted, self._keep)

    async def collect(self) -> int:
        """Delete, a batch at a time, what is past the retention now; returns how many.
        Stops at the first batch another worker holds: it is doing the same."""
        deleted = 0
        while True:
            done = await self._backend.delete_closed(self._keep, self._batch)
            if done is None:
                return deleted
            deleted += done
            if done < self._batch:
                return deleted
            await asyncio.sleep(0)  # let the worker's other tasks in between batches
