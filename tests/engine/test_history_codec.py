"""history.encode_events / decode_events: every event kind survives the trip exactly."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from tapeflow import history
from tapeflow.history import (
    ActivityCancelled,
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    ChildWorkflowCancelRequested,
    ChildWorkflowClosed,
    ChildWorkflowScheduled,
    ChildWorkflowStarted,
    ChildWorkflowStartFailed,
    EventDelivered,
    EventDeliveryFailed,
    EventReceived,
    EventSent,
    ExecutionTimeoutReached,
    Failure,
    HistoryEvent,
    MarkerRecorded,
    TerminationRequested,
    TimerCancelled,
    TimerFired,
    TimerStarted,
    UpdateAccepted,
    UpdateCompleted,
    UpdateRejected,
    UpdateRequested,
    WorkflowCancelRequested,
    WorkflowContinuedAsNew,
    WorkflowExecutionCancelled,
    WorkflowExecutionCompleted,
    WorkflowExecutionFailed,
    WorkflowExecutionStarted,
    WorkflowExecutionTerminated,
    WorkflowExecutionTimedOut,
    WorkflowReset,
    WorkflowTaskStarted,
)

TRICKY_TEXT = (
    "ünïcødé ✓ 日本語 🎉 \u2028 \"quotes\" 'single' \\back\\ \t\n\x00 %_ ; DROP TABLE x;--"
)
BIG = 2**63 - 1
PAYLOAD: Any = {
    "max": BIG,
    "min": -(2**63),
    "beyond 53 bits": 2**53 + 1,
    "u64": 2**64 - 1,
    "float": 0.1,
    "tiny": 5e-324,
    "huge": 1.7976931348623157e308,
    "text": TRICKY_TEXT,
    TRICKY_TEXT: [None, True, False, [], {}, [[1, [2, [3]]]]],
    "list": [BIG, -BIG, 0, -0.5],
}
WHEN = datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC)

EVERY_KIND: list[HistoryEvent] = [
    WorkflowTaskStarted(at=WHEN),
    WorkflowExecutionStarted(
        name="subscription ✓", version="v1.2", args=[PAYLOAD, 1], started_at=WHEN
    ),
    ActivityScheduled(seq=1, name="payment", args=[PAYLOAD]),
    ActivityScheduled(
        seq=BIG,
        name=TRICKY_TEXT,
        args=[],
        retry={
            "initial_interval": 1.5,
            "backoff_coefficient": 2.0,
            "maximum_interval": None,
            "maximum_attempts": 3,
        },
    ),
    ActivityCompleted(seq=1, result=PAYLOAD, attempt=7),
    ActivityCompleted(seq=2, result=None, attempt=1),
    ActivityFailed(
        seq=3, failure=Failure("ValueError", TRICKY_TEXT, "Traceback\n  ..."), attempt=2
    ),
    ActivityFailed(seq=4, failure=Failure("E", "", None), attempt=BIG),
    TimerStarted(seq=5, fire_at=datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
    TimerStarted(seq=6, fire_at=datetime(1970, 1, 1, tzinfo=UTC)),
    TimerFired(seq=5),
    TimerCancelled(seq=6),
    MarkerRecorded(seq=7, name="patched:v2", details={"note": TRICKY_TEXT}),
    MarkerRecorded(seq=8, name="bare"),
    EventReceived(name=TRICKY_TEXT, payload=PAYLOAD),
    EventReceived(name="empty", payload=None),
    WorkflowExecutionCompleted(result=PAYLOAD),
    WorkflowExecutionCompleted(result="just a string"),
    WorkflowExecutionFailed(failure=Failure("PayloadError", "bad ✗", "tb")),
    ActivityCancelled(seq=BIG),
    WorkflowCancelRequested(reason=TRICKY_TEXT),
    WorkflowCancelRequested(reason=""),
    WorkflowExecutionCancelled(reason=TRICKY_TEXT),
    WorkflowExecutionTerminated(reason="poison input"),
    WorkflowExecutionTerminated(reason="its parent closed", requested_by="parent"),
    ExecutionTimeoutReached(timeout=0.5),
    WorkflowExecutionTimedOut(timeout=604800.0),
    ChildWorkflowScheduled(seq=9, workflow_id=TRICKY_TEXT, name="ship", args=[PAYLOAD]),
    ChildWorkflowScheduled(
        seq=10,
        workflow_id="c",
        name="bill",
        args=[],
        version="v2",
        execution_timeout=86400.0,
        parent_close_policy="abandon",
    ),
    ChildWorkflowStarted(seq=9, workflow_id=TRICKY_TEXT, run_id="r-1"),
    ChildWorkflowStartFailed(seq=10, workflow_id="c", failure=Failure("WorkflowAlreadyExists", "")),
    ChildWorkflowClosed(seq=9, workflow_id="c", run_id="r-1", status="completed", result=PAYLOAD),
    ChildWorkflowClosed(
        seq=9, workflow_id="c", run_id="r-2", status="failed", failure=Failure("E", TRICKY_TEXT)
    ),
    ChildWorkflowCancelRequested(seq=9, workflow_id="c", reason=TRICKY_TEXT),
    EventSent(seq=11, workflow_id="other", name=TRICKY_TEXT, payload=PAYLOAD),
    EventDelivered(seq=11),
    EventDeliveryFailed(seq=11, failure=Failure("WorkflowNotFound", "no workflow")),
    TerminationRequested(reason=TRICKY_TEXT),
    WorkflowReset(run_id="r-1", event=3, reason=TRICKY_TEXT),
    UpdateRequested(update_id=TRICKY_TEXT, name=TRICKY_TEXT, args=[PAYLOAD]),
    UpdateAccepted(update_id=TRICKY_TEXT, name=TRICKY_TEXT, args=[PAYLOAD]),
    UpdateCompleted(update_id="u-1", name="add", result=PAYLOAD),
    UpdateCompleted(update_id="u-2", name="add", failure=Failure("ValueError", TRICKY_TEXT)),
    WorkflowContinuedAsNew(
        args=[PAYLOAD], run_id="r-3", carried=[EventReceived(name="x", payload=PAYLOAD)]
    ),
]


def test_every_event_kind_is_covered() -> None:
    kinds = {type(event) for event in EVERY_KIND}
    declared = set(history.decision_types()) | {
        WorkflowTaskStarted,
        WorkflowExecutionStarted,
        ActivityCompleted,
        ActivityFailed,
        TimerFired,
        EventReceived,
        WorkflowCancelRequested,
        WorkflowExecutionTerminated,
        ExecutionTimeoutReached,
        WorkflowExecutionTimedOut,
        ChildWorkflowStarted,
        ChildWorkflowStartFailed,
        ChildWorkflowClosed,
        EventDelivered,
        EventDeliveryFailed,
        TerminationRequested,
        WorkflowReset,
        UpdateRequested,
        UpdateAccepted,
    }
    assert kinds == declared


def test_a_list_of_every_kind_round_trips_exactly() -> None:
    text = history.encode_events(EVERY_KIND)
    decoded = history.decode_events(text)
    assert decoded == EVERY_KIND
    assert [type(e) for e in decoded] == [type(e) for e in EVERY_KIND]
    assert history.encode_events(decoded) == text


@pytest.mark.parametrize("event", EVERY_KIND, ids=lambda e: e.kind)
def test_each_event_round_trips_alone(event: HistoryEvent) -> None:
    text = history.encode_event(event)
    assert history.decode_event(text) == event
    assert history.decode_event(text.encode()) == event
    assert json.loads(text)["kind"] == event.kind


def test_64_bit_integers_are_written_as_json_integers_not_floats() -> None:
    text = history.encode_event(ActivityCompleted(seq=1, result=[BIG, -(2**63)], attempt=1))
    assert str(BIG) in text
    assert json.loads(text)["result"] == [BIG, -(2**63)]
    decoded = history.decode_event(text)
    assert isinstance(decoded, ActivityCompleted)
    assert decoded.result[0] == BIG
    assert isinstance(decoded.result[0], int)


def test_floats_that_look_like_integers_stay_floats() -> None:
    decoded = history.decode_event(
        history.encode_event(ActivityCompleted(seq=1, result=[1.0, 2], attempt=1))
    )
    assert isinstance(decoded, ActivityCompleted)
    assert [type(v) for v in decoded.result] == [float, int]


@pytest.mark.parametrize(
    "when",
    [
        WHEN,
        datetime(2024, 5, 1, 12, 0, 0, 1, tzinfo=UTC),
        datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=-11))),
    ],
)
def test_datetimes_keep_their_instant_to_the_microsecond(when: datetime) -> None:
    decoded = history.decode_event(history.encode_event(TimerStarted(seq=1, fire_at=when)))
    assert isinstance(decoded, TimerStarted)
    assert decoded.fire_at == when
    assert decoded.fire_at.utcoffset() == when.utcoffset()
    assert decoded.fire_at.microsecond == when.microsecond


def test_unicode_is_kept_exactly() -> None:
    event = EventReceived(name=TRICKY_TEXT, payload={TRICKY_TEXT: TRICKY_TEXT})
    decoded = history.decode_events(history.encode_events([event]).encode("utf-8"))
    assert decoded == [event]


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValidationError):
        history.decode_event('{"kind": "activity_teleported", "seq": 1}')


def test_a_missing_field_is_refused() -> None:
    with pytest.raises(ValidationError):
        history.decode_event('{"kind": "timer_fired"}')


def test_the_empty_history_round_trips() -> None:
    assert history.decode_events(history.encode_events([])) == []


def test_failure_from_exception_records_type_message_and_traceback() -> None:
    try:
        raise KeyError("missing ✓")
    except KeyError as exc:
        recorded = Failure.from_exception(exc)
    assert recorded.type == "KeyError"
    assert recorded.message == "'missing ✓'"
    assert recorded.traceback is not None
    assert "KeyError" in recorded.traceback


def test_very_long_failure_text_is_cut() -> None:
    recorded = Failure.from_exception(ValueError("x" * (history.MAX_FAILURE_TEXT * 2)))
    assert len(recorded.message) < history.MAX_FAILURE_TEXT + 100
    assert recorded.message.endswith("characters cut]")


@pytest.mark.parametrize(
    "outcome",
    [
        UpdateCompleted(update_id="u-1", name=TRICKY_TEXT, result=PAYLOAD),
        UpdateRejected(update_id="u-2", name="add", failure=Failure("ValueError", TRICKY_TEXT)),
    ],
    ids=lambda o: o.kind,
)
def test_update_outcomes_round_trip(outcome: history.UpdateOutcome) -> None:
    assert history.decode_outcome(history.encode_outcome(outcome)) == outcome
