"""The full chaos run (marker ``chaos``; ``./scripts/test -m chaos -s``): 1,000 workflows,
most of ten activities, a timer and an external event each, one in ten cancelled mid-flight
(its cleanup activity runs) and one in twenty terminated; one in ten a parent of two or three
child workflows, one in ten continuing as new through five runs while its events arrive; on
four worker processes sharing one PostgreSQL; a random worker SIGKILLed every 2-5 s and
replaced; half the workers, and the client, running with a hard exit at a failpoint, every
failpoint in turn. Every invariant of tests/chaos/checks.py holds at the end; the figures
are printed (and saved as JSON into $TAPEFLOW_CHAOS_REPORT_DIR if set).

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
    # A completed workflow scheduled its ten steps (a poisoned one its one activity, a child
    # its three, a relay one a run), a stopped one fewer, and its cleanup if it got that far.
    composed = figures["parents_completed"] + figures["relays_completed"]
    plain = figures["workflows_completed"] - poisoned - composed
    steps = (
        plain * workload.ACTIVITIES
        + poisoned
        + figures["children_completed"] * workload.CHILD_STEPS
        + figures["relays_completed"] * workload.RELAY_RUNS
    )
    cleanups = figures["cleanup_activities"]
    assert cleanups >= figures["workflows_cancelled"]
    stopped_steps = (
        stopped * workload.ACTIVITIES
        + figures["children_terminated_with_parent"] * workload.CHILD_STEPS
    )
    assert steps + cleanups <= figures["activities"] <= steps + stopped_steps + cleanups
    parents, relays = WORKFLOWS // workload.COMPOSE_EVERY, WORKFLOWS // workload.COMPOSE_EVERY
    assert (figures["parents"], figures["relays"]) == (parents, relays)
    assert figures["parents_terminated"] >= 1  # some mid-flight: their children with them
    assert figures["children_completed"] >= 2 * figures["parents_completed"]
    assert figures["relay_runs"] >= workload.RELAY_RUNS * figures["relays_completed"]
    assert figures["relay_events_carried"] >= 1  # events that came early crossed a run
    assert figures["sigkills"] >= 10
    assert figures["failpoint_exits_workers"] >= 1
    assert figures["tasks_held_by_killed_workers"] >= 10  # takeovers were measured
