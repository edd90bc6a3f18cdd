"""Markers: a decision that only writes history, checked on replay like any other."""

from __future__ import annotations

import re

import pytest

from tapeflow import NonDeterminismError, workflow
from tapeflow._engine.replay import replay_new
from tapeflow.history import MarkerRecorded
from tests.engine.conftest import RunFactory
from tests.engine.harness import WORKFLOW_ID, definition
from tests.scenarios.markers import note, noting


def test_a_marker_is_a_decision_with_its_own_seq(run: RunFactory) -> None:
    live = run(noting)
    decisions = live.start(2)
    assert decisions[0] == MarkerRecorded(seq=1, name="step-0", details={"n": 0})
    assert [d.kind for d in decisions] == ["marker_recorded", "timer_started"]


@workflow.defn(name="noting")
async def noting_otherwise(count: int) -> int:
    note("another-step")
    await workflow.sleep(1)
    return count


def test_replay_checks_the_markers_name(run: RunFactory) -> None:
    live = run(noting)
    live.start(1)
    with pytest.raises(NonDeterminismError, match=re.escape("marker_recorded seq 1 'step-0'")):
        replay_new(definition(noting_otherwise), WORKFLOW_ID, live.history).close()


def test_the_same_code_replays_its_markers(run: RunFactory) -> None:
    live = run(noting)
    live.start(1)
    replay_new(definition(noting), WORKFLOW_ID, live.history).close()
