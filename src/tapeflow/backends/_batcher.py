"""Group commit: writes that arrive while others are in flight go out together, in one
round trip and one transaction, so a busy worker pays one fsync for many tasks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")


class Batcher(Generic[Item, Outcome]):
    """Hands queued items to ``flush`` in batches; at most ``in_flight`` flushes at once.

    A lone item goes out at once (no added latency); under load, items queue behind the
    flushes in flight and leave together. ``flush`` returns one outcome per item, in order.
    """

    def __init__(
        self,
        flush: Callable[[list[Item]], Awaitable[Sequence[Outcome]]],
        *,
        max_batch: int = 64,
        in_flight: int = 2,
    ) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._slots = in_flight
        self._queue: list[tuple[Item, asyncio.Future[Outcome]]] = []

    async def submit(self, item: Item) -> Outcome:
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._slots > 0:
            self._slots -= 1
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
                try:
                    outcomes = await self._flush([item for item, _ in batch])
                except BaseException as exc:  # the whole round trip failed: tell everyone
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    if not future.done():
                        future.set_result(outcome)
        finally:
            self._slots += 1
