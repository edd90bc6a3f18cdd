"""The optional capability of queues with limits: storing them, and admitting the work
that waits under them (see ``tapeflow.queues``).

Routing by queue (a claim takes only from the queues its worker serves) is in the core
protocol; a backend without this capability has no limits, and a limited ``Queue`` is
refused with it. Work of a queue with limits is written unadmitted, unseen by claims; the
pollers of every worker serving the queue (but the default one, which has no limits) admit
it as they claim, one at a time per queue (its row locked), on the database's clock.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Generic, Protocol, TypeVar, runtime_checkable

from tapeflow.backends.base import ActivityTask, WorkflowTask
from tapeflow.errors import InvalidArgument
from tapeflow.queues import Queue

T = TypeVar("T")

log = logging.getLogger("tapeflow.queues")


@dataclass(frozen=True)
class Admission(Generic[T]):
    """What one admission of a queue's waiting work gave its worker."""

    tasks: list[T]
    """Admitted and leased to the worker at once, so that admission is the start that the
    rate limit counts (and nothing admitted waits for a free worker)."""
    retry_in: timedelta | None = None
    """When work left waiting may be admitted next without any wake-up: the rate limit's
    window moving on, or a waiting task coming due. None: only room (a task of the queue
    ending, which wakes ``queue_topic``) lets more in."""


@dataclass(frozen=True)
class QueueRecord:
    """A queue as an operator sees it."""

    queue: Queue
    """Its name and declared limits (none for a queue only named by some work)."""
    admitted: int
    """Its workflows open plus its activities running or due (admitted, not finished)."""
    waiting: int
    """Its work waiting for admission."""
    started_in_period: int | None
    """Admissions within the rate limit's period, if it has one."""


def waiting_hint(queue: str) -> str:
    """Why a run waits: what ``describe()`` says of a workflow not yet admitted."""
    return (
        f"waiting for admission to queue {queue!r}: its concurrency or rate limit is "
        "reached (a worker that serves the queue admits it when there is room)"
    )


@runtime_checkable
class QueueLimits(Protocol):
    async def declare_queue(self, queue: Queue) -> Queue | None:
        """Store ``queue``'s limits (replacing any), in one transaction; returns the
        declaration it replaced when that one differed, else None."""
        ...

    async def admit_workflow_tasks(
        self, queue: str, names: Sequence[str], owner: str, lease: timedelta, limit: int
    ) -> Admission[WorkflowTask]:
        """Admit up to ``limit`` of the queue's waiting workflows (of these names, due to
        start), by priority and then by time, as far as its concurrency and rate allow, and
        lease their tasks to ``owner``, in one transaction (concurrent admissions of one
        queue take turns). A queue without limits (any more) admits as many as asked."""
        ...

    async def admit_activity_tasks(
        self, queue: str, names: Sequence[str], owner: str, lease: timedelta, limit: int
    ) -> Admission[ActivityTask]:
        """As ``admit_workflow_tasks``, for the queue's due activity tasks (each lease
        counting an attempt, as a claim's)."""
        ...

    async def list_queues(self) -> list[QueueRecord]:
        """Every queue declared or holding unfinished work, by name."""
        ...


async def declare(backend: object, queues: Iterable[Queue]) -> None:
    """Store each queue's limits, warning where they replace different ones (the latest
    declaration wins). A backend without limits takes only queues that have none.
    Raises InvalidArgument for a limited queue there, BackendUnavailable."""
    for queue in queues:
        if not isinstance(backend, QueueLimits):
            if queue.limited:
                raise InvalidArgument(f"{backend!r} has no queue limits (QueueLimits): {queue!r}")
            continue
        replaced = await backend.declare_queue(queue)
        if replaced is not None:
            log.warning("queue %r was declared as %r; it is now %r", queue.name, replaced, queue)
