"""What a workflow task's decisions mean for storage, worked out once for every backend."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from tapeflow.backends.base import ActivityTask, EagerActivities, TaskKind
from tapeflow.backends.wakeups import finished_topic, work_topic
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


def commit_topics(
    workflow_id: str,
    workflow_name: str,
    plan: CommitPlan,
    eager: EagerActivities | None = None,
    *,
    wake_workflow: bool = True,
) -> list[str]:
    """Who to wake once a workflow task commits: the pollers of new activities (but those
    the committing worker takes eagerly), and either the result waiters (it ended) or the
    workflow's pollers (new timers to wait for, and events that arrived while the task was
    held are claimable again), unless the backend saw that the workflow's inbox is empty
    (``wake_workflow``)."""
    taken = eager.seqs if eager else frozenset()
    topics = sorted(
        {work_topic(TaskKind.ACTIVITY, a.name) for a in plan.activities if a.seq not in taken}
    )
    if plan.ending is not None:
        return [finished_topic(workflow_id)]
    if wake_workflow:
        topics.append(work_topic(TaskKind.WORKFLOW, workflow_name))
    return topics


def eager_task(
    workflow_id: str, workflow_name: str, activity: ActivityScheduled, task_id: int
) -> ActivityTask:
    """The activity task a commit leased to its own worker (attempt 1, first lease)."""
    return ActivityTask(
        id=task_id,
        workflow_id=workflow_id,
        workflow_name=workflow_name,
        seq=activity.seq,
        name=activity.name,
        args=activity.args,
        retry=activity.retry,
        attempt=1,
        lease_token=1,
    )


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
