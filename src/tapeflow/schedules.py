"""Schedules: a workflow started at every due time of a cron expression or an interval.

A schedule lives in the database and is fired by the workers that run its workflow, as
many as there are: each due time starts exactly one workflow, with the id
``"{schedule id}@{due time in UTC, ISO 8601}"`` (``"nightly@2026-03-29T01:00:00+00:00"``),
whatever the workers do (a crash in the middle of a firing undoes it whole). Made with
``Client.create_schedule``, found with ``Client.get_schedule`` and ``list_schedules``::

    schedule = await client.create_schedule(
        "nightly-report", report, "eu", cron="0 3 * * *", timezone="Europe/Berlin"
    )
    await schedule.trigger()          # once now, outside the cadence
    print((await schedule.describe()).next_fire_times)

When a due time comes while a run the schedule started is still open, ``overlap`` says
what happens (``tapeflow.backends.schedules.Overlap``); when workers were down, due times
within ``catchup_window`` are started late and older ones are skipped and counted. See
``tapeflow._schedules.decisions`` for the exact rules and ``tapeflow._schedules.cadence``
for time zones and DST.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from tapeflow._definition import call_of, definition_of
from tapeflow._schedules import decisions
from tapeflow._validate import MAX_NAME_LENGTH, check_bool, check_name, fail
from tapeflow.backends.base import Backend
from tapeflow.backends.schedules import (
    DEFAULT_CATCHUP_WINDOW,
    Overlap,
    ScheduleRecord,
    ScheduleRun,
    ScheduleSpec,
    ScheduleState,
    ScheduleWrite,
    StoredSchedule,
    schedules_of,
)
from tapeflow.converter import to_json
from tapeflow.history import JSONValue

if TYPE_CHECKING:
    from tapeflow.client import WorkflowHandle

__all__ = [
    "DEFAULT_CATCHUP_WINDOW",
    "Overlap",
    "ScheduleDescription",
    "ScheduleHandle",
    "ScheduleRun",
    "ScheduleSpec",
]

MAX_SCHEDULE_ID = MAX_NAME_LENGTH - 40
"""Room in a workflow id for ``@`` and the due time."""

NEXT_FIRE_TIMES = 5
"""How many next due times ``describe()`` gives."""

_UNSET: Any = object()


@dataclass(frozen=True)
class ScheduleDescription:
    """A schedule as stored now, with what comes next and what it did last."""

    id: str
    workflow: str
    """The workflow's registered name."""
    args: list[JSONValue]
    """Its arguments, as JSON."""
    spec: ScheduleSpec
    paused: bool
    next_fire_times: list[datetime]
    """The next due times, in UTC (``.astimezone(ZoneInfo(spec.timezone))`` for the local
    time): the first is overdue while no worker that runs the workflow is up. Empty while
    paused."""
    buffered: datetime | None
    """A due time kept by ``overlap="buffer_one"``, to start once no run is open."""
    last_runs: list[ScheduleRun]
    """The workflows it started, the newest first: those still open and the last 10, each
    with its id, due time and status."""
    skipped_catchup: int
    """Due times skipped for being older than ``catchup_window`` when handled."""
    skipped_overlap: int
    """Due times skipped because a run was still open (``skip``, ``buffer_one``)."""
    created_at: datetime
    updated_at: datetime

    @property
    def skipped(self) -> int:
        """Every due time skipped, for either reason."""
        return self.skipped_catchup + self.skipped_overlap

    @property
    def cron(self) -> str | None:
        return self.spec.cron

    @property
    def every(self) -> timedelta | None:
        return self.spec.every

    @property
    def timezone(self) -> str:
        return self.spec.timezone

    @property
    def overlap(self) -> Overlap:
        return self.spec.overlap

    @property
    def catchup_window(self) -> timedelta:
        return self.spec.catchup_window


def description(record: ScheduleRecord) -> ScheduleDescription:
    schedule = record.schedule
    upcoming = (
        []
        if schedule.paused
        else schedule.spec.cadence.upcoming(schedule.next_due, NEXT_FIRE_TIMES)
    )
    assert schedule.created_at is not None
    assert schedule.updated_at is not None
    return ScheduleDescription(
        id=schedule.id,
        workflow=schedule.workflow,
        args=schedule.args,
        spec=schedule.spec,
        paused=schedule.paused,
        next_fire_times=upcoming,
        buffered=schedule.buffered,
        last_runs=record.runs,
        skipped_catchup=schedule.skipped_catchup,
        skipped_overlap=schedule.skipped_overlap,
        created_at=schedule.created_at,
        updated_at=schedule.updated_at,
    )


class ScheduleHandle:
    """A schedule, by id. ``await`` it to have it once its schedule is known to exist
    (ScheduleNotFound otherwise); every method raises ScheduleNotFound for one deleted."""

    def __init__(
        self, backend: Backend, schedule_id: str, workflow: Callable[..., Any] | None = None
    ) -> None:
        self._backend = backend
        self._schedules = schedules_of(backend)
        self.id = schedule_id
        self._workflow = workflow
        """The workflow function, when known: it checks new arguments and types results."""

    def __repr__(self) -> str:
        return f"ScheduleHandle({self.id!r})"

    def __await__(self) -> Generator[Any, None, ScheduleHandle]:
        return self._found().__await__()

    async def _found(self) -> ScheduleHandle:
        await self._schedules.get_schedule(self.id)
        return self

    async def describe(self) -> ScheduleDescription:
        """Its spec, state, next due times, last runs with their statuses, skipped counts."""
        return description(await self._schedules.get_schedule(self.id))

    async def pause(self) -> None:
        """Fire nothing until ``unpause``: due times in between are neither started nor
        counted. ``trigger`` still starts one."""
        await self._schedules.change_schedule(self.id, decisions.pause)

    async def unpause(self) -> None:
        """Fire again, from the next due time after now."""
        await self._schedules.change_schedule(self.id, decisions.unpause)

    async def trigger(self) -> WorkflowHandle[Any] | None:
        """Start the workflow now, outside the cadence (paused or not), as a due time at this
        moment (the database's) would: the overlap policy applies. Returns a handle on the
        workflow started, or None if the policy skipped it or kept it for later
        (``buffer_one``)."""
        from tapeflow.client import WorkflowHandle  # the client imports this module

        created = await self._schedules.change_schedule(self.id, decisions.trigger)
        if not created:
            return None
        hint: object = Any
        if self._workflow is not None:
            hint = definition_of(self._workflow, "workflow").signature.return_hint
        return WorkflowHandle(self._backend, created[0], hint)

    async def update(
        self,
        *new_args: Any,
        cron: str | None = _UNSET,
        every: timedelta | None = _UNSET,
        timezone: str = _UNSET,
        overlap: Overlap = _UNSET,
        catchup_window: timedelta = _UNSET,
        args: Sequence[Any] | None = None,
    ) -> None:
        """Change what is given: a new ``cron`` replaces ``every`` and the other way round,
        and a new cadence or time zone goes on from the next due time after now. The
        workflow's arguments are replaced by positional ones (``update("us")``) or by
        ``args=[...]`` (which may be empty). Checked before anything is written
        (InvalidArgument)."""
        given = {
            name: value
            for name, value in (
                ("cron", cron),
                ("every", every),
                ("timezone", timezone),
                ("overlap", overlap),
                ("catchup_window", catchup_window),
            )
            if value is not _UNSET
        }
        if new_args and args is not None:
            fail("update arguments", args, "given positionally or as args=, not both")
        if args is not None and (isinstance(args, str | bytes) or not isinstance(args, Sequence)):
            fail("args", args, "a list of the workflow's arguments")
        replaced = list(new_args) if new_args else None if args is None else list(args)
        encoded = None if replaced is None else self._encoded(replaced)
        current = await self._schedules.get_schedule(self.id)
        current.schedule.spec.replace(**given)  # checks them now: InvalidArgument, nothing written

        def change(state: ScheduleState) -> ScheduleWrite:
            # from the row as locked: what changed since the look above is kept
            return decisions.update(state, state.schedule.spec.replace(**given), encoded)

        await self._schedules.change_schedule(self.id, change)

    def _encoded(self, arguments: list[Any]) -> list[JSONValue]:
        if self._workflow is None:  # a name only: plain JSON
            return [to_json(value, what="a schedule's argument") for value in arguments]
        return call_of(self._workflow, "workflow", tuple(arguments)).args

    async def delete(self) -> None:
        """Delete the schedule; the workflows it started stay."""
        await self._schedules.delete_schedule(self.id)


async def create_schedule(
    backend: Backend,
    schedule_id: str,
    workflow: Callable[..., Awaitable[Any]] | str,
    args: tuple[Any, ...],
    spec: ScheduleSpec,
    paused: bool,
) -> ScheduleHandle:
    """``Client.create_schedule``'s work, its arguments checked before anything is written."""
    schedules = schedules_of(backend)
    check_name(schedule_id, "schedule id")
    if len(schedule_id) > MAX_SCHEDULE_ID:
        fail("schedule id", schedule_id, f"at most {MAX_SCHEDULE_ID} characters")
    check_bool(paused, "paused")
    call = call_of(workflow, "workflow", args)

    def make(now: datetime) -> StoredSchedule:
        return StoredSchedule(
            id=schedule_id,
            workflow=call.name,
            args=call.args,
            spec=spec,
            paused=paused,
            next_due=spec.cadence.after(now),
        )

    await schedules.create_schedule(make)
    return ScheduleHandle(backend, schedule_id, None if isinstance(workflow, str) else workflow)


async def list_schedules(backend: Backend) -> list[ScheduleDescription]:
    return [description(record) for record in await schedules_of(backend).list_schedules()]
