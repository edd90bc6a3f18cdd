"""A run's history as an operator reads it: what ran when, and what was pending at a
chosen event. Pure: it works on the events alone, so the step control needs no backend.

History events carry no clock of their own; each is placed at the time of the workflow
task that recorded it (``WorkflowTaskStarted.at``), which is when the workflow saw it: an
activity's bar ends when its outcome reached the workflow, not when its attempt returned.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from tapeflow.backends.reset import boundaries
from tapeflow.history import (
    ActivityCancelled,
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    ChildWorkflowClosed,
    ChildWorkflowScheduled,
    ChildWorkflowStarted,
    ChildWorkflowStartFailed,
    EventReceived,
    EventSent,
    Failure,
    HistoryEvent,
    MarkerRecorded,
    TimerCancelled,
    TimerFired,
    TimerStarted,
    UpdateAccepted,
    UpdateCompleted,
    WorkflowCancelRequested,
    WorkflowExecutionStarted,
    WorkflowTaskStarted,
)

SpanKind = Literal["activity", "timer", "child", "event", "marker", "cancel", "sent", "update"]


@dataclass
class Span:
    """One row of the timeline: a bar for what lasts (activity, timer, child), a tick for
    what happens at once (an event received, a marker)."""

    kind: SpanKind
    label: str
    first: int
    """The event (numbered from 1) that opened it."""
    start: datetime
    seq: int | str | None = None
    last: int | None = None
    """The event that closed it; None while open at the cut."""
    end: datetime | None = None
    outcome: str = "pending"
    attempt: int | None = None
    failure: Failure | None = None
    child: tuple[str, str | None] | None = None
    """A child's workflow id and, once started, run id: its own page."""
    due: datetime | None = None
    """A timer's fire time."""

    @property
    def open(self) -> bool:
        return self.last is None and self.kind in ("activity", "timer", "child")


@dataclass
class Timeline:
    spans: list[Span] = field(default_factory=list)
    start: datetime | None = None
    end: datetime | None = None

    @property
    def pending_activities(self) -> list[Span]:
        return [s for s in self.spans if s.kind == "activity" and s.open]

    @property
    def pending_timers(self) -> list[Span]:
        return [s for s in self.spans if s.kind == "timer" and s.open]

    def placement(self, span: Span) -> tuple[float, float]:
        """Left edge and width of the span's bar, in percent of the timeline."""
        if self.start is None or self.end is None or self.end <= self.start:
            return 0.0, 100.0 if span.open else 0.0
        total = (self.end - self.start).total_seconds()
        left = (span.start - self.start).total_seconds() / total
        right = ((span.end or self.end) - self.start).total_seconds() / total
        left = min(max(left, 0.0), 1.0)
        return round(left * 100, 2), round(max(min(right, 1.0) - left, 0.0) * 100, 2)


def timeline(
    history: Sequence[HistoryEvent], upto: int | None = None, now: datetime | None = None
) -> Timeline:
    """The spans of the first ``upto`` events (all by default); open spans reach ``now`` if
    given (a run still going), else the last event's time."""
    events = history if upto is None else history[: max(upto, 0)]
    built = Timeline()
    by_seq: dict[tuple[str, int | str], Span] = {}
    moment: datetime | None = None
    for number, event in enumerate(events, start=1):
        if isinstance(event, WorkflowTaskStarted):
            moment = event.at
        elif isinstance(event, WorkflowExecutionStarted) and moment is None:
            moment = event.started_at
        if moment is None:
            continue
        built.start = built.start or moment
        built.end = moment
        _apply(built, by_seq, number, event, moment)
    if now is not None and built.end is not None:
        built.end = max(built.end, now)
    return built


def _apply(
    built: Timeline,
    by_seq: dict[tuple[str, int | str], Span],
    number: int,
    event: HistoryEvent,
    moment: datetime,
) -> None:
    def opened(kind: SpanKind, label: str, seq: int | str | None) -> Span:
        span = Span(kind, label, number, moment, seq=seq)
        built.spans.append(span)
        if seq is not None:
            by_seq[(kind, seq)] = span
        return span

    def closed(kind: SpanKind, seq: int | str, outcome: str, end: datetime = moment) -> Span | None:
        span = by_seq.get((kind, seq))
        if span is not None:
            span.last, span.end, span.outcome = number, end, outcome
        return span

    match event:
        case ActivityScheduled(seq=seq, name=name):
            opened("activity", name, seq)
        case ActivityCompleted(seq=seq, attempt=attempt):
            if span := closed("activity", seq, "completed"):
                span.attempt = attempt
        case ActivityFailed(seq=seq, attempt=attempt, failure=failure):
            if span := closed("activity", seq, "failed"):
                span.attempt, span.failure = attempt, failure
        case ActivityCancelled(seq=seq):
            closed("activity", seq, "cancelled")
        case TimerStarted(seq=seq, fire_at=fire_at):
            timer = opened("timer", f"until {fire_at:%H:%M:%S}", seq)
            timer.due, timer.outcome = fire_at, "waiting"
        case TimerFired(seq=seq):
            waited = by_seq.get(("timer", seq))
            due = None if waited is None or waited.due is None else max(waited.due, waited.start)
            closed("timer", seq, "fired", min(due, moment) if due else moment)
        case TimerCancelled(seq=seq):
            closed("timer", seq, "cancelled")
        case ChildWorkflowScheduled(seq=seq, workflow_id=child_id, name=name):
            opened("child", name, seq).child = (child_id, None)
        case ChildWorkflowStarted(seq=seq, workflow_id=child_id, run_id=run_id):
            if started := by_seq.get(("child", seq)):
                started.child, started.outcome = (child_id, run_id), "running"
        case ChildWorkflowStartFailed(seq=seq, failure=failure):
            if span := closed("child", seq, "start failed"):
                span.failure = failure
        case ChildWorkflowClosed(seq=seq, workflow_id=child_id, run_id=run_id, status=status):
            if span := closed("child", seq, status):
                span.child, span.failure = (child_id, run_id), event.failure
        case EventReceived(name=name):
            _tick(opened("event", name, None), moment, "received")
        case EventSent(seq=seq, workflow_id=target, name=name):
            _tick(opened("sent", f"{name} → {target}", None), moment, "sent")
        case WorkflowCancelRequested(reason=reason):
            _tick(opened("cancel", reason or "cancel requested", None), moment, "requested")
        case MarkerRecorded(name="patch", details={"id": str(patch)}):
            _tick(opened("marker", f"patch {patch}", None), moment, "recorded")
        case MarkerRecorded(name=name):
            _tick(opened("marker", name, None), moment, "recorded")
        case UpdateAccepted(update_id=update_id, name=name):
            opened("update", f"update {name}", update_id).outcome = "running"
        case UpdateCompleted(update_id=update_id, failure=failure):
            if span := closed("update", update_id, "failed" if failure else "completed"):
                span.failure = failure
        case _:
            pass


def _tick(span: Span, moment: datetime, outcome: str) -> None:
    span.last, span.end, span.outcome = span.first, moment, outcome


def task_end(history: Sequence[HistoryEvent], number: int) -> int:
    """Where a reset to about event ``number`` can cut (``reset.boundaries``): the end of
    the workflow task holding it, else (the run ended there) the last task's end before."""
    valid = boundaries(history)
    later = [end for end in valid if end >= number]
    return later[0] if later else max(valid, default=len(history))


def describe(event: HistoryEvent) -> str:
    """An event's fields as JSON, for the raw history (shown escaped)."""
    fields = {k: v for k, v in dataclasses.asdict(event).items() if k != "kind"}
    return json.dumps(fields, default=str, ensure_ascii=False)
