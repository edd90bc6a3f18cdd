"""How many tasks of one kind a worker runs at once, and the tasks running in them.

Slots are counted apart from the poller that fills most of them, because work also
arrives from the worker's own writes (an activity leased in the commit that scheduled it,
a workflow task leased with its activity's outcome): a slot is reserved before such a
write, and the work it leased is started in it once the write returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from typing import Any


class Slots:
    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._running: set[asyncio.Task[None]] = set()
        self._reserved = 0
        self._held = False
        self._closed = False
        self._freed = asyncio.Event()

    def free(self) -> int:
        if self._held:
            return 0
        return self._capacity - len(self._running) - self._reserved

    def hold(self, held: bool) -> None:
        """Reserve nothing while held (running tasks go on), so that the poller claims
        nothing either; resume on release."""
        self._held = held
        self._freed.set()

    def close(self) -> None:
        """Reserve nothing any more: the worker is stopping."""
        self._closed = True
        self._freed.set()

    def reserve(self, wanted: int, handing_over: int = 0) -> int:
        """Hold up to ``wanted`` free slots for work a write of this worker will lease to
        it; returns how many were held. ``handing_over`` counts slots the caller's own task
        frees as soon as it ends, so that a chain of work (one activity after another)
        keeps its slot."""
        free = self.free() + handing_over
        granted = 0 if self._closed else max(0, min(wanted, free))
        self._reserved += granted
        return granted

    def start(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._running.add(task)
        task.add_done_callback(self._finished)

    def adopt(self, works: Sequence[Coroutine[Any, Any, None]], reserved: int) -> None:
        """Start ``works`` in the slots ``reserve`` held; give back the ones left over."""
        self._reserved -= reserved
        for work in works:
            self.start(work)
        if len(works) < reserved:
            self._freed.set()

    async def wait_freed(self) -> None:
        """Until a slot may have been freed (or the slots held, released or closed)."""
        self._freed.clear()
        await self._freed.wait()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._freed.set()

    async def drain(self, grace: float) -> None:
        """Wait for running tasks up to ``grace`` seconds, then cancel the rest."""
        if self._running:
            await asyncio.wait(self._running, timeout=grace)
        for task in list(self._running):
            task.cancel()
        if self._running:
            await asyncio.wait(self._running)
