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
   from ``task.history_length + 1`` (it may be empty: a task that only rejected updates);
   each of ``updates`` becomes the answer of the update of its id sent to the run's
   workflow id, unless that has one already (the first answer stands).
4. ``inbox`` rows are inserted: into this run's inbox; for a row naming a ``run_id``,
   into that run if it is unfinished; for a row naming a ``workflow_id``, into that
   workflow's latest run if it is unfinished; never visible before that run's start (as
   ``send_event``). A row that finds no such run is dropped, and its ``receipt`` (if it
   has one) says so: its ``missing`` event (no such workflow) or ``closed`` event (it has
   ended) goes into this run's inbox, else its ``delivered`` event.
5. ``activities`` are inserted as activity tasks, due now; the run's activity tasks whose
   seqs are in ``cancelled_activities`` are deleted, and so are its inbox rows that are
   timers with seqs in ``cancelled_timers``.
6. With an ``ending``, the run takes its status, result or failure, its end time and (when
   the ending has them) the stop's ``reason`` and ``requested_by``, and
   its workflow task, activity tasks and inbox are deleted; its own new inbox rows and
   activity tasks (steps 4 and 5) are not written at all, and none is taken; each
   unfinished run whose parent is this run gets the event its ``ParentLink.on_close``
   holds, if it holds one. Without an ending, the run is running and its task released
   (failures and last error cleared). Either way, the run's ``vars`` are replaced by the
   plan's when it has them (None: unchanged).
7. ``workflows`` are created as ``create_workflow`` makes them, each as the next run of
   its id if its ``id_reuse`` allows (after step 6: the run that ends here may be
   continued by a new run of its own id); one whose id is taken is not. A ``receipt``
   says which into this run's inbox, unless the run ended.
8. Wake-ups (``commit_topics``) go to the pollers of the new activities, the pollers of the
   workflows written to or created, and the run's own pollers if its inbox is not empty
   (events that came while the task was held, or timers), or its result waiters if it ended;
   and to its update callers if it answered updates.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from tapeflow.backends._rows import FAILURE, json_text, timeouts_of
from tapeflow.backends.base import (
    ActivityTask,
    ActivityTimeouts,
    NewWorkflow,
    ParentLink,
    TaskKind,
    WorkflowStatus,
)
from tapeflow.backends.wakeups import finished_topic, queue_topics, update_topic, work_topic
from tapeflow.history import (
    ActivityCancelled,
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
    Failure,
    HistoryEvent,
    JSONValue,
    TerminationRequested,
    TimerCancelled,
    TimerFired,
    TimerStarted,
    UpdateCompleted,
    UpdateRejected,
    WorkflowCancelRequested,
    WorkflowContinuedAsNew,
    WorkflowExecutionCancelled,
    WorkflowExecutionCompleted,
    WorkflowExecutionFailed,
    WorkflowExecutionTerminated,
    WorkflowExecutionTimedOut,
    WorkflowTaskStarted,
    encode_event,
    encode_outcome,
)
from tapeflow.queues import DEFAULT_PRIORITY, DEFAULT_QUEUE


class OfRun(Protocol):
    """What names the run a plan is for: a workflow task, or the activity task whose
    outcome a run-ahead plan is committed with."""

    @property
    def workflow_id(self) -> str: ...

    @property
    def run_id(self) -> str: ...

    @property
    def workflow_name(self) -> str: ...

    @property
    def workflow_queue(self) -> str: ...

    @property
    def workflow_priority(self) -> int: ...


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
    queue: str = DEFAULT_QUEUE
    """A queue with limits (``QueueLimits``) writes it unadmitted, and a worker does not
    take it in the commit (``Take``)."""
    priority: int = DEFAULT_PRIORITY
    trace_context: str | None = None
    """JSON text: the trace context of the task that scheduled it, if traced."""


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
    run_id: str | None = None
    """A given run's inbox (a parent's), whatever run of its id is the latest."""
    receipt: Receipt | None = None


@dataclass(frozen=True)
class Receipt:
    """What became of a row for another workflow, as an encoded event for this run's own
    inbox (step 4)."""

    delivered: str
    missing: str
    closed: str


@dataclass(frozen=True)
class UpdateAnswer:
    """What an update sent to the run's workflow id came to, for its caller (step 3)."""

    update_id: str
    outcome: str
    """An encoded ``UpdateCompleted`` or ``UpdateRejected`` (``encode_outcome``)."""


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
    updates: tuple[UpdateAnswer, ...] = ()
    """Answers of updates: those the task's code completed, and those it rejected, which
    are in no history."""
    vars: str | None = None
    """JSON text: the run's variables after the task (``workflow.set_var``), when they
    changed; None leaves the stored ones (step 6). Stored, a list filters by them and a
    describe shows them, with no replay."""

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
                    "run_id": row.run_id,
                    "receipt": None
                    if row.receipt is None
                    else {
                        "delivered": row.receipt.delivered,
                        "missing": row.receipt.missing,
                        "closed": row.receipt.closed,
                    },
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
                    "queue": a.queue,
                    "priority": a.priority,
                    "trace_context": a.trace_context,
                }
                for a in self.activities
            ],
            "cancelled_activities": self.cancelled_activities,
            "cancelled_timers": self.cancelled_timers,
            "workflows": [new_workflow_json(new) for new in self.workflows],
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
            "updates": [{"update_id": u.update_id, "outcome": u.outcome} for u in self.updates],
            "vars": self.vars,
        }


def new_workflow_json(new: NewWorkflow) -> dict[str, JSONValue]:
    """A new run as the database takes it (``create_workflow``, a plan's step 7)."""
    parent = new.parent
    return {
        "id": new.id,
        "run_id": new.run_id,
        "name": new.name,
        "version": new.version,
        "args": json_text(new.args),
        "start_at": _iso(new.start_at),
        "execution_timeout": _seconds(new.execution_timeout),
        "id_reuse": new.id_reuse,
        "events": list(new.events),
        "parent": None
        if parent is None
        else {
            "workflow_id": parent.workflow_id,
            "run_id": parent.run_id,
            "seq": parent.seq,
            "on_close": parent.on_close,
        },
        "receipt": None if new.receipt is None else list(new.receipt),
        "queue": new.queue,
        "priority": new.priority,
        "trace_context": new.trace_context,
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _seconds(duration: timedelta | None) -> float | None:
    return None if duration is None else duration.total_seconds()


def plan_commit(
    events: Sequence[HistoryEvent],
    consumed: Iterable[int] = (),
    run: OfRun | None = None,
    parent: ParentLink | None = None,
    vars: Mapping[str, JSONValue] | None = None,
    rejected: Sequence[UpdateRejected] = (),
    trace_context: dict[str, str] | None = None,
) -> CommitPlan:
    """The writes that a task of ``run`` (whose parent is ``parent``) appending ``events``
    (its start, what it consumed, then its decisions) makes, having consumed the inbox
    rows ``consumed`` (among them the update requests it ``rejected``, which ``events``
    leaves out), and its ``vars`` if they changed. Decisions about other workflows
    (children, events sent, continuing as new) need ``run``. The activities and runs it
    makes carry ``trace_context``, the task's span, as their parent."""
    traced = None if trace_context is None else json_text(trace_context)
    answers = [UpdateAnswer(r.update_id, encode_outcome(r)) for r in rejected]
    activities: list[NewActivity] = []
    inbox: list[NewInboxEvent] = []
    workflows: list[NewWorkflow] = []
    cancelled_activities: list[int] = []
    cancelled_timers: list[int] = []
    children: dict[int, NewWorkflow] = {}
    child_cancels: dict[int, NewInboxEvent] = {}
    ending: Ending | None = None
    at: datetime | None = None
    for event in events:
        match event:
            case WorkflowTaskStarted(at=started):
                at = started
            case ActivityScheduled():
                activities.append(new_activity(event, at, traced))
            case ActivityCancelled(seq=seq):
                cancelled_activities.append(seq)
            case TimerStarted():
                inbox.append(timer_row(event))
            case TimerCancelled(seq=seq):
                cancelled_timers.append(seq)
            case ChildWorkflowScheduled(seq=seq):
                children[seq] = _child(event, _named(run, event), trace_context)
            case ChildWorkflowCancelRequested(seq=seq, workflow_id=child, reason=reason):
                asked = encode_event(WorkflowCancelRequested(reason=reason))
                child_cancels[seq] = NewInboxEvent(asked, workflow_id=child)
            case EventSent():
                inbox.append(_sent(event))
            case UpdateCompleted(update_id=update_id):
                answers.append(UpdateAnswer(update_id, encode_outcome(event)))
            case WorkflowContinuedAsNew():
                ending = Ending(WorkflowStatus.CONTINUED_AS_NEW, None, None)
                workflows.append(_next_run(event, _named(run, event), parent, trace_context))
            case WorkflowExecutionCompleted(result=result):
                ending = Ending(WorkflowStatus.COMPLETED, json_text(result), None)
            case WorkflowExecutionFailed(failure=failure):
                ending = _failed(WorkflowStatus.FAILED, failure)
            case WorkflowExecutionCancelled(reason=reason):
                failure = Failure("CancelledError", reason)
                ending = _failed(WorkflowStatus.CANCELLED, failure, reason=reason)
            case WorkflowExecutionTerminated(reason=reason, requested_by=requested_by):
                ending = _failed(
                    WorkflowStatus.TERMINATED,
                    Failure("Terminated", reason),
                    reason=reason,
                    requested_by=requested_by,
                )
            case WorkflowExecutionTimedOut(timeout=timeout):
                why = f"the workflow ran past its execution_timeout of {timeout:g}s"
                ending = _failed(
                    WorkflowStatus.TIMED_OUT,
                    Failure("TimeoutError", why),
                    reason=why,
                    requested_by="timeout",
                )
    continued = ending is not None and ending.status is WorkflowStatus.CONTINUED_AS_NEW
    if ending is not None and parent is not None and run is not None and not continued:
        inbox.append(_closed(run, parent, ending))  # (a continued run's last run tells)
    dropped = set(cancelled_activities)  # scheduled and cancelled at once: never written
    for seq in set(children) & set(child_cancels):  # so for a child: never started
        del children[seq], child_cancels[seq]
    return CommitPlan(
        history=tuple(encode_event(event) for event in events),
        consumed=tuple(consumed),
        inbox=(*inbox, *child_cancels.values()),
        activities=tuple(a for a in activities if a.seq not in dropped),
        cancelled_activities=tuple(cancelled_activities),
        cancelled_timers=tuple(cancelled_timers),
        workflows=(*children.values(), *workflows),
        ending=ending,
        updates=tuple(answers),
        vars=None if vars is None else json_text(vars),
    )


def new_activity(
    scheduled: ActivityScheduled, at: datetime | None, trace_context: str | None = None
) -> NewActivity:
    """The activity task a schedule makes, its deadline counted from ``at``."""
    retry = None if scheduled.retry is None else json_text(scheduled.retry)
    args, timeouts = json_text(scheduled.args), _timeouts(scheduled, at)
    return NewActivity(
        scheduled.seq,
        scheduled.name,
        args,
        retry,
        timeouts,
        scheduled.queue,
        scheduled.priority,
        trace_context,
    )


def timer_row(started: TimerStarted) -> NewInboxEvent:
    """The inbox row a timer waits as: its ``TimerFired``, visible when it is due."""
    fired = encode_event(TimerFired(seq=started.seq))
    return NewInboxEvent(fired, started.fire_at, timer_seq=started.seq)


def _named(run: OfRun | None, event: HistoryEvent) -> OfRun:
    if run is None:
        raise ValueError(f"a plan with a {event.kind} decision needs the run it is for")
    return run


_ON_PARENT_CLOSE = {
    "terminate": lambda parent: encode_event(
        TerminationRequested(reason=f"its parent workflow {parent!r} closed")
    ),
    "cancel": lambda parent: encode_event(
        WorkflowCancelRequested(reason=f"its parent workflow {parent!r} closed")
    ),
}


def _child(
    scheduled: ChildWorkflowScheduled, run: OfRun, trace_context: dict[str, str] | None
) -> NewWorkflow:
    """A child, as the next run of its id only if no run has that id, reporting to ``run``."""
    seq, child = scheduled.seq, scheduled.workflow_id
    close = _ON_PARENT_CLOSE.get(scheduled.parent_close_policy)
    new = NewWorkflow(
        id=child,
        name=scheduled.name,
        version=scheduled.version,
        args=scheduled.args,
        start_at=None,
        execution_timeout=None
        if scheduled.execution_timeout is None
        else timedelta(seconds=scheduled.execution_timeout),
        parent=ParentLink(
            run.workflow_id, run.run_id, seq, None if close is None else close(run.workflow_id)
        ),
        queue=scheduled.queue,
        priority=scheduled.priority,
        trace_context=trace_context,
    )
    taken = Failure("WorkflowAlreadyExists", f"a workflow with id {child!r} exists already")
    receipt = (
        encode_event(ChildWorkflowStarted(seq=seq, workflow_id=child, run_id=new.run_id)),
        encode_event(ChildWorkflowStartFailed(seq=seq, workflow_id=child, failure=taken)),
    )
    return replace(new, receipt=receipt)


def _sent(sent: EventSent) -> NewInboxEvent:
    """An event for another workflow, with its receipt."""
    target, seq = sent.workflow_id, sent.seq
    missing = Failure("WorkflowNotFound", f"no workflow with id {target!r}")
    closed = Failure("WorkflowAlreadyCompleted", f"workflow {target!r} has already ended")
    return NewInboxEvent(
        encode_event(EventReceived(name=sent.name, payload=sent.payload)),
        workflow_id=target,
        receipt=Receipt(
            delivered=encode_event(EventDelivered(seq=seq)),
            missing=encode_event(EventDeliveryFailed(seq=seq, failure=missing)),
            closed=encode_event(EventDeliveryFailed(seq=seq, failure=closed)),
        ),
    )


def _next_run(
    continued: WorkflowContinuedAsNew,
    run: OfRun,
    parent: ParentLink | None,
    trace_context: dict[str, str] | None,
) -> NewWorkflow:
    """The run that continues ``run``: same id, name and parent, the unhandled events."""
    return NewWorkflow(
        id=run.workflow_id,
        name=run.workflow_name,
        version=continued.version,
        args=continued.args,
        start_at=None,
        run_id=continued.run_id,
        id_reuse="allow",
        events=tuple(encode_event(event) for event in continued.carried),
        parent=parent,
        queue=run.workflow_queue,
        priority=run.workflow_priority,
        trace_context=trace_context,
    )


def _closed(run: OfRun, parent: ParentLink, ending: Ending) -> NewInboxEvent:
    """The row that tells a child's parent run how the child ended (not when it goes on
    as a new run: its last run will tell)."""
    failure = None if ending.failure is None else FAILURE.validate_json(ending.failure)
    closed = ChildWorkflowClosed(
        seq=parent.seq,
        workflow_id=run.workflow_id,
        run_id=run.run_id,
        status=ending.status.value,
        result=None if ending.result is None else json.loads(ending.result),
        failure=failure,
    )
    return NewInboxEvent(encode_event(closed), run_id=parent.run_id)


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
    workflows created; the callers of the updates it answered; and the admissions of the
    queues (but the default one) of the work created, and of the run's if it ended (which
    leaves room there)."""
    topics = {work_topic(TaskKind.WORKFLOW, name) for name in woken}
    if plan.updates:
        topics.add(update_topic(task.workflow_id))
    topics.update(work_topic(TaskKind.WORKFLOW, new.name) for new in plan.workflows)
    queues = {new.queue for new in plan.workflows}
    if plan.ending is not None:  # its activity tasks went with it
        topics.add(finished_topic(task.workflow_id))
        queues.add(task.workflow_queue)
        return sorted(topics | queue_topics(queues))
    topics.update(
        work_topic(TaskKind.ACTIVITY, a.name) for a in plan.activities if a.seq not in taken
    )
    queues.update(a.queue for a in plan.activities)
    topics.update(queue_topics(queues))
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
        queue=activity.queue,
        workflow_queue=task.workflow_queue,
        workflow_priority=task.workflow_priority,
        trace_context=None
        if activity.trace_context is None
        else json.loads(activity.trace_context),
    )
