"""The backend protocol: a core every storage engine implements, and optional capabilities.

Workers and clients talk to storage only through this. Every method that changes a
workflow does it in one transaction. Task methods are fenced by the lease token handed out
at claim time: a worker whose lease expired or was taken over gets ``LeaseLost`` and its
write is discarded.

A workflow id has one or more runs (a new run continues it, or reuses a finished one's id):
history, tasks and inbox belong to a run, keyed by its ``run_id``. Calls that name only a
workflow id mean its latest run.

The core (``Backend``) is what a backend needs to run anything: create, claim, commit a
plan, complete an activity, events, history, describe, leases. A workflow task's commit is
a ``CommitPlan`` (``tapeflow.backends.plan``) of plain writes worked out in Python, which the
backend stores without interpreting decisions: a new kind of decision needs no backend code.
``HandOffs`` is an optional capability: the committing worker takes work for itself in the
same transaction (eager activities, continuing a workflow straight from its activity's
outcome, sticky tasks). A worker uses it only where the backend has it.

An update is kept per workflow id and update id: its request goes into the latest run's
inbox (``request_update``), its answer comes with the commit that decides it
(``CommitPlan.updates``), and its caller reads it (``get_update``), woken by
``update_topic``.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Protocol, Self, runtime_checkable

from tapeflow.backends.wakeups import Watch
from tapeflow.history import (
    ActivityCompleted,
    ActivityFailed,
    Failure,
    HistoryEvent,
    Incoming,
    JSONValue,
    UpdateOutcome,
    UpdateRequested,
)
from tapeflow.queues import DEFAULT_PRIORITY, DEFAULT_QUEUE

if TYPE_CHECKING:
    from tapeflow.backends.plan import CommitPlan
    from tapeflow.backends.reset import ResetPlan


EXECUTION_TIMEOUT_SEQ = 0
"""The timer seq of a run's ``ExecutionTimeoutReached``: workflow timers count from 1."""


def new_run_id() -> str:
    """A run's id: random, so that runs made on many machines never collide."""
    return str(uuid.uuid4())


class WorkflowStatus(enum.StrEnum):
    PENDING = "pending"
    """Scheduled; no worker has run it yet (perhaps none has registered it)."""
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    """Asked to cancel, it let the ``CancelledError`` escape."""
    TERMINATED = "terminated"
    TIMED_OUT = "timed_out"
    """Past its ``execution_timeout``."""
    CONTINUED_AS_NEW = "continued_as_new"
    """Ended by ``continue_as_new``: the next run of its id goes on (the id's latest run is
    never in this status)."""

    @property
    def finished(self) -> bool:
        return self not in (WorkflowStatus.PENDING, WorkflowStatus.RUNNING)


IdReuse = Literal["reject", "allow", "allow_failed"]
"""Whether a new run may take an id whose latest run has ended: never, always, or only if
that run did not complete. An id whose latest run is unfinished is never taken."""


@dataclass(frozen=True)
class ParentLink:
    """A child run's parent: the run it reports its end to (a ``ChildWorkflowClosed`` with
    the seq of the parent's ``ChildWorkflowScheduled``), and the encoded inbox event the
    child gets if that run closes first (its parent close policy; None: abandoned)."""

    workflow_id: str
    run_id: str
    seq: int
    on_close: str | None = None


@dataclass(frozen=True)
class NewWorkflow:
    id: str
    name: str
    version: str
    args: list[JSONValue]
    start_at: datetime | None
    """When the workflow becomes runnable; None means now (the backend's clock)."""
    run_id: str = field(default_factory=new_run_id)
    """Its first run's id; made by the caller, so that a commit creating it (a child, the
    next run) can record it."""
    execution_timeout: timedelta | None = None
    """How long the run may take from ``start_at``: then it is ended as timed out (the
    backend sets an ``ExecutionTimeoutReached`` timer, ``EXECUTION_TIMEOUT_SEQ``)."""
    id_reuse: IdReuse = "reject"
    events: tuple[str, ...] = ()
    """Encoded events for its inbox, after its start event: a start's event, or the events
    a run that continues as new had not handled."""
    parent: ParentLink | None = None
    receipt: tuple[str, str] | None = None
    """Two encoded events, of which a plan's commit puts one into its own run's inbox: the
    first if this was created, the second if its id was taken."""
    queue: str = DEFAULT_QUEUE
    """Its queue: a queue with limits (``QueueLimits``) creates its task unadmitted."""
    priority: int = DEFAULT_PRIORITY
    trace_context: dict[str, str] | None = None
    """Put into its start event (``WorkflowExecutionStarted.trace_context``)."""


@dataclass(frozen=True)
class WorkflowRecord:
    id: str
    run_id: str
    """The run described: the latest one unless another was asked for."""
    name: str
    version: str
    status: WorkflowStatus
    args: list[JSONValue]
    created_at: datetime
    start_at: datetime
    completed_at: datetime | None
    result: JSONValue
    failure: Failure | None
    history_length: int
    task_error: str | None
    """The last workflow task failure (a non-determinism error, say), while unresolved."""
    hint: str | None = None
    """Why an unfinished workflow due to run may not be running: no worker has polled for
    its name lately (none runs that registers it); None otherwise."""
    reason: str | None = None
    """Why it was asked to stop: the reason given to cancel or terminate, or the timeout's."""
    requested_by: str | None = None
    """Who asked it to stop: ``"client"`` (cancel, terminate), ``"parent"`` (its parent
    closed) or ``"timeout"``."""
    parent: ParentLink | None = None
    """The parent run, for a child workflow."""
    previous_run_id: str | None = None
    """The run before this one of the same id (that continued as new, or ended before
    its id was reused)."""
    vars: dict[str, JSONValue] = field(default_factory=dict)
    """The variables the workflow set (``workflow.set_var``) as of its last commit."""
    queue: str = DEFAULT_QUEUE
    priority: int = DEFAULT_PRIORITY

    @property
    def parent_id(self) -> str | None:
        """The parent's workflow id, for a child workflow."""
        return None if self.parent is None else self.parent.workflow_id


@dataclass(frozen=True)
class WorkflowSummary:
    """A run as a list shows it: what tells runs apart and where each stands, without
    its arguments, result or history."""

    id: str
    run_id: str
    name: str
    status: WorkflowStatus
    created_at: datetime
    """When the run was created (its start, or the commit that continued it): lists are
    ordered by this, newest first."""
    start_at: datetime
    completed_at: datetime | None
    task_error: str | None
    """The last workflow task failure, while unresolved (as ``WorkflowRecord``'s)."""
    vars: dict[str, JSONValue]
    """The variables the workflow set (``workflow.set_var``) as of its last commit."""


VarValue = str | int | float | bool | None
"""What a list compares a variable with: a JSON scalar, equal by JSON value (1 == 1.0)."""


@dataclass(frozen=True)
class RunFilter:
    """Which runs a list or a count takes: all of these that are given."""

    statuses: tuple[WorkflowStatus, ...] = ()
    """Any of these statuses; empty: any status."""
    name: str | None = None
    id_prefix: str | None = None
    created_after: datetime | None = None
    """Created at or after this."""
    created_before: datetime | None = None
    """Created before this."""
    vars: tuple[tuple[str, VarValue], ...] = ()
    """Each variable set, to this value."""
    all_runs: bool = False
    """Every run of each id; else only its latest run."""


@dataclass(frozen=True)
class RunKey:
    """A run's place in a list's order (newest first): the keyset a page ends at."""

    created_at: datetime
    run_id: str


@runtime_checkable
class Visibility(Protocol):
    """The reads that find workflows (lists, counts), for the client, the CLI and the UI.
    Served by indexes over the runs' own rows: the variables are stored by each commit
    (``CommitPlan.vars``), so no read replays anything."""

    async def list_runs(
        self, where: RunFilter, limit: int, after: RunKey | None = None
    ) -> list[WorkflowSummary]:
        """Up to ``limit`` runs matching ``where``, newest first by (``created_at``,
        ``run_id``), from just past ``after``: a page ends at its last run's key, and the
        next page, started from it, neither repeats nor skips a run however many runs are
        created meanwhile (they come before it)."""
        ...

    async def count_runs(self, where: RunFilter) -> dict[WorkflowStatus, int]:
        """How many runs match ``where``, by status (statuses with none left out)."""
        ...


@dataclass(frozen=True)
class UpdateRecord:
    """An update sent to a workflow id, as its caller reads it."""

    run_id: str
    """The run its request went to."""
    run_status: WorkflowStatus
    """That run's status now: one that has ended will never answer it."""
    outcome: UpdateOutcome | None
    """Its answer (``UpdateCompleted``, or ``UpdateRejected``); None while it has none."""


@dataclass(frozen=True)
class InboxEvent:
    id: int
    event: Incoming


@dataclass(frozen=True)
class WorkflowTask:
    workflow_id: str
    run_id: str
    workflow_name: str
    history_length: int
    """History events already committed; the new ones are numbered from here + 1."""
    inbox: list[InboxEvent]
    lease_token: int
    claimed_at: datetime
    """The backend's time at the claim: the activation's time, so timers are set by the
    backend's clock and not by a worker's (perhaps wrong) one."""
    failures: int = 0
    """Times this task failed in a row (non-determinism, say): drives its retry backoff."""
    poison: str | None = None
    """Why some of the inbox's stored events cannot be read (corrupt data): then the
    workflow fails, visibly, and only it; ``inbox`` holds the events that can be read."""
    unreadable: tuple[int, ...] = ()
    """The ids of the inbox events that cannot be read."""
    parent: ParentLink | None = None
    """Where the run reports its end, if it is a child."""
    queue: str = DEFAULT_QUEUE
    """The run's queue: the next run of a workflow that continues as new is in it too."""
    priority: int = DEFAULT_PRIORITY

    @property
    def workflow_queue(self) -> str:
        return self.queue

    @property
    def workflow_priority(self) -> int:
        return self.priority


@dataclass(frozen=True)
class ActivityTimeouts:
    """An activity's limits, as its task keeps them. ``schedule_deadline`` is absolute, on
    the backend's clock: the time of the workflow task that scheduled it plus its
    ``schedule_to_close_timeout``."""

    start_to_close: float | None = None
    """Seconds one attempt may run."""
    heartbeat: float | None = None
    """Seconds an attempt may go without ``activity.heartbeat()``."""
    schedule_to_close: float | None = None
    schedule_deadline: datetime | None = None

    def to_json(self) -> dict[str, JSONValue]:
        deadline = self.schedule_deadline
        return {
            "start_to_close": self.start_to_close,
            "heartbeat": self.heartbeat,
            "schedule_to_close": self.schedule_to_close,
            "schedule_deadline": None if deadline is None else deadline.isoformat(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, JSONValue]) -> ActivityTimeouts:
        deadline = data.get("schedule_deadline")
        return cls(
            start_to_close=data.get("start_to_close"),
            heartbeat=data.get("heartbeat"),
            schedule_to_close=data.get("schedule_to_close"),
            schedule_deadline=None if deadline is None else datetime.fromisoformat(deadline),
        )


@dataclass(frozen=True)
class ActivityTask:
    id: int
    workflow_id: str
    run_id: str
    workflow_name: str
    seq: int
    name: str
    args: list[JSONValue]
    retry: dict[str, float | int | None] | None
    attempt: int
    """1 on the first attempt."""
    lease_token: int
    heartbeat_details: JSONValue = None
    """What the last attempt recorded with ``activity.heartbeat``, if anything."""
    poison: str | None = None
    """Why the task's stored arguments cannot be read: the activity then fails for good."""
    timeouts: ActivityTimeouts | None = None
    leased_at: datetime | None = None
    """The backend's time when this attempt was leased (None: as it was scheduled, an
    activity its workflow's worker took at once): the start of its time limits."""
    queue: str = DEFAULT_QUEUE
    workflow_queue: str = DEFAULT_QUEUE
    """Its workflow's queue: a worker runs the workflow's next task ahead only if it serves
    that queue."""
    workflow_priority: int = DEFAULT_PRIORITY
    trace_context: dict[str, str] | None = None
    """The trace context of the workflow task that scheduled it: its attempts' parent."""


@dataclass(frozen=True)
class Take:
    """What a worker takes for itself in the transaction of its own write (``HandOffs``):
    the work then starts at once, with no claim, no wake-up and no poll in between."""

    owner: str
    lease: timedelta
    activities: frozenset[int] = frozenset()
    """The seqs of the plan's new activity tasks to lease to ``owner`` (attempt 1)."""


@dataclass(frozen=True)
class RunAhead:
    """The workflow's next task, run ahead by the worker that ran one of its activities on
    its cached instance fed only that activity's outcome: committed with the outcome if the
    run's task is free and its history still ``history_length`` events long."""

    history_length: int
    plan: CommitPlan
    """Its history begins with WorkflowTaskStarted and the activity's outcome."""


@dataclass(frozen=True)
class Continued:
    """What ``complete_and_continue`` did; the outcome is recorded either way."""

    committed: bool
    """The run-ahead task is in history: the cached instance is current."""
    activities: list[ActivityTask]
    """Activity tasks the run-ahead commit leased to the worker (``Take.activities``)."""
    resumed: WorkflowTask | None
    """Not committed, but the run's task was free: leased to the worker, to run now."""


@dataclass(frozen=True)
class Reclaimed:
    """What a lost answer had leased to a worker, leased to it anew."""

    workflow_task: WorkflowTask | None
    activities: list[ActivityTask]


STICKY_FOR = timedelta(seconds=1)
"""A workflow task goes back first to the worker that committed the last one, which holds
the workflow's instance in its cache; other workers may claim it once its event has waited
this long (that worker is busy, or gone)."""


class TaskKind(enum.StrEnum):
    WORKFLOW = "workflow"
    ACTIVITY = "activity"


@dataclass(frozen=True)
class LeaseRef:
    kind: TaskKind
    id: str
    """The run id for a workflow task, the task id (as text) for an activity task."""
    token: int


class Backend(Protocol):
    """The core protocol. See the module docstring for the guarantees."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def open(self) -> None:
        """Connect and create or upgrade the schema. Raises SchemaVersionError if too new."""

    async def close(self) -> None: ...

    # -- clients ---------------------------------------------------------------------------

    async def create_workflow(self, new: NewWorkflow, *, use_existing: bool = False) -> str:
        """Write ``new`` as the next run of its id, with its workflow task, its start event
        and ``new.events``, all or nothing, and return its run id. An id whose latest run is
        unfinished, or ended and ``new.id_reuse`` does not allow another, is taken: then it
        raises WorkflowAlreadyExists, or with ``use_existing`` returns that run's id, having
        put ``new.events`` into its inbox in the same transaction (WorkflowAlreadyCompleted
        if it has ended and there are events). Concurrent starts of one id create one run;
        the others get it as taken."""
        ...

    async def get_workflow(self, workflow_id: str, run_id: str | None = None) -> WorkflowRecord:
        """The latest run of the workflow, or the run named. Raises WorkflowNotFound."""
        ...

    async def load_history(self, workflow_id: str, run_id: str | None = None) -> list[HistoryEvent]:
        """The committed history of the latest run (or the run named), in sequence order.
        Raises WorkflowNotFound."""
        ...

    async def send_event(
        self,
        workflow_id: str,
        name: str,
        payload: JSONValue,
        *,
        idempotency_key: str | None = None,
    ) -> None:
        """Append to the inbox of the workflow's latest run. With an ``idempotency_key``, at
        most once per key and workflow id, whatever run it went to: a send with a key the
        id has had returns having delivered nothing, even if the run has ended since. The
        key is kept with the id, in the send's transaction, only if the event is
        delivered. Raises WorkflowNotFound, WorkflowAlreadyCompleted."""

    async def request_update(self, workflow_id: str, request: UpdateRequested) -> None:
        """Put ``request`` into the inbox of the workflow's latest run and keep its update,
        unanswered, with that run, in one transaction: at most once per update id and
        workflow id, whatever run it went to. A request whose update id the workflow id
        has had delivers nothing and returns, even if the run has ended since (the first
        request's answer stands for it). Raises WorkflowNotFound, WorkflowAlreadyCompleted."""

    async def get_update(self, workflow_id: str, update_id: str) -> UpdateRecord | None:
        """The update of ``update_id`` sent to the workflow id, with the status of the run
        it went to, read at one instant; None if there is none (or the workflow was
        deleted)."""
        ...

    def watch(self, topics: Iterable[str], on_wake: Callable[[], None] | None = None) -> Watch:
        """Start watching wake-up topics (``work_topic``, ``finished_topic``, ...): the
        watch is set (and ``on_wake`` called) by every later commit that concerns them.
        Make it before looking, wait after."""
        ...

    async def request_cancel(self, workflow_id: str, reason: str) -> None:
        """Ask the workflow's latest run to cancel: store the reason (``describe``) and put
        a ``WorkflowCancelRequested`` in its inbox, both once (a run asked already is left
        as it is), in one transaction. A commit ending the run that races this either
        lands first (then this raises) or is refused for the unseen event. Raises
        WorkflowNotFound, WorkflowAlreadyCompleted."""

    async def impose_ending(self, task: WorkflowTask, plan: CommitPlan) -> None:
        """Store ``plan``, an ending no workflow code decided (a terminate), for the run
        ``task`` names (see ``imposed_on``) as ``commit_workflow_task`` would, but fenced by
        the history's length alone, whoever holds the task and whatever the inbox holds:
        a worker holding the task then has its writes refused. Raises LeaseLost if the run
        ended or its history moved on, having written nothing."""

    async def reset_workflow(self, plan: ResetPlan) -> None:
        """Store ``plan``, the id's next run made from its latest run's first events, as
        ``tapeflow.backends.reset`` says, in one transaction. Raises LeaseLost if the id's
        latest run is no longer ``plan.from_run_id`` or its history moved on, having
        written nothing."""

    async def delete_workflow(self, workflow_id: str) -> None:
        """Delete a closed workflow: all its runs and all they own (history, inbox, tasks)
        and its event idempotency keys, in one transaction. Raises WorkflowNotFound, and
        WorkflowStillOpen if its latest run has not ended (then nothing is deleted)."""

    async def delete_closed(self, older_than: timedelta, limit: int) -> int | None:
        """Delete, as ``delete_workflow`` does, up to ``limit`` workflows whose latest run
        ended more than ``older_than`` ago (by the backend's clock), oldest first, in one
        transaction; returns how many. None: another process is deleting them right now
        (one at a time, so that workers sharing a database do not all do it)."""
        ...

    @property
    def wakes_other_processes(self) -> bool:
        """Whether watches also wake for commits of other processes (right now; this may stop
        while a connection is down). If not, callers must poll to see them."""
        ...

    # -- workflow tasks --------------------------------------------------------------------

    async def claim_workflow_tasks(
        self,
        names: Sequence[str],
        owner: str,
        lease: timedelta,
        limit: int,
        queues: Sequence[str] = (DEFAULT_QUEUE,),
    ) -> list[WorkflowTask]:
        """Lease up to ``limit`` admitted workflow tasks (of these workflow names, in these
        queues) with visible events. A task sticky to another owner (``HandOffs``) waits
        STICKY_FOR for it first."""
        ...

    async def commit_workflow_task(self, task: WorkflowTask, plan: CommitPlan) -> None:
        """Store ``plan`` (see ``tapeflow.backends.plan`` for what each part means) and
        release the lease, in one transaction.

        A plan that ends the run while its inbox holds events other than timers that are not
        among ``plan.consumed`` would drop them: it writes nothing and raises UnseenEvents,
        so that every event accepted by ``send_event`` reaches history. Raises LeaseLost if
        the lease is not held or the run's history moved on. Either way the caller gives
        back the lease it may still hold (``abandon_workflow_task``), and the task runs again
        with what is there now."""

    async def abandon_workflow_task(
        self, task: WorkflowTask, error: str | None, delay: timedelta
    ) -> None:
        """Release the lease without progress; not claimed again for ``delay``. An error is
        kept on the task (``WorkflowRecord.task_error``) until a commit succeeds.
        Raises LeaseLost."""

    # -- activity tasks --------------------------------------------------------------------

    async def claim_activity_tasks(
        self,
        names: Sequence[str],
        owner: str,
        lease: timedelta,
        limit: int,
        queues: Sequence[str] = (DEFAULT_QUEUE,),
    ) -> list[ActivityTask]:
        """Lease up to ``limit`` due, admitted activity tasks of these names in these
        queues, counting an attempt each."""
        ...

    async def complete_activity_task(
        self, task: ActivityTask, outcome: ActivityCompleted | ActivityFailed
    ) -> None:
        """Delete the task and put its final outcome in its run's inbox. Raises LeaseLost."""

    async def retry_activity_task(
        self,
        task: ActivityTask,
        failure: Failure,
        delay: timedelta,
        heartbeat_details: JSONValue = None,
    ) -> None:
        """Release the task for another attempt after ``delay``, keeping the attempt's last
        heartbeat details (when not None) for the next one. In a queue with limits, the task
        gives back its admission: the next attempt waits for one. Raises LeaseLost."""

    # -- both ------------------------------------------------------------------------------

    async def extend_leases(
        self,
        leases: Sequence[LeaseRef],
        lease: timedelta,
        heartbeats: Mapping[str, JSONValue] | None = None,
    ) -> list[LeaseRef]:
        """Renew leases still held, storing the activities' new heartbeat details (keyed by
        task id) on the way; returns the leases that were lost."""
        ...

    async def next_due(
        self,
        kind: TaskKind,
        names: Sequence[str],
        owner: str | None = None,
        queues: Sequence[str] = (DEFAULT_QUEUE,),
    ) -> timedelta | None:
        """How long until the earliest not-yet-due admitted task of these names in these
        queues becomes due, if any,
        for ``owner`` (a workflow task sticky to another worker is due to it STICKY_FOR
        later).

        Relative, because the backend's clock decides: a worker's clock may be wrong."""
        ...


@runtime_checkable
class HandOffs(Protocol):
    """The optional capability of worker-local hand-offs: a worker takes the work its own
    write makes, leased in that write's transaction (``Take``). A backend without it runs
    everything through the core, only with a claim (and a wake-up) per hand-off."""

    async def commit_and_take(
        self, task: WorkflowTask, plan: CommitPlan, take: Take
    ) -> list[ActivityTask]:
        """``commit_workflow_task``, and in the same transaction: the plan's new activity
        tasks whose seqs are in ``take.activities`` leased to ``take.owner`` (attempt 1,
        returned), and the run's next task sticky to ``take.owner``, which keeps its
        instance (see STICKY_FOR)."""
        ...

    async def complete_and_continue(
        self,
        task: ActivityTask,
        outcome: ActivityCompleted | ActivityFailed,
        take: Take,
        ahead: RunAhead | None = None,
    ) -> Continued:
        """``complete_activity_task``, and in the same transaction the run's workflow task
        leased to ``take.owner`` if it is free (not leased, due, not sticky to another).
        Then ``ahead``, if given, is committed as by ``commit_and_take`` if the run's history
        is still ``ahead.history_length`` long and it is not refused (unseen events);
        otherwise the outcome goes to the inbox and the task leased, if any, comes back as
        ``resumed`` with its inbox. Raises LeaseLost if the activity's lease was lost (then
        nothing is written)."""
        ...

    async def reclaim(self, run_id: str, take: Take) -> Reclaimed:
        """What a write with ``take`` leased to ``take.owner`` when the write's answer was
        lost (the connection dropped after it committed), leased anew: the run's workflow
        task if ``take.owner`` holds it, and the run's activity tasks of ``take.activities``
        it holds on their first attempt. Empty if the write never happened."""
        ...


@dataclass(frozen=True)
class SchemaVersion:
    """A database's schema version beside the newest this tapeflow knows, read without
    migrating: what an operator checks before a deploy (``tapeflow db status``)."""

    current: int
    """The version the database holds; 0 when it has no tapeflow schema yet."""
    latest: int
    """The newest version this tapeflow's migrations make."""

    @property
    def pending(self) -> int:
        """Migrations that opening the backend would apply."""
        return max(self.latest - self.current, 0)


@runtime_checkable
class InspectsSchema(Protocol):
    """The optional capability of reading the schema version without ``open()``, which
    migrates: a look that changes nothing, needed before an upgrade is decided."""

    async def schema_version(self) -> SchemaVersion:
        """The schema version now; creates nothing (no file, no schema). Raises
        BackendUnavailable."""
        ...


@dataclass(frozen=True)
class PollerRecord:
    """Workers seen polling for one workflow or activity name: what ``pollers`` keeps."""

    kind: TaskKind
    name: str
    last_poll_at: datetime
    """The last recorded claim (recorded at most every few seconds: see ``_pollers``)."""


@runtime_checkable
class PollerReads(Protocol):
    """The optional read of who polls for what, for operators (the UI's workers page)."""

    async def list_pollers(self) -> list[PollerRecord]:
        """Every name workers have claimed, by kind then name."""
        ...


def imposed_on(record: WorkflowRecord) -> WorkflowTask:
    """The run of ``record`` as ``Backend.impose_ending`` names it: no lease, no inbox."""
    return WorkflowTask(
        workflow_id=record.id,
        run_id=record.run_id,
        workflow_name=record.name,
        history_length=record.history_length,
        inbox=[],
        lease_token=0,
        claimed_at=record.created_at,
        parent=record.parent,
        queue=record.queue,
        priority=record.priority,
    )


def hand_offs(backend: Backend) -> HandOffs | None:
    """The backend's hand-off capability, if it has one."""
    return backend if isinstance(backend, HandOffs) else None
