"""PostgreSQL going away mid-run: connections killed, or the server restarted. Workers log,
back off, reconnect and go on; every workflow completes once, with the right result."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

import tapeflow
from tapeflow import activity, workflow
from tapeflow.history import ActivityCompleted, ActivityFailed
from tests.conformance.plugin import unavailable
from tests.conftest import POSTGRES_URL

STEPS = 5


@activity.defn
async def slow_step(index: int, number: int) -> int:
    await asyncio.sleep(0.05)
    return index * 10 + number


@workflow.defn
async def stepping(index: int) -> int:
    total = 0
    for number in range(STEPS):
        total += await workflow.execute_activity(slow_step, index, number)
    return total


@pytest.fixture
def outage_url(postgres_url: str) -> str:
    """A schema of its own, and an application name that finds this test's connections."""
    return f"{postgres_url}&application_name=tapeflow-{postgres_url.rpartition('=')[2]}"


async def _run_through(url: str, outage: Callable[[], Awaitable[None]], count: int = 40) -> None:
    async with tapeflow.connect(url) as backend:
        client = tapeflow.Client(backend)
        async with tapeflow.Worker(
            backend,
            workflows=[stepping],
            activities=[slow_step],
            max_concurrent_activities=10,
            lease_duration=timedelta(seconds=3),
            poll_interval=timedelta(milliseconds=200),
        ):
            handles = [
                await client.start_workflow(stepping, index, id=f"outage-{index}")
                for index in range(count)
            ]
            await asyncio.sleep(0.5)  # mid-run
            await outage()
            results = await asyncio.gather(*(h.result(timeout=90) for h in handles))
        assert results == [sum(index * 10 + n for n in range(STEPS)) for index in range(count)]
        for handle in handles:
            history = await backend.load_history(handle.id)
            outcomes = [e.seq for e in history if isinstance(e, ActivityCompleted | ActivityFailed)]
            assert sorted(outcomes) == list(range(1, STEPS + 1)), handle.id
            assert [e.kind for e in history].count("workflow_completed") == 1


async def test_connections_killed_mid_run(outage_url: str) -> None:
    application = outage_url.rpartition("application_name=")[2]

    async def kill_connections() -> None:
        async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
            cursor = await conn.execute(
                """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                   WHERE application_name = %s""",
                (application,),
            )
            row = await cursor.fetchone()
        assert row is not None
        assert row[0] >= 2  # the pool's connections and the listener

    await _run_through(outage_url, kill_connections)


@pytest.fixture
def cluster_version() -> str:
    """The local cluster's version, for pg_ctlcluster."""
    clusters = Path("/etc/postgresql")
    if shutil.which("pg_ctlcluster") is None or not clusters.is_dir():
        unavailable("a local cluster", "restarting postgres needs pg_ctlcluster")
    return sorted(p.name for p in clusters.iterdir())[-1]


@pytest.mark.serial  # every other test's PostgreSQL goes away too
async def test_postgres_restarted_mid_run(outage_url: str, cluster_version: str) -> None:
    version = cluster_version

    async def restart() -> None:
        process = await asyncio.create_subprocess_exec(
            "pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart",
            "-m", "fast",
        )  # fmt: skip
        assert await process.wait() == 0

    await _run_through(outage_url, restart)
