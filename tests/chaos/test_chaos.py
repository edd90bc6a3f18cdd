"""The full chaos run (marker ``chaos``; ``./scripts/test -m chaos -s``): 1,000 workflows of
ten activities, a timer and an external event each, one in ten cancelled mid-flight (its
cleanup activity runs) and one in thirty terminated, on four worker processes sharing one
PostgreSQL; a random worker SIGKILLed every 2-5 s and replaced; half the workers, and the
client, running with a hard exit at a failpoint, every failpoint in turn. Every invariant of
tests/chaos/checks.py holds at the end; the figures are printed (and saved as JSON into
$TAPEFLOW_CHAOS_REPORT_DIR if set).

$TAPEFLOW_CHAOS_WORKFLOWS and $TAPEFLOW_CHAOS_RATE (starts per second, default 10) resize it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos import workload
from tests.chaos.driver import Plan, run_chaos

WORKFLOWS = int(os.environ.get("TAPEFLOW_CHAOS_WORKFLOWS", "1000"))
RATE = float(os.environ.get("TAPEFLOW_CHAOS_RATE", "10"))


@pytest.mark.chaos
@pytest.mark.timeout(WORKFLOWS / RATE + 900)
async def test_full_chaos_on_postgres(chaos_postgres_url: str, tmp_path: Path) -> None:
    plan = Plan(
        url=chaos_postgres_url,
        workflows=WORKFLOWS,
        rate=RATE,
        log_dir=tmp_path / "logs",
        kill_every=(2.0, 5.0),
        finish_timeout=600.0,
    )
    report = await run_chaos("full-chaos-postgres", plan)
    print(report.summary())
    assert not report.violations, report.summary()
    figures = report.figures
    assert figures["workflows"] == WORKFLOWS
    poisoned = sum(map(workload.poisoned, range(WORKFLOWS)))
    assert figures["poisoned_workflows"] == poisoned
    cancels = sum(map(workload.cancelled, range(WORKFLOWS)))
    terminates = sum(map(workload.terminated, range(WORKFLOWS)))
    assert (figures["cancels_asked"], figures["terminates_asked"]) == (cancels, terminates)
    assert figures["workflows_cancelled"] >= cancels // 2  # most cancels land mid-flight
    # Of the terminates, half follow a cancel, which mostly ends the workflow first.
    assert figures["workflows_terminated"] >= terminates // 4
    stopped = figures["workflows_cancelled"] + figures["workflows_terminated"]
    assert figures["workflows_completed"] == WORKFLOWS - stopped
    # A completed workflow scheduled its ten steps (a poisoned one its one activity), a
    # stopped one fewer, and its cleanup if it got that far.
    steps = (figures["workflows_completed"] - poisoned) * workload.ACTIVITIES + poisoned
    cleanups = figures["cleanup_activities"]
    assert cleanups >= figures["workflows_cancelled"]
    assert (
        steps + cleanups
        <= figures["activities"]
        <= steps + stopped * workload.ACTIVITIES + cleanups
    )
    assert figures["sigkills"] >= 10
    assert figures["failpoint_exits_workers"] >= 1
    assert figures["tasks_held_by_killed_workers"] >= 10  # takeovers were measured
