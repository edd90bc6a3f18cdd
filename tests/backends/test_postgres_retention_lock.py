"""PostgreSQL: deleting closed workflows is one process's job at a time (an advisory lock);
one that finds another at it leaves it the work, and the client's own call waits its turn.
(On SQLite the one writer at a time is the turn-taking: there is nothing to test.)"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import psycopg

import tapeflow
from tapeflow._worker.retention import Retention
from tests.conformance.test_delete_and_retention import _age, _closed, collect


async def test_a_collector_finding_another_at_it_leaves_it_to_that_one(postgres_url: str) -> None:
    async with tapeflow.connect(postgres_url) as backend:
        client = tapeflow.Client(backend)
        async with tapeflow.Worker(backend, workflows=[collect]):
            await _closed(client, "old")
        _age(postgres_url, "old", hours=2)
        base, _, schema = postgres_url.partition("?schema=")
        with psycopg.connect(base, options=f"-c search_path={schema}") as holder:
            holder.execute(
                "SELECT pg_advisory_xact_lock(hashtext('tapeflow.retention.' || %s))", (schema,)
            )
            assert await backend.delete_closed(timedelta(hours=1), 100) is None
            assert await Retention(backend, timedelta(hours=1)).collect() == 0
            waiting = asyncio.create_task(client.delete_closed(timedelta(hours=1)))
            await asyncio.sleep(0.3)
            assert not waiting.done()  # the client's own call waits its turn
        assert await waiting == 1
