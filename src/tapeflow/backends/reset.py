"""A reset as one plan of writes, worked out once, in Python, from the run's history.

``handle.reset(event=N)`` recovers a workflow that failed, or whose task fails (say, for
non-determinism), once a fix is deployed: the id's next run takes the first N events of
its latest run as its own history, and its first task runs on the code deployed now. N
must end a workflow task (history before it is exactly whole tasks): replay would
otherwise find half a task.

What the old run had going at N is set going again for the new run, as if it were the old
run at N: the activities scheduled and not resolved by then are scheduled again (they run
again), and the timers started and not fired or cancelled wait again (due when they were).
What reached the old run after N from outside is delivered again, in its order: the
events it received (``EventReceived``), and the outcomes of the children it started and of
the events it sent at or before N (those are not started or sent again). A cancel request
is not: the reset is the operator's newer word. An ``ExecutionTimeoutReached`` and events
still in an open run's inbox are carried over by the backend, in the reset's transaction.
A child started at or before N that has not closed as the old run saw it cannot be
followed (it reports to the old run): such a reset is refused.

How every backend stores a ``ResetPlan``, in one transaction:

1. Fenced: the id's latest run must still be ``from_run_id``, its history still
   ``history_length`` long; else LeaseLost, and nothing is written.
2. The new run is created as the next run of the id (``run``: its name, version,
   arguments and parent), with its workflow task and, as its history, a copy of the old
   run's events 1 to ``event``; it writes no start event (its history has it).
3. ``rows`` is stored for the new run as an imposed commit plan's (a plan's steps 4 to 6
   with nothing to append): its inbox, first the ``WorkflowReset`` that makes its task run,
   and its activity tasks.
4. The old run's inbox events received and not yet in history, and its execution timeout
   timer, are copied to the new run's inbox, in their order.
5. ``ending``, if the old run is open, is stored as ``impose_ending`` stores it: the old
   run is terminated (its children get their parent close policy; its parent is not told,
   as the new run goes on as that parent's child).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from tapeflow.backends.base import NewWorkflow, WorkflowRecord, WorkflowTask
from tapeflow.backends.plan import (
    CommitPlan,
    NewActivity,
    NewInboxEvent,
    new_activity,
    new_workflow_json,
    plan_commit,
    timer_row,
)
from tapeflow.errors import InvalidArgument
from tapeflow.history import (
    ActivityCancelled,
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    ChildWorkflowClosed,
    ChildWorkflowScheduled,
    ChildWorkflowStarted,
    ChildWorkflowStartFailed,
    EventDelivered,
    EventDeliveryFailed,
    EventReceived,
    EventSent,
    HistoryEvent,
    JSONValue,
    TimerCancelled,
    TimerFired,
    TimerStarted,
    WorkflowExecutionTerminated,
    WorkflowReset,
    WorkflowTaskStarted,
    encode_event,
    is_imposed,
    is_terminal,
)

REQUESTED_BY = "reset"
"""The old run's ``describe().requested_by`` when a reset terminated it."""


@dataclass(frozen=True)
class ResetPlan:
    workflow_id: str
    from_run_id: str
    history_length: int
    """The old run's history length as read: the fence (step 1)."""
    event: int
    """N: the old run's events 1 to N become the new run's history."""
    run: NewWorkflow
    rows: CommitPlan
    """The new run's inbox rows and activity tasks (step 3)."""
    ending: CommitPlan | None
    """The old run's termination, if it is open (step 5)."""
    at: datetime

    def new_run(self) -> WorkflowTask:
        """The new run, as the plan's rows are stored for it (an imposed plan's run)."""
        return self._task(self.run.run_id, self.event)

    def old_run(self) -> WorkflowTask:
        """The old run, as its ending is imposed on it."""
        return self._task(self.from_run_id, self.history_length)

    def _task(self, run_id: str, history_length: int) -> WorkflowTask:
        run = self.run
        return WorkflowTask(
            run.id,
            run_id,
            run.name,
            history_length,
            [],
            0,
            self.at,
            queue=run.queue,
            priority=run.priority,
        )

    def as_json(self) -> dict[str, JSONValue]:
        """The plan as one JSON document, for a backend that hands it to the database."""
        return {
            "workflow_id": self.workflow_id,
            "from_run_id": self.from_run_id,
            "history_length": self.history_length,
            "event": self.event,
            "run": new_workflow_json(self.run),
            "rows": self.rows.as_json(),
            "ending": None if self.ending is None else self.ending.as_json(),
        }


def boundaries(history: Sequence[HistoryEvent]) -> list[int]:
    """The event numbers a run may be reset to: each end of a whole workflow task, the
    first task's end first; the end of history too unless the run has ended there."""
    ends = [n for n, event in enumerate(history) if n and isinstance(event, WorkflowTaskStarted)]
    last = history[-1] if history else None
    if last is not None and not is_terminal(last) and not is_imposed(last):
        ends.append(len(history))
    return ends


def plan_reset(
    record: WorkflowRecord,
    history: Sequence[HistoryEvent],
    event: int,
    reason: str,
    now: datetime,
) -> ResetPlan:
    """The writes that reset the run ``record`` (whose whole history is ``history``) to its
    first ``event`` events, ``now`` the time the rescheduled activities' schedule-to-close
    deadlines count from. Raises InvalidArgument if ``event`` does not end a workflow task
    (naming the nearest that do) or a child started by then is still open."""
    valid = boundaries(history)
    if not isinstance(event, int) or isinstance(event, bool) or event not in valid:
        raise InvalidArgument(_not_a_boundary(record.id, event, valid))
    kept, after = history[:event], history[event:]
    activities: dict[int, NewActivity] = {}
    timers: dict[int, NewInboxEvent] = {}
    children: set[int] = set()
    sent: set[int] = set()
    for seen in kept:
        match seen:
            case ActivityScheduled(seq=seq):
                activities[seq] = new_activity(seen, now)
            case ActivityCompleted(seq=seq) | ActivityFailed(seq=seq) | ActivityCancelled(seq=seq):
                activities.pop(seq, None)
            case TimerStarted(seq=seq):
                timers[seq] = timer_row(seen)
            case TimerFired(seq=seq) | TimerCancelled(seq=seq):
                timers.pop(seq, None)
            case ChildWorkflowScheduled(seq=seq):
                children.add(seq)
            case ChildWorkflowClosed(seq=seq) | ChildWorkflowStartFailed(seq=seq):
                children.discard(seq)
            case EventSent(seq=seq):
                sent.add(seq)
    again = [_again(late, children, sent) for late in after]
    closed = {e.seq for e in after if isinstance(e, ChildWorkflowClosed | ChildWorkflowStartFailed)}
    if open_children := sorted(children - closed):
        raise InvalidArgument(
            f"workflow {record.id!r} cannot be reset to event {event}: the child workflows "
            f"it started by then (seq {open_children}) are still open, and report to its "
            "current run"
        )
    wake = WorkflowReset(run_id=record.run_id, event=event, reason=reason)
    rows = CommitPlan(
        inbox=(
            NewInboxEvent(encode_event(wake)),
            *(NewInboxEvent(encode_event(late)) for late in again if late is not None),
            *timers.values(),
        ),
        activities=tuple(activities.values()),
    )
    ending = None
    if not record.status.finished:  # its parent is not told: the new run is its child now
        terminated = WorkflowExecutionTerminated(reason=reason, requested_by=REQUESTED_BY)
        ending = plan_commit([terminated])
    run = NewWorkflow(
        id=record.id,
        name=record.name,
        version=record.version,
        args=record.args,
        start_at=None,
        parent=record.parent,
        queue=record.queue,
        priority=record.priority,
    )
    return ResetPlan(record.id, record.run_id, len(history), event, run, rows, ending, now)


def _again(late: HistoryEvent, children: set[int], sent: set[int]) -> HistoryEvent | None:
    """An event the old run took after N that the new run must be given again, or None."""
    match late:
        case EventReceived():
            return late
        case ChildWorkflowStarted(seq=seq) | ChildWorkflowStartFailed(seq=seq) if seq in children:
            return late
        case ChildWorkflowClosed(seq=seq) if seq in children:
            return late
        case EventDelivered(seq=seq) | EventDeliveryFailed(seq=seq) if seq in sent:
            return late
    return None


def _not_a_boundary(workflow_id: str, event: object, valid: list[int]) -> str:
    where = f"workflow {workflow_id!r} can be reset only to the end of a workflow task"
    if not valid:
        return f"{where}, and it has not completed one: nothing to reset to"
    if not isinstance(event, int) or isinstance(event, bool):
        return f"{where}: {event!r} is not an event number (the first task ends at {valid[0]})"
    below = [n for n in valid if n < event]
    above = [n for n in valid if n > event]
    nearest = " and ".join(str(n) for n in (below[-1:] + above[:1]))
    return f"{where}: event {event} is not one; the nearest that are: {nearest}"
