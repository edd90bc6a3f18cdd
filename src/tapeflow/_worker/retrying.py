"""Writing a task's outcome through a database outage: retry with backoff, within the lease.

Every task write is fenced by its lease token, so retrying one that was in fact committed
before the connection dropped only gets LeaseLost, never a duplicate.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from tapeflow._worker.log_context import worker_logger
from tapeflow.errors import BackendUnavailable

log = worker_logger()
T = TypeVar("T")


async def retry_while_unavailable(
    write: Callable[[], Awaitable[T]], what: str, patience: timedelta
) -> T:
    """Run ``write``, retrying while the backend is unavailable, for up to ``patience``
    (the lease: past it, another worker is entitled to the task anyway)."""
    deadline = time.monotonic() + patience.total_seconds()
    delay = 0.05
    while True:
        try:
            return await write()
        except BackendUnavailable as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("%s: %s; retrying in %.2fs", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
