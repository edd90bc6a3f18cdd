"""A poller's claim across the queues its worker serves: what is admitted, then admission.

Work of every queue the worker serves that needs no admission is claimed in one statement.
Work of a queue with limits waits unadmitted, and only a claim can admit it (admission and
lease are one write, so the rate limit counts starts, not promises); since any queue but
the default one may have limits (declared by whoever first declares them), each of those
is asked for admission with the room the claim left. The default queue never has limits,
so a worker on it alone pays nothing for queues.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Generic, TypeVar

from tapeflow.backends.queue_limits import Admission
from tapeflow.queues import DEFAULT_QUEUE

T = TypeVar("T")

Claim = Callable[[int], Awaitable[list[T]]]
Admit = Callable[[str, int], Awaitable[Admission[T]]]


class QueuedClaims(Generic[T]):
    def __init__(self, claim: Claim[T], admit: Admit[T] | None, queues: Sequence[str]) -> None:
        self._claim = claim
        self._admit = admit
        self.admitting = [q for q in queues if q != DEFAULT_QUEUE] if admit is not None else []
        """The queues asked for admission: every one served but the default."""
        self.retry_in: timedelta | None = None
        """From the last claim: when waiting work may be admitted with no wake-up."""

    async def __call__(self, limit: int) -> list[T]:
        claimed = await self._claim(limit)
        self.retry_in = None
        if self._admit is None:
            return claimed
        for queue in self.admitting:
            room = limit - len(claimed)
            if room <= 0:  # claimed to the limit: the poller claims again at once
                break
            admission = await self._admit(queue, room)
            claimed.extend(admission.tasks)
            if admission.retry_in is not None:
                retry = admission.retry_in
                self.retry_in = retry if self.retry_in is None else min(self.retry_in, retry)
        return claimed
