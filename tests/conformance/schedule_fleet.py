"""A worker process for the schedule fleet test: it runs ``stamp``, and fires its schedules.

Run one with ``python -m tests.conformance.schedule_fleet URL``; with ``die-in-firing`` it
exits (code ``DIED``) inside its first firing of a due time, once the workflows are written
and before the transaction commits: what a worker killed at the worst moment leaves.
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta
from typing import Any

import tapeflow
from tapeflow import workflow
from tapeflow.backends.postgres.backend import PostgresBackend
from tapeflow.backends.sqlite import backend as sqlite_backend

DIED = 87


@workflow.defn
async def stamp(label: str) -> str:
    return f"stamped {label}"


def die_in_firing() -> None:
    """Make the first firing that starts a workflow exit the process before its commit."""
    stores = sqlite_backend._apply_schedule_write
    stored = PostgresBackend._store_schedules

    def sqlite_store(*args: Any) -> Any:
        done = stores(*args)
        if done[0]:
            os._exit(DIED)
        return done

    async def postgres_store(self: PostgresBackend, *args: Any) -> Any:
        done = await stored(self, *args)
        if done[0]:
            os._exit(DIED)
        return done

    sqlite_backend._apply_schedule_write = sqlite_store  # type: ignore[assignment]
    PostgresBackend._store_schedules = postgres_store  # type: ignore[method-assign,assignment]


async def _serve(url: str) -> None:
    async with tapeflow.connect(url) as backend:
        worker = tapeflow.Worker(
            backend,
            workflows=[stamp],
            lease_duration=timedelta(seconds=2),
            poll_interval=timedelta(milliseconds=50),
            shutdown_grace=timedelta(seconds=2),
        )
        await worker.run()


if __name__ == "__main__":
    if sys.argv[2:] == ["die-in-firing"]:
        die_in_firing()
    asyncio.run(_serve(sys.argv[1]))
