"""The soak run (marker ``soak``; ``./scripts/test -m soak -s``): four worker processes on
PostgreSQL, ten minutes at 80% of the highest rate the machine sustains (measured first by a
ramp), sampling worker memory, file descriptors, database connections, backlog and latency
every 10 s; the samples and the memory growth per minute are printed.

$TAPEFLOW_SOAK_SECONDS (default 600) sets the duration, $TAPEFLOW_SOAK_RATE (workflows per
second) skips the ramp and soaks at that rate.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos.soak import Soak

SECONDS = float(os.environ.get("TAPEFLOW_SOAK_SECONDS", "600"))
RATE = float(os.environ["TAPEFLOW_SOAK_RATE"]) if os.environ.get("TAPEFLOW_SOAK_RATE") else None
POOL_MAX = 10
"""Connections a PostgreSQL backend's pool opens at most (plus one listening)."""


@pytest.mark.soak
@pytest.mark.timeout(SECONDS + 1800)
async def test_soak_on_postgres(chaos_postgres_url: str, tmp_path: Path) -> None:
    soak = Soak(chaos_postgres_url, tmp_path / "logs", SECONDS, RATE)
    try:
        report, result = await soak.run()
    finally:
        await soak.close()
    report.save()
    print(report.summary())
    assert not report.violations, report.summary()
    workers = soak.plan.workers
    assert report.figures["db_connections_max"] <= workers * (POOL_MAX + 1)
    # Descriptors do not leak: the last sample has at most a few more than the second.
    if len(result.samples) >= 3:
        second, last = result.samples[1], result.samples[-1]
        for pid, count in last.fds.items():
            assert count <= second.fds.get(pid, count) + 10, (pid, second.fds, last.fds)
