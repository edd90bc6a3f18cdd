"""A caller's wait for something a workflow's commit writes: its end, an update's answer.

Waking on the commit is the rule (a wake-up topic); polling covers wake-ups that cannot
arrive (another process's commit on SQLite) or were lost (a dropped connection). One loop
for every such wait, so that each waits and gives up alike.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tapeflow.backends.base import Backend
from tapeflow.backends.wakeups import FALLBACK_POLL_SECONDS
from tapeflow.errors import BackendUnavailable

T = TypeVar("T")

FIRST_POLL = 0.05
"""Seconds before the first look again without a wake-up; it grows to LAST_POLL."""
LAST_POLL = 0.5


def _never() -> float | None:
    return None


async def wait_until(
    backend: Backend,
    topics: list[str],
    look: Callable[[], Awaitable[T | None]],
    deadline: float | None,
    too_late: str,
    look_in: Callable[[], float | None] = _never,
) -> T:
    """What ``look()`` finds, looking again at each wake-up on ``topics`` and at each poll
    (every FALLBACK_POLL_SECONDS while wake-ups come from every process, else more often),
    and within ``look_in()`` seconds when it says so. Past ``deadline`` (``time.monotonic``)
    raises TimeoutError(``too_late``)."""
    poll = FIRST_POLL
    with backend.watch(topics) as woken:  # before the first look: no wake-up is missed
        found = await look()
        while found is None:
            wait = FALLBACK_POLL_SECONDS if backend.wakes_other_processes else poll
            soon = look_in()
            if soon is not None:
                wait = min(wait, max(soon, poll))
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(too_late)
                wait = min(wait, remaining)
            await woken.wait(wait)
            poll = min(poll * 1.5, LAST_POLL)
            woken.clear()
            found = await look()
    return found


async def available(read: Callable[[], Awaitable[T]], deadline: float | None) -> T | None:
    """``read()``, or None while the backend is unavailable (until the deadline): a wait
    rides out an outage."""
    try:
        return await read()
    except BackendUnavailable:
        if deadline is not None and time.monotonic() >= deadline:
            raise
        return None
