"""What a workflow task's decisions mean for storage, worked out once for every backend."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from tapeflow.history import (
    ActivityScheduled,
    Failure,
    HistoryEvent,
    JSONValue,
    TimerCancelled,
    TimerFired,
    TimerStarted,
    WorkflowExecutionCompleted,
    WorkflowExecutionFailed,
)


@dataclass(frozen=True)
class Ending:
    completed: bool
    result: JSONValue
    failure: Failure | None


@dataclass
class CommitPlan:
    activities: list[ActivityScheduled] = field(default_factory=list)
    timers: list[tuple[int, datetime, TimerFired]] = field(default_factory=list)
    """(seq, due time, the event to deliver then)."""
    cancelled_timers: list[int] = field(default_factory=list)
    ending: Ending | None = None


def plan_commit(events: Sequence[HistoryEvent]) -> CommitPlan:
    plan = CommitPlan()
    for event in events:
        match event:
            case ActivityScheduled():
                plan.activities.append(event)
            case TimerStarted(seq=seq, fire_at=fire_at):
                plan.timers.append((seq, fire_at, TimerFired(seq=seq)))
            case TimerCancelled(seq=seq):
                plan.cancelled_timers.append(seq)
            case WorkflowExecutionCompleted(result=result):
                plan.ending = Ending(True, result, None)
            case WorkflowExecutionFailed(failure=failure):
                plan.ending = Ending(False, None, failure)
    return plan
