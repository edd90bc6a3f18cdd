"""A workflow task's decisions as one plan of plain writes, worked out once, in Python.

The engine decides; ``plan_commit`` turns what it decided into rows to write; a backend
stores those rows without knowing which decision asked for them. So a new kind of decision
is engine and plan code only: no SQL, no backend-specific code.

How every backend stores a ``CommitPlan`` for a run's task, in one transaction:

1. Fenced: the task's lease must be held (its token, not expired) and the run's history
   still ``task.history_length`` long; else LeaseLost, and nothing is written.
2. If the plan has an ``ending`` decided by code (``by_code``) and the run's inbox holds a
   row that is not a timer and not among ``consumed``: UnseenEvents, and nothing is
   written. (An ending imposed from outside, a terminate, drops what is pending.)
3. The ``consumed`` inbox rows of the run are deleted; ``history`` is appended, numbered
   from ``task.history_length + 1``.
4. ``inbox`` rows are inserted: into this run's inbox, or, for a row naming another
   ``workflow_id``, into that workflow's latest run if it is unfinished (else the row is
   dropped; the plan's maker must not rely on it), never visible before that run's start
   (as ``send_event``).
5. ``activities`` are inserted as activity tasks, due now; the run's activity tasks whose
   seqs are in ``cancelled_activities`` are deleted, and so are its inbox rows that are
   timers with seqs in ``cancelled_timers``.
6. With an ``ending``, the run takes its status, result or failure, its end time and (when
   the ending has them) the stop's ``reason`` and ``requested_by``, and
   its workflow task, activity tasks and inbox are deleted; its own new inbox rows and
   activity tasks (steps 4 and 5) are not written at all, and none is taken. Without one, the run is
   running and its task released (failures and last error cleared).
7. ``workflows`` are created, each as the next run of its id (as ``create_workflow`` makes
   a first one), unless that id has an unfinished run (after step 6: the run that ends here
   may be continued by a new run of its own id).
8. Wake-ups (``commit_topics``) go to the pollers of the new activities, the pollers of the
   workflows written to or created, and the run's own pollers if its inbox is not empty
   (events that came while the task was held, or timers), or its result waiters if it ended.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from tapeflow.backends._rows import FAILURE, json_text, timeouts_of
from tapeflow.backends.base import (
    ActivityTask,
    ActivityTimeouts,
    NewWorkflow,
    TaskKind,
    WorkflowStatus,
)
from tapeflow.backends.wakeups import finished_topic, work_topic
from tapeflow.history import (
    ActivityCancelled,
    ActivityScheduled,
    Failure,
    HistoryEvent,
    JSONValue,
    TimerCancelled,
    TimerFired,
    TimerStarted,
    WorkflowExecutionCancelled,
    WorkflowExecutionCompleted,
    WorkflowExecutionFailed,
    WorkflowExecutionTerminated,
    WorkflowExecutionTimedOut,
    WorkflowTaskStarted,
    encode_event,
)


class OfRun(Protocol):
    """What names the run a plan is for: a workflow task, or the activity task whose
    outcome a run-ahead plan is committed with."""

    @property
    def workflow_id(self) -> str: ...

    @property
    def run_id(self) -> str: ...

    @property
    def workflow_name(self) -> str: ...


@dataclass(frozen=True)
class NewActivity:
    seq: int
    name: str
    args: str
    """JSON text: the encoded arguments."""
    retry: str | None
    """JSON text: the activity's own retry policy, if any."""
    timeouts: str | None = None
    """JSON text of its ``ActivityTimeouts``, if it has any."""


@dataclass(frozen=True)
class NewInboxEvent:
    event: str
    """An encoded ``Incoming`` event."""
    visible_at: datetime | None = None
    """When a task may see it; None: now, by the backend's clock."""
    timer_seq: int | None = None
    """Set for a timer: dropped by ``cancelled_timers``, and not an unseen event (step 2)."""
    workflow_id: str | None = None
    """Another workflow's (its latest run's) inbox; None: this run's."""


@dataclass(frozen=True)
class Ending:
    status: WorkflowStatus
    result: str | None
    """JSON text, when completed."""
    failure: str | None
    """JSON text of a ``Failure``, when failed (cancelled, terminated, timed out too)."""
    by_code: bool = True
    """Decided by the workflow's code, which must have seen every event (step 2)."""
    reason: str | None = None
    """The stop's reason, when the ending sets it (a terminate; a cancel's was set when
    it was asked)."""
    requested_by: str | None = None


@dataclass(frozen=True)
class CommitPlan:
    history: tuple[str, ...] = ()
    """Encoded events to append."""
    consumed: tuple[int, ...] = ()
    """Ids of this run's inbox rows now in history."""
    inbox: tuple[NewInboxEvent, ...] = ()
    activities: tuple[NewActivity, ...] = ()
    cancelled_activities: tuple[int, ...] = ()
    cancelled_timers: tuple[int, ...] = ()
    workflows: tuple[NewWorkflow, ...] = ()
    ending: Ending | None = None

    def as_json(self) -> dict[str, JSONValue]:
        """The plan as one JSON document (times as ISO 8601 text), for a backend that
        hands it to the database whole. (Written out: ``dataclasses.asdict`` copies every
        value, at twice the cost of the rest of a commit's Python.)"""
        return {
            "history": self.history,
            "consumed": self.consumed,
            "inbox": [
                {
                    "event": row.event,
                    "visible_at": _iso(row.visible_at),
                    "timer_seq": row.timer_seq,
                    "workflow_id": row.workflow_id,
                }
                for row in self.inbox
            ],
            "activities": [
                {
                    "seq": a.seq,
                    "name": a.name,
                    "args": a.args,
                    "retry": a.retry,
                    "timeouts": a.timeouts,
                }
                for a in self.activities
            ],
            "cancelled_activities": self.cancelled_activities,
            "cancelled_timers": self.cancelled_timers,
            "workflows": [
                {
                    "id": new.id,
                    "run_id": new.run_id,
                    "name": new.name,
                    "version": new.version,
                    "args": json_text(new.args),
                    "start_at": _iso(new.start_at),
                    "execution_timeout": _seconds(new.execution_timeout),
                }
                for new in self.workflows
            ],
            "ending": None
            if self.ending is None
            else {
                "status": self.ending.status.value,
                "result": self.ending.result,
                "failure": self.ending.failure,
                "by_code": self.ending.by_code,
                "reason": self.ending.reason,
                "requested_by": self.ending.requested_by,
            },
        }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _seconds(duration: timedelta | None) -> float | None:
    return None if duration is None else duration.total_seconds()


def plan_commit(events: Sequence[HistoryEvent], consumed: Iterable[int] = ()) -> CommitPlan:
    """The writes that a task appending ``events`` (its start, what it consumed, then its
    decisions) makes, having consumed the inbox rows ``consumed``."""
    activities: list[NewActivity] = []
    inbox: list[NewInboxEvent] = []
    cancelled_activities: list[int] = []
    cancelled_timers: list[int] = []
    ending: Ending | None = None
    at: datetime | None = None
    for event in events:
        match event:
            case WorkflowTaskStarted(at=started):
                at = started
            case ActivityScheduled(seq=seq, name=name, args=args, retry=retry):
                retry_text = None if retry is None else json_text(retry)
                timeouts = _timeouts(event, at)
                activities.append(NewActivity(seq, name, json_text(args), retry_text, timeouts))
            case ActivityCancelled(seq=seq):
                cancelled_activities.append(seq)
            case TimerStarted(seq=seq, fire_at=fire_at):
                fired = encode_event(TimerFired(seq=seq))
                inbox.append(NewInboxEvent(fired, fire_at, timer_seq=seq))
            case TimerCancelled(seq=seq):
                cancelled_timers.append(seq)
            case WorkflowExecutionCompleted(result=result):
                ending = Ending(WorkflowStatus.COMPLETED, json_text(result), None)
            case WorkflowExecutionFailed(failure=failure):
                ending = _failed(WorkflowStatus.FAILED, failure)
            case WorkflowExecutionCancelled(reason=reason):
                ending = _failed(WorkflowStatus.CANCELLED, Failure("CancelledError", reason))
            case WorkflowExecutionTerminated(reason=reason):
                ending = _failed(
                    WorkflowStatus.TERMINATED,
                    Failure("Terminated", reason),
                    reason=reason,
                    requested_by="client",
                )
            case WorkflowExecutionTimedOut(timeout=timeout):
                why = f"the workflow ran past its execution_timeout of {timeout:g}s"
                ending = _failed(
                    WorkflowStatus.TIMED_OUT,
                    Failure("TimeoutError", why),
                    reason=why,
                    requested_by="timeout",
                )
    dropped = set(cancelled_activities)  # scheduled and cancelled at once: never written
    return CommitPlan(
        history=tuple(encode_event(event) for event in events),
        consumed=tuple(consumed),
        inbox=tuple(inbox),
        activities=tuple(a for a in activities if a.seq not in dropped),
        cancelled_activities=tuple(cancelled_activities),
        cancelled_timers=tuple(cancelled_timers),
        ending=ending,
    )


def _timeouts(scheduled: ActivityScheduled, at: datetime | None) -> str | None:
    """The activity's timeouts as its task keeps them, the schedule-to-close deadline
    counted from ``at``, the time of the workflow task that scheduled it."""
    limits = (
        scheduled.start_to_close_timeout,
        scheduled.heartbeat_timeout,
        scheduled.schedule_to_close_timeout,
    )
    if limits == (None, None, None):
        return None
    start_to_close, heartbeat, schedule_to_close = limits
    deadline = None
    if schedule_to_close is not None and at is not None:
        deadline = at + timedelta(seconds=schedule_to_close)
    timeouts = ActivityTimeouts(start_to_close, heartbeat, schedule_to_close, deadline)
    return json_text(timeouts.to_json())


def _failed(
    status: WorkflowStatus,
    failure: Failure,
    *,
    reason: str | None = None,
    requested_by: str | None = None,
) -> Ending:
    """An ending with a failure; one imposed from outside (``requested_by``) ends the run
    whatever its inbox holds."""
    return Ending(
        status,
        None,
        FAILURE.dump_json(failure).decode(),
        by_code=requested_by is None,
        reason=reason,
        requested_by=requested_by,
    )


def commit_topics(
    task: OfRun,
    plan: CommitPlan,
    *,
    taken: frozenset[int] = frozenset(),
    wake_run: bool = True,
    woken: Iterable[str] = (),
) -> list[str]:
    """Whom to wake once ``plan`` is committed (step 8): the pollers of the new activities
    but those the committing worker took (``taken`` seqs); the result waiters if the run
    ended, else its own pollers unless the backend saw its inbox empty (``wake_run``); and
    the pollers of the workflow names ``woken`` (other workflows written to) and of the
    workflows created."""
    topics = {work_topic(TaskKind.WORKFLOW, name) for name in woken}
    topics.update(work_topic(TaskKind.WORKFLOW, new.name) for new in plan.workflows)
    if plan.ending is not None:  # its activity tasks went with it
        topics.add(finished_topic(task.workflow_id))
        return sorted(topics)
    topics.update(
        work_topic(TaskKind.ACTIVITY, a.name) for a in plan.activities if a.seq not in taken
    )
    if wake_run:
        topics.add(work_topic(TaskKind.WORKFLOW, task.workflow_name))
    return sorted(topics)


def taken_activity(task: OfRun, plan: CommitPlan, seq: int, task_id: int) -> ActivityTask:
    """The activity task a commit leased to its own worker (attempt 1, first lease)."""
    activity = next(a for a in plan.activities if a.seq == seq)
    return ActivityTask(
        id=task_id,
        workflow_id=task.workflow_id,
        run_id=task.run_id,
        workflow_name=task.workflow_name,
        seq=seq,
        name=activity.name,
        args=json.loads(activity.args),
        retry=None if activity.retry is None else json.loads(activity.retry),
        attempt=1,
        lease_token=1,
        timeouts=timeouts_of(activity.timeouts),
    )
