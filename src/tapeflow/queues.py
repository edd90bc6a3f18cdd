"""Queues: where workflows and activities wait for a worker, and how fast they may leave.

Every workflow and activity is in a queue, ``"default"`` unless started on another; a
worker serves only the queues it lists (``Worker(queues=...)``, default the default one).
A ``Queue`` with limits bounds its work across all workers: ``concurrency`` how many of
its workflows are open (admitted, not closed) plus its activities running, ``rate_limit``
how many of them start per period. Work over a limit waits unadmitted (a workflow is
``pending``, and ``describe()`` says why) and is admitted, by ``priority`` (1 first) and
then by time, as room frees up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from tapeflow._validate import check_int, check_name, check_timedelta, fail

DEFAULT_QUEUE = "default"
"""The queue of work started on none; it has no limits (so it costs nothing to claim)."""

DEFAULT_PRIORITY = 5
PRIORITIES = range(1, 11)
"""Priorities, 1 admitted first."""


@dataclass(frozen=True)
class Queue:
    """A queue and its limits, stored when a worker or client first declares it (the latest
    declaration wins: two that differ log a warning)."""

    name: str
    concurrency: int | None = None
    """At most this many of its workflows open plus its activities running, across all
    workers; None: no bound."""
    rate_limit: tuple[int, timedelta] | None = None
    """``(n, period)``: at most ``n`` of its workflows and activities start in any
    ``period``, across all workers; None: no bound."""

    def __post_init__(self) -> None:
        check_name(self.name, "queue name")
        if self.concurrency is not None:
            check_int(self.concurrency, "queue concurrency", minimum=1)
        if self.rate_limit is not None:
            if not isinstance(self.rate_limit, tuple) or len(self.rate_limit) != 2:
                fail("queue rate_limit", self.rate_limit, "a tuple (n, period) or None")
            count, period = self.rate_limit
            check_int(count, "queue rate_limit count", minimum=1)
            check_timedelta(period, "queue rate_limit period", positive=True)
        if self.name == DEFAULT_QUEUE and self.limited:
            fail("Queue", self, f"a queue other than {DEFAULT_QUEUE!r} to have limits")

    @property
    def limited(self) -> bool:
        """Whether its work waits for admission."""
        return self.concurrency is not None or self.rate_limit is not None


QueueLike = Queue | str
"""A queue, or the name of one (whose limits, if any, someone else declared)."""


def queue_name(queue: object, what: str = "queue") -> str:
    """The name of ``queue`` (a ``Queue`` or a name), checked."""
    if isinstance(queue, Queue):
        return queue.name
    if not isinstance(queue, str):
        fail(what, queue, "a tapeflow.Queue or a queue name")
    return check_name(queue, what)


def check_priority(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in PRIORITIES:
        fail("priority", value, f"an integer from {PRIORITIES.start} to {PRIORITIES.stop - 1}")
    return value


def served_queues(queues: object) -> tuple[QueueLike, ...]:
    """A worker's ``queues``: a non-empty sequence of queues or names, no name twice."""
    if isinstance(queues, str | Queue) or not isinstance(queues, Sequence) or not queues:
        fail("WorkerOptions.queues", queues, "a non-empty sequence of tapeflow.Queue or names")
    names = [queue_name(queue, "WorkerOptions.queues item") for queue in queues]
    if len(set(names)) != len(names):
        fail("WorkerOptions.queues", queues, "queues with distinct names")
    return tuple(queues)
