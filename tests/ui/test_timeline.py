"""The timeline and the pending work at an event, from hand-built histories (no browser)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import tapeflow.ui
from tapeflow.errors import InvalidArgument
from tapeflow.history import (
    ActivityFailed,
    ActivityScheduled,
    ChildWorkflowScheduled,
    ChildWorkflowStarted,
    EventReceived,
    Failure,
    HistoryEvent,
    MarkerRecorded,
    TimerFired,
    TimerStarted,
    UpdateAccepted,
    UpdateCompleted,
    WorkflowExecutionStarted,
    WorkflowTaskStarted,
)
from tapeflow.ui._timeline import task_end, timeline

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


HISTORY: list[HistoryEvent] = [
    WorkflowTaskStarted(at(0)),  # 1
    WorkflowExecutionStarted("order", "", [], at(0)),
    ActivityScheduled(1, "charge", [42]),
    TimerStarted(2, at(10)),
    ChildWorkflowScheduled(3, "order-receipt", "receipt", []),  # 5
    WorkflowTaskStarted(at(4)),
    ChildWorkflowStarted(3, "order-receipt", "run-1"),
    ActivityFailed(1, Failure("RuntimeError", "declined"), attempt=3),
    WorkflowTaskStarted(at(10)),
    TimerFired(2),  # 10
    EventReceived("approve", "ops"),
]


def test_pending_work_at_an_event_is_what_had_no_outcome_yet() -> None:
    early = timeline(HISTORY, upto=5)
    assert [s.label for s in early.pending_activities] == ["charge"]
    assert [s.seq for s in early.pending_timers] == [2]

    late = timeline(HISTORY)
    assert late.pending_activities == []
    assert late.pending_timers == []
    charge = next(s for s in late.spans if s.kind == "activity")
    assert (charge.outcome, charge.attempt, charge.first, charge.last) == ("failed", 3, 3, 8)
    assert charge.failure is not None
    assert charge.failure.message == "declined"
    child = next(s for s in late.spans if s.kind == "child")
    assert child.child == ("order-receipt", "run-1")
    assert child.open


def test_bars_are_placed_by_the_time_of_the_task_that_saw_each_event() -> None:
    shown = timeline(HISTORY)
    charge, timer = shown.spans[0], shown.spans[1]
    assert shown.placement(charge) == (0.0, 40.0)  # scheduled at 0 s, its failure seen at 4 s
    assert shown.placement(timer) == (0.0, 100.0)  # due at 10 s, the end


def test_bound_beyond_loopback_the_ui_needs_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAPEFLOW_UI_TOKEN", raising=False)
    with pytest.raises(InvalidArgument, match="token"):
        tapeflow.ui.serve("sqlite://", host="0.0.0.0")


def test_a_reset_cuts_at_the_end_of_the_task_holding_the_event() -> None:
    assert [task_end(HISTORY, n) for n in (1, 5, 6, 8, 9, 11)] == [5, 5, 8, 8, 11, 11]


def test_patches_are_named_and_updates_are_spans_with_their_outcome() -> None:
    history: list[HistoryEvent] = [
        WorkflowTaskStarted(at(0)),
        WorkflowExecutionStarted("checkout", "", [], at(0)),
        MarkerRecorded(1, "patch", {"id": "tax-v2"}),
        UpdateAccepted("u-1", "add", ["apple"]),
        UpdateAccepted("u-2", "add", [""]),
        WorkflowTaskStarted(at(2)),
        UpdateCompleted("u-1", "add", result=1),
        UpdateCompleted("u-2", "add", failure=Failure("ValueError", "empty item")),
    ]
    spans = timeline(history).spans
    assert [s.label for s in spans if s.kind == "marker"] == ["patch tax-v2"]
    updates = [s for s in spans if s.kind == "update"]
    assert [(s.label, s.outcome, s.first, s.last) for s in updates] == [
        ("update add", "completed", 4, 7),
        ("update add", "failed", 5, 8),
    ]
    assert updates[1].failure is not None
    assert updates[1].failure.message == "empty item"
