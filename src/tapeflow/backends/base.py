"""The backend protocol: the narrow, typed surface every storage engine implements.

Workers and clients talk to storage only through this. Every method that changes a
workflow does it in one transaction. Task methods are fenced by the lease token handed out
at claim time: a worker whose lease expired or was taken over gets ``LeaseLost`` and its
write is discarded.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Protocol, Self

from tapeflow.backends.wakeups import Watch
from tapeflow.history import (
    ActivityCompleted,
    ActivityFailed,
    Failure,
    HistoryEvent,
    Incoming,
    JSONValue,
)


class WorkflowStatus(enum.StrEnum):
    PENDING = "pending"
    """Scheduled; no worker has run it yet (perhaps none has registered it)."""
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (WorkflowStatus.COMPLETED, WorkflowStatus.FAILED)


@dataclass(frozen=True)
class NewWorkflow:
    id: str
    name: str
    version: str
    args: list[JSONValue]
    start_at: datetime | None
    """When the workflow becomes runnable; None means now (the backend's clock)."""


@dataclass(frozen=True)
class WorkflowRecord:
    id: str
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


@dataclass(frozen=True)
class InboxEvent:
    id: int
    event: Incoming


@dataclass(frozen=True)
class WorkflowTask:
    workflow_id: str
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


@dataclass(frozen=True)
class ActivityTask:
    id: int
    workflow_id: str
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


@dataclass(frozen=True)
class EagerActivities:
    """New activity tasks the committing worker takes itself, leased in the commit's own
    transaction: it runs them at once, with no claim and no wake-up in between."""

    seqs: frozenset[int]
    owner: str
    lease: timedelta


@dataclass(frozen=True)
class ResumeWorkflow:
    """Lease the workflow task in the same transaction that records an activity's outcome,
    if it is free, so the worker that ran the activity continues the workflow at once."""

    owner: str
    lease: timedelta


@dataclass(frozen=True)
class Continuation:
    """The workflow's next task, run ahead by the worker that ran one of its activities, on
    its cached instance fed only that activity's outcome. It is committed in the transaction
    that records the outcome if the workflow's task is free and its history is still
    ``history_length`` events long; otherwise the outcome is recorded alone (and the task
    resumed by ``resume``, if free), so nothing is lost either way."""

    resume: ResumeWorkflow
    history_length: int
    events: Sequence[HistoryEvent]
    """WorkflowTaskStarted, the activity's outcome, then the task's decisions."""
    eager: EagerActivities | None = None


@dataclass(frozen=True)
class Continued:
    """What ``continue_after_activity`` did, the outcome being recorded either way."""

    committed: bool
    """The continuation is in history: the cached instance is current."""
    eager: list[ActivityTask]
    """Activity tasks the continuation's commit leased to the worker."""
    resumed: WorkflowTask | None
    """Not committed, but the workflow's task was free: leased to the worker, to run now."""


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
    """The workflow id for a workflow task, the task id (as text) for an activity task."""
    token: int


class Backend(Protocol):
    """Storage for workflows. See the module docstring for the guarantees."""

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

    async def create_workflow(self, new: NewWorkflow) -> None:
        """Write the workflow, its workflow task and its start event, all or nothing.

        Raises WorkflowAlreadyExists if the id is taken.
        """

    async def get_workflow(self, workflow_id: str) -> WorkflowRecord:
        """Raises WorkflowNotFound."""
        ...

    async def load_history(self, workflow_id: str) -> list[HistoryEvent]:
        """The committed history, in sequence order. Raises WorkflowNotFound."""
        ...

    async def send_event(self, workflow_id: str, name: str, payload: JSONValue) -> None:
        """Append to the workflow's inbox. Raises WorkflowNotFound, WorkflowAlreadyCompleted."""

    def watch(self, topics: Iterable[str]) -> Watch:
        """Start watching wake-up topics (``work_topic``, ``finished_topic``): the watch is
        set by every later commit that concerns them. Make it before looking, wait after."""
        ...

    @property
    def wakes_other_processes(self) -> bool:
        """Whether watches also wake for commits of other processes (right now; this may stop
        while a connection is down). If not, callers must poll to see them."""
        ...

    # -- workflow tasks --------------------------------------------------------------------

    async def claim_workflow_tasks(
        self, names: Sequence[str], owner: str, lease: timedelta, limit: int
    ) -> list[WorkflowTask]:
        """Lease up to ``limit`` workflow tasks (of these workflow names) with visible events."""
        ...

    async def commit_workflow_task(
        self,
        task: WorkflowTask,
        consumed: Sequence[int],
        events: Sequence[HistoryEvent],
        eager: EagerActivities | None = None,
    ) -> list[ActivityTask]:
        """Append ``events`` to history, delete the ``consumed`` inbox events, carry out the
        decisions among the events (activity tasks, timers, completion) and release the lease.
        Returns the ``eager`` activity tasks, leased to their owner (attempt 1).

        A commit that ends the workflow while the inbox holds events other than timers that
        are not among ``consumed`` would drop them: it writes nothing and raises
        UnseenEvents, so that every event accepted by ``send_event`` reaches history. Raises
        LeaseLost. Either way the caller gives back the lease it may still hold
        (``abandon_workflow_task``), and the task runs again with what is there now."""
        ...

    async def abandon_workflow_task(
        self, task: WorkflowTask, error: str | None, delay: timedelta
    ) -> None:
        """Release the lease without progress; not claimed again for ``delay``. An error is
        kept on the task (``WorkflowRecord.task_error``) until a commit succeeds.
        Raises LeaseLost."""

    # -- activity tasks --------------------------------------------------------------------

    async def claim_activity_tasks(
        self, names: Sequence[str], owner: str, lease: timedelta, limit: int
    ) -> list[ActivityTask]:
        """Lease up to ``limit`` due activity tasks of these names, counting an attempt each."""
        ...

    async def reclaim_workflow_task(
        self, workflow_id: str, resume: ResumeWorkflow
    ) -> WorkflowTask | None:
        """The workflow task a ``resume`` leased to its owner when the answer was lost:
        leased anew and returned, or None if it is not held by that owner."""
        ...

    async def reclaim_eager_activities(
        self, workflow_id: str, eager: EagerActivities
    ) -> list[ActivityTask]:
        """The eager activity tasks a commit leased to ``eager.owner`` when the commit's answer
        was lost (the connection dropped after it committed): leased anew and returned, so
        the worker runs them now instead of after their lease runs out. Empty if the commit
        never happened."""
        ...

    async def complete_activity_task(
        self,
        task: ActivityTask,
        outcome: ActivityCompleted | ActivityFailed,
        resume: ResumeWorkflow | None = None,
    ) -> WorkflowTask | None:
        """Delete the task and hand its final outcome to the workflow; with ``resume``, also
        lease the workflow's task to the caller if it is free, and return it.
        Raises LeaseLost."""
        ...

    async def continue_after_activity(
        self,
        task: ActivityTask,
        outcome: ActivityCompleted | ActivityFailed,
        continuation: Continuation,
    ) -> Continued:
        """``complete_activity_task`` and, in the same transaction, the workflow's next task
        when the worker could run it ahead (see Continuation), unless it would end the
        workflow past unseen events (see ``commit_workflow_task``). Raises LeaseLost if the
        activity's lease was lost (then nothing is written)."""
        ...

    async def retry_activity_task(
        self,
        task: ActivityTask,
        failure: Failure,
        delay: timedelta,
        heartbeat_details: JSONValue = None,
    ) -> None:
        """Release the task for another attempt after ``delay``, keeping the attempt's last
        heartbeat details (when not None) for the next one. Raises LeaseLost."""

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
        self, kind: TaskKind, names: Sequence[str], owner: str | None = None
    ) -> timedelta | None:
        """How long until the earliest not-yet-due task of these names becomes due, if any,
        for ``owner`` (a workflow task sticky to another worker is due to it STICKY_FOR
        later).

        Relative, because the backend's clock decides: a worker's clock may be wrong."""
        ...
