"""PostgreSQL taken away mid-run (marker ``chaos``): restarted with an immediate and with a
fast shutdown, stopped for 5 s and for 30 s, and the workers' connections killed at random.
The four worker processes never exit, commit again within 10 s of the database's return
(each of them, from the ledger), and every invariant of the chaos run holds.

They restart the local cluster that serves $TAPEFLOW_TEST_POSTGRES_URL (found by its port
with pg_lsclusters): anything else using that cluster sees the restarts too, so when others
share the machine point the URL at a cluster of its own, e.g.
``pg_createcluster 15 chaos -p 5433 --start`` and
``TAPEFLOW_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5433/test``.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.chaos.driver import Disruption, Outage, Plan, Probe, run_chaos
from tests.chaos.location import locate
from tests.conformance.plugin import unavailable
from tests.conftest import POSTGRES_URL


def cluster_of(url: str) -> tuple[str, str]:
    """(version, name) of the local pg_ctlcluster cluster listening on the URL's port."""
    if shutil.which("pg_lsclusters") is None:
        unavailable("a local cluster", "restarting PostgreSQL needs pg_ctlcluster")
    port = str(urlsplit(url).port or 5432)
    listing = subprocess.run(
        ["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=True
    ).stdout
    for line in listing.splitlines():
        version, name, cluster_port, *_ = line.split()
        if cluster_port == port:
            return version, name
    unavailable("a local cluster", f"no local cluster listens on port {port}")


async def pg_ctl(cluster: tuple[str, str], *args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        "pg_ctlcluster", "--skip-systemctl-redirect", *cluster, *args
    )
    assert await process.wait() == 0, f"pg_ctlcluster {args} failed"


def restart(cluster: tuple[str, str], mode: str) -> Callable[[Probe], Awaitable[Disruption]]:
    async def act(probe: Probe) -> Disruption:
        down = time.time()
        await pg_ctl(cluster, "restart", "-m", mode)
        return Disruption(down, await probe.until_reachable())

    return act


def stop_for(
    cluster: tuple[str, str], seconds: float, mode: str
) -> Callable[[Probe], Awaitable[Disruption]]:
    async def act(probe: Probe) -> Disruption:
        down = time.time()
        await pg_ctl(cluster, "stop", "-m", mode)
        await asyncio.sleep(seconds)
        await pg_ctl(cluster, "start")
        return Disruption(down, await probe.until_reachable())

    return act


def kill_connections(application_name: str, times: int) -> Callable[[Probe], Awaitable[Disruption]]:
    """pg_terminate_backend on every connection of the workers (and the client), every
    2-4 s; after each, how long until some worker commits again."""

    async def act(probe: Probe) -> Disruption:
        chance = random.Random(7)
        first = time.time()
        killed: list[int] = []
        resumes: list[float] = []
        for _ in range(times):
            before = await probe.run(lambda i: i.progress())
            at = time.time()
            killed.append(await probe.run(lambda i: i.terminate(application_name)))
            while time.time() < at + 30:
                if await probe.run(lambda i: i.progress()) > before:
                    resumes.append(time.time() - at)
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(max(0.0, at + chance.uniform(2.0, 4.0) - time.time()))
        return Disruption(
            first,
            time.time(),
            excused=False,  # connections come back at once: no task may wait longer
            figures={
                "terminations": times,
                "connections_killed": sum(killed),
                "commit_after_kill_max_s": max(resumes, default=None),
                "kills_followed_by_a_commit": len(resumes),
            },
        )

    return act


OUTAGES = {
    "restart_immediate": lambda cluster, app: restart(cluster, "immediate"),
    "restart_fast": lambda cluster, app: restart(cluster, "fast"),
    "down_5s": lambda cluster, app: stop_for(cluster, 5, "fast"),
    "down_30s": lambda cluster, app: stop_for(cluster, 30, "immediate"),
    "connections_killed": lambda cluster, app: kill_connections(app, 8),
}


@pytest.mark.chaos
@pytest.mark.timeout(900)
@pytest.mark.parametrize("outage", list(OUTAGES))
async def test_workers_ride_out_postgres_going_away(
    outage: str, chaos_postgres_url: str, tmp_path: Path
) -> None:
    cluster = cluster_of(POSTGRES_URL)
    application = locate(chaos_postgres_url).application_name
    assert application is not None
    plan = Plan(
        url=chaos_postgres_url,
        workflows=300,
        rate=8.0,
        log_dir=tmp_path / "logs",
        kill_every=None,
        worker_failpoints=(),
        client_failpoints=(),
        outages=[Outage(outage, 10.0, OUTAGES[outage](cluster, application))],
        finish_timeout=300.0,
    )
    report = await run_chaos(f"postgres-{outage.replace('_', '-')}", plan)
    print(report.summary())
    assert not report.violations, report.summary()
    assert report.figures["workflows"] == 300
