"""The optional capability of schedules: workflows started at due times kept in the database
and fired by the workers that run the workflow (see ``tapeflow.schedules``).

A schedule is one row: its cadence, its policies, and its next due time. A worker's firing
loop (``tapeflow._worker.schedules``) asks which schedules of its workflows are due
(``due_schedules``), then for each locks its row (another worker holding it is skipped,
never waited on), lets the pure decision of ``tapeflow._schedules.decisions`` say what to
do, and stores that decision (``ScheduleWrite``: the row as it is to be, the workflows to
start, the runs to ask to cancel) in the same transaction: a due time is started, and the
next due time stored, together or not at all. The workflow of a due time has the id
``"{schedule id}@{due time in UTC, ISO 8601}"``, so that even a second start of one due
time (none should happen) would find its id taken. Client calls (pause, update, trigger)
take the same path with their own decision, waiting for the lock.

Times are the database's clock, as every other time the backends keep.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args, runtime_checkable

from tapeflow._schedules.cadence import MIN_EVERY, Cadence, check_cron, zone
from tapeflow._validate import check_choice, check_timedelta, fail
from tapeflow.backends.base import NewWorkflow, WorkflowStatus
from tapeflow.errors import InvalidArgument
from tapeflow.history import JSONValue

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tapeflow.backends._rows import NamedRow

Overlap = Literal["skip", "buffer_one", "allow_all", "cancel_other"]
"""What a due time does while a run the schedule started earlier is still open: is
skipped (counted); is kept, one at most, and started once no run is open (any more are
skipped); starts anyway; or asks the open runs to cancel and starts."""

OVERLAPS: tuple[Overlap, ...] = get_args(Overlap)

DEFAULT_CATCHUP_WINDOW = timedelta(hours=1)
"""How late a due time may still be started, by default: a restart or a short outage
loses nothing, a night without workers does not start a night's worth of runs."""

MIN_CATCHUP_WINDOW = timedelta(seconds=1)
"""The shortest window: every start is a little late (a few milliseconds), and a window
shorter than that would skip due times the workers were up for."""

MAX_SPAN = timedelta(days=36_500)

KEEP_RUNS = 10
"""The runs a schedule remembers (``describe().last_runs``), besides those still open."""


@dataclass(frozen=True)
class ScheduleSpec:
    """When a schedule is due, and what it does when it is late or overlapping. Checked
    when made: a bad value raises InvalidArgument."""

    cron: str | None = None
    """A cron expression: five fields (minute hour day-of-month month day-of-week), or six
    with seconds first, or a macro (``@daily``, ``@hourly``...), read in ``timezone``."""
    every: timedelta | None = None
    """Or an interval, at least 100 ms, counted from the Unix epoch in UTC (every 5 minutes
    is :00, :05, :10...). Exactly one of ``cron`` and ``every`` is given."""
    timezone: str = "UTC"
    """The IANA time zone a cron expression is read in (DST as cron has it: see
    ``tapeflow._schedules.cadence``)."""
    overlap: Overlap = "skip"
    """What a due time does while a run the schedule started is open (see ``Overlap``)."""
    catchup_window: timedelta = DEFAULT_CATCHUP_WINDOW
    """How late a due time may still be started (after workers were down, say): older
    ones are skipped and counted. At least a second."""

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.every is None):
            given = "both" if self.cron is not None else "neither"
            raise InvalidArgument(f"a schedule takes exactly one of cron= and every=, got {given}")
        if self.cron is not None:
            check_cron(self.cron)
        if self.every is not None:
            check_timedelta(self.every, "every", positive=True, maximum=MAX_SPAN)
            if self.every < MIN_EVERY:
                fail("every", self.every, f"at least {MIN_EVERY.total_seconds()} seconds")
        zone(self.timezone)
        check_choice(self.overlap, "overlap", OVERLAPS)
        check_timedelta(self.catchup_window, "catchup_window", maximum=MAX_SPAN)
        if self.catchup_window < MIN_CATCHUP_WINDOW:
            fail("catchup_window", self.catchup_window, "at least one second")

    @cached_property
    def cadence(self) -> Cadence:
        return Cadence(self.cron, self.every, self.timezone)

    def fire_times(self, after: datetime) -> Iterator[datetime]:
        """The due times strictly after ``after`` (tz-aware), as UTC datetimes: a local time
        in the hour repeated in autumn compares unequal to every time of another zone
        (PEP 495), so that UTC is the only safe form to compare."""
        if not isinstance(after, datetime) or after.utcoffset() is None:
            fail("after", after, "a tz-aware datetime")
        moment = after.astimezone(UTC)
        while True:
            moment = self.cadence.after(moment)
            yield moment

    def replace(self, **changes: Any) -> ScheduleSpec:
        """This spec with ``changes``, checked; a new ``cron`` or ``every`` replaces the
        other."""
        if changes.get("cron") is not None:
            changes.setdefault("every", None)
        if changes.get("every") is not None:
            changes.setdefault("cron", None)
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class StoredSchedule:
    """A schedule's row: what it starts, when, and where it stands."""

    id: str
    workflow: str
    """The workflow's registered name: the workers that run it fire the schedule."""
    args: list[JSONValue]
    spec: ScheduleSpec
    paused: bool
    next_due: datetime
    """The earliest due time not handled yet (in the past while no worker fires it)."""
    buffered: datetime | None = None
    """A due time kept by ``overlap="buffer_one"``, started once no run is open."""
    skipped_catchup: int = 0
    """Due times skipped for being older than the catch-up window when handled."""
    skipped_overlap: int = 0
    """Due times skipped for a run still open (``skip``, or ``buffer_one`` with one kept)."""
    created_at: datetime | None = None
    """Set by the backend."""
    updated_at: datetime | None = None
    """Set by the backend at every write."""


@dataclass(frozen=True)
class ScheduleRun:
    """A workflow a schedule started, as its records keep it."""

    workflow_id: str
    due_at: datetime
    """The due time it was started for (a ``trigger``'s: when it was asked for)."""
    started_at: datetime
    status: WorkflowStatus | None
    """Its latest run's status; None once the workflow was deleted."""


@dataclass(frozen=True)
class ScheduleRecord:
    schedule: StoredSchedule
    runs: list[ScheduleRun]
    """The newest first: the open ones and the last ``KEEP_RUNS``."""


@dataclass(frozen=True)
class ScheduleState:
    """What a decision sees, its row locked."""

    schedule: StoredSchedule
    open_runs: tuple[str, ...]
    """The workflow ids of the runs the schedule started that are still open, oldest first."""
    now: datetime
    """The database's time."""


@dataclass(frozen=True)
class ScheduledStart:
    due_at: datetime
    workflow: NewWorkflow


@dataclass(frozen=True)
class ScheduleWrite:
    """A decision, as the backend stores it in the transaction that locked the row: the row
    as it is to be, the workflows to start (an id taken is left as it is), each recorded as
    the schedule's run, and the runs to ask to cancel (as ``request_cancel``, once)."""

    schedule: StoredSchedule
    starts: tuple[ScheduledStart, ...] = ()
    cancels: tuple[str, ...] = ()
    cancel_reason: str = ""
    wake: bool = False
    """Its due time or state changed: wake the firing loops (``schedule_topic``)."""


@dataclass(frozen=True)
class DueSchedules:
    """What a firing loop needs to know of its workflows' schedules now."""

    due: list[str] = field(default_factory=list)
    """Schedules to fire now: due, or holding a buffered due time and no open run."""
    next_in: timedelta | None = None
    """Until the earliest next due time of the others, on the database's clock."""
    awaiting: list[str] = field(default_factory=list)
    """Workflow ids whose end lets a buffered due time start (watch them)."""


@dataclass(frozen=True)
class Fired:
    """What one ``fire_schedules`` did."""

    created: list[str] = field(default_factory=list)
    """The ids of the workflows it created."""
    handled: list[str] = field(default_factory=list)
    """The schedules it locked and decided on (written or not): the others were held by
    another transaction, or are gone."""
    failed: dict[str, str] = field(default_factory=dict)
    """Schedules whose row could not be read or decided here (a time zone this machine
    does not know, say), with why: left as they are, the others fired all the same."""


Decide = Callable[[ScheduleState], ScheduleWrite | None]


@runtime_checkable
class Schedules(Protocol):
    """The optional capability of keeping and firing schedules."""

    async def create_schedule(self, make: Callable[[datetime], StoredSchedule]) -> StoredSchedule:
        """Store the schedule ``make(now)`` returns (given the database's time, so that its
        first due time is computed on that clock), and wake the firing loops. Raises
        ScheduleAlreadyExists, having written nothing, if its id is taken."""
        ...

    async def change_schedule(self, schedule_id: str, decide: Decide) -> list[str] | None:
        """Lock the schedule's row (waiting for another transaction holding it), and store
        what ``decide`` says of it, in one transaction; returns the ids of the workflows it
        created, or None if ``decide`` said nothing. Raises ScheduleNotFound."""
        ...

    async def fire_schedules(self, schedule_ids: Sequence[str], decide: Decide) -> Fired:
        """Lock the rows of those schedules that no other transaction holds (skipping, never
        waiting for, the others) and store what ``decide`` says of each, all in one
        transaction: the firing of what is due."""
        ...

    async def due_schedules(self, workflows: Sequence[str], limit: int) -> DueSchedules:
        """Which unpaused schedules of these workflow names are due now (up to ``limit``,
        the most overdue first), when the next of the others is, and the runs buffered
        due times wait for."""
        ...

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord:
        """Raises ScheduleNotFound."""
        ...

    async def list_schedules(self) -> list[ScheduleRecord]:
        """Every schedule, by id."""
        ...

    async def delete_schedule(self, schedule_id: str) -> None:
        """Delete the schedule and its records of runs (the workflows stay). Raises
        ScheduleNotFound."""
        ...


def schedules_of(backend: object) -> Schedules:
    """The backend's schedules capability. Raises InvalidArgument if it has none."""
    if not isinstance(backend, Schedules):
        raise InvalidArgument(f"{backend!r} keeps no schedules (the Schedules capability)")
    return backend


def scheduled_id(schedule_id: str, due: datetime) -> str:
    """The workflow id of a schedule's due time: ``"nightly@2026-03-29T01:00:00+00:00"``."""
    return f"{schedule_id}@{due.astimezone(UTC).isoformat()}"


def stored_schedule(
    row: NamedRow, moment: Callable[[Any], datetime], span: Callable[[Any], timedelta]
) -> StoredSchedule:
    """A ``schedules`` row, its times and durations as the backend stores them."""
    args = row["args"]
    every, buffered = row["every"], row["buffered_at"]
    return StoredSchedule(
        id=row["id"],
        workflow=row["workflow_name"],
        args=json.loads(args) if isinstance(args, str) else args,
        spec=ScheduleSpec(
            cron=row["cron"],
            every=None if every is None else span(every),
            timezone=row["timezone"],
            overlap=row["overlap"],
            catchup_window=span(row["catchup_window"]),
        ),
        paused=bool(row["paused"]),
        next_due=moment(row["next_due_at"]),
        buffered=None if buffered is None else moment(buffered),
        skipped_catchup=row["skipped_catchup"],
        skipped_overlap=row["skipped_overlap"],
        created_at=moment(row["created_at"]),
        updated_at=moment(row["updated_at"]),
    )


def schedule_run(row: NamedRow, moment: Callable[[Any], datetime]) -> ScheduleRun:
    """A ``schedule_runs`` row with its workflow's status."""
    status = row["status"]
    return ScheduleRun(
        workflow_id=row["workflow_id"],
        due_at=moment(row["due_at"]),
        started_at=moment(row["started_at"]),
        status=None if status is None else WorkflowStatus(status),
    )
