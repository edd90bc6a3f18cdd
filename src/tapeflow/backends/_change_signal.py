"""In-process wake-ups: a counter of commits that waiters can sleep on without missing one."""

from __future__ import annotations

import asyncio
import contextlib


class ChangeSignal:
    def __init__(self) -> None:
        self.count = 0
        self._event: asyncio.Event | None = None

    def notify(self) -> None:
        self.count += 1
        if self._event is not None:
            self._event.set()
            self._event = None

    async def wait(self, since: int, timeout: float) -> int:
        if self.count != since or timeout <= 0:
            return self.count
        if self._event is None:
            self._event = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)
        return self.count
