"""What a workflow task's decisions mean for storage, worked out once for every backend."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from tapeflow.backends._wakeups import finished_topic, work_topic
from tapeflow.backends.base import TaskKind
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


def commit_topics(workflow_id: str, workflow_name: str, plan: CommitPlan) -> list[str]:
    """Who to wake once a workflow task commits: the new activities' pollers, and either the
    result waiters (it ended) or the workflow's pollers (new timers to wait for, and events
    that arrived while the task was held are claimable again)."""
    topics = sorted({work_topic(TaskKind.ACTIVITY, a.name) for a in plan.activities})
    if plan.ending is not None:
        return [finished_topic(workflow_id)]
    return [*topics, work_topic(TaskKind.WORKFLOW, workflow_name)]


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
