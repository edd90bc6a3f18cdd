"""``tapeflow queues``: each queue's limits, and its work admitted and waiting."""

from __future__ import annotations

from typing import Any

from tapeflow.backends.queue_limits import QueueLimits, QueueRecord
from tapeflow.cli._backend import opened
from tapeflow.cli._output import print_json, print_table
from tapeflow.cli._params import Json, Url
from tapeflow.cli._run import NotAvailable, run

COLUMNS = ("queue", "concurrency", "rate limit", "admitted", "waiting", "started in period")


def queues(url: Url = None, json_: Json = False) -> None:
    """List the queues declared or holding work (the default queue has no limits and is
    left out): their limits, how much of their work holds a place, and how much waits."""

    async def work() -> None:
        async with opened(url) as backend:
            if not isinstance(backend, QueueLimits):
                raise NotAvailable("queues", "queue limits (QueueLimits)")
            found = await backend.list_queues()
        if json_:
            print_json([queue_json(record) for record in found])
        else:
            print_table(COLUMNS, map(_row, found))

    run(work())


def queue_json(record: QueueRecord) -> dict[str, Any]:
    rate = record.queue.rate_limit
    return {
        "name": record.queue.name,
        "concurrency": record.queue.concurrency,
        "rate_limit": None
        if rate is None
        else {"count": rate[0], "seconds": rate[1].total_seconds()},
        "admitted": record.admitted,
        "waiting": record.waiting,
        "started_in_period": record.started_in_period,
    }


def _row(record: QueueRecord) -> tuple[object, ...]:
    rate = record.queue.rate_limit
    return (
        record.queue.name,
        record.queue.concurrency,
        None if rate is None else f"{rate[0]} per {rate[1]}",
        record.admitted,
        record.waiting,
        record.started_in_period,
    )
