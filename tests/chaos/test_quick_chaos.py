"""The quick chaos run, part of every test run: 100 workflows on four worker processes sharing
one database (a SQLite file, or PostgreSQL), ten of them cancelled and four terminated
mid-flight, a few SIGKILLs, and hard exits at the failpoints; every invariant holds at the
end. The full run is tests/chaos/test_chaos.py."""

from __future__ import annotations

from pathlib import Path

import pytest

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
    assert (figures["cancels_asked"], figures["terminates_asked"]) == (10, 4)
    assert figures["workflows_cancelled"] >= 1
    assert figures["workflows_terminated"] >= 1
