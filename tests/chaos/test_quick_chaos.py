"""The quick chaos run, part of every test run: 100 workflows on four worker processes sharing
one database (a SQLite file, or PostgreSQL), ten of them cancelled and five terminated
mid-flight, ten parents of two or three children each and ten that continue as new five
times, a few SIGKILLs, and hard exits at the failpoints; every invariant holds at the end.
The full run is tests/chaos/test_chaos.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos import workload
from tests.chaos.conftest import drop_schemas
from tests.chaos.driver import Plan, run_chaos
from tests.chaos.location import locate


@pytest.mark.timeout(300)
async def test_quick_chaos(backend_url: str, tmp_path: Path) -> None:
    plan = Plan(
        url=backend_url,
        workflows=100,
        rate=8.0,
        log_dir=tmp_path / "logs",
        kill_every=(2.0, 3.0),
        max_kills=4,
        finish_timeout=120.0,
    )
    try:
        report = await run_chaos(f"quick-chaos-{locate(backend_url).kind}", plan)
    finally:
        if backend_url.startswith("postgres"):
            drop_schemas(locate(backend_url).schema)
    print(report.summary())
    assert not report.violations, report.summary()
    figures = report.figures
    assert figures["workflows"] == 100
    assert figures["sigkills"] >= 3
    assert (figures["cancels_asked"], figures["terminates_asked"]) == (10, 5)
    assert figures["workflows_cancelled"] >= 1
    assert figures["workflows_terminated"] >= 1
    assert (figures["parents"], figures["relays"]) == (10, 10)
    assert figures["parents_completed"] >= 8
    assert figures["children_completed"] >= 2 * figures["parents_completed"]
    assert figures["relays_completed"] >= 8
    assert figures["relay_runs"] >= workload.RELAY_RUNS * figures["relays_completed"]
