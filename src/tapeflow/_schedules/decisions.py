"""What a schedule does, decided from its locked row (``ScheduleState``) alone: each
function here returns the ``ScheduleWrite`` the backend stores in that same transaction,
or None for nothing to write. No clock but ``state.now``, no I/O.

Firing: the due times from the row's ``next_due`` up to now are handled together. Those
older than ``now - catchup_window`` are skipped and counted (``skipped_catchup``); the
others (at most ``MAX_CATCHUP``, the latest) are started, unless a run the schedule started
before this firing is still open: then the overlap policy decides (``skip``: all skipped,
counted; ``buffer_one``: the first kept, unless one is kept already, the rest skipped;
``allow_all``: all started; ``cancel_other``: the open runs asked to cancel, all started).
The due times of one firing are weighed against the runs open before it, not against each
other: after downtime, every due time within the window starts, whatever the policy (the
window says how many missed runs are wanted back). A kept due time starts at the first
firing that finds no run open.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from tapeflow.backends.base import NewWorkflow
from tapeflow.backends.schedules import (
    ScheduledStart,
    ScheduleSpec,
    ScheduleState,
    ScheduleWrite,
    StoredSchedule,
    scheduled_id,
)
from tapeflow.history import JSONValue

MAX_CATCHUP = 100
"""The most due times one firing starts: after a long outage of a frequent schedule with
a long window, the latest this many; the older ones are counted as skipped."""


def fire_due(state: ScheduleState) -> ScheduleWrite | None:
    """Start what is due now (see the module docstring); None if nothing is."""
    schedule, now, open_runs = state.schedule, state.now, state.open_runs
    if schedule.paused:
        return None
    starts: list[datetime] = []
    buffered = schedule.buffered
    if buffered is not None and not open_runs:
        starts, buffered = [buffered], None
    if schedule.next_due > now and not starts:
        return None
    spec, next_due = schedule.spec, schedule.next_due
    late, skipped = 0, 0
    cancels: tuple[str, ...] = ()
    if next_due <= now:
        late, on_time, next_due = spec.cadence.due(next_due, now, spec.catchup_window, MAX_CATCHUP)
        if open_runs and on_time:
            on_time, buffered, skipped, cancels = _overlapping(spec, on_time, buffered, open_runs)
        starts += on_time
    changed = dataclasses.replace(
        schedule,
        next_due=next_due,
        buffered=buffered,
        skipped_catchup=schedule.skipped_catchup + late,
        skipped_overlap=schedule.skipped_overlap + skipped,
    )
    return _write(changed, starts, cancels)


def trigger(state: ScheduleState) -> ScheduleWrite:
    """Start one now, outside the cadence, as a due time at ``now`` would (the overlap
    policy weighs it against the open runs); paused or not."""
    schedule = state.schedule
    on_time, buffered, skipped = [state.now], schedule.buffered, 0
    cancels: tuple[str, ...] = ()
    if state.open_runs:
        on_time, buffered, skipped, cancels = _overlapping(
            schedule.spec, on_time, buffered, state.open_runs
        )
    changed = dataclasses.replace(
        schedule, buffered=buffered, skipped_overlap=schedule.skipped_overlap + skipped
    )
    return _write(changed, on_time, cancels, wake=buffered != schedule.buffered)


def pause(state: ScheduleState) -> ScheduleWrite | None:
    if state.schedule.paused:
        return None
    return ScheduleWrite(dataclasses.replace(state.schedule, paused=True))


def unpause(state: ScheduleState) -> ScheduleWrite | None:
    """Due times that came while paused are neither started nor counted: the cadence goes
    on from now."""
    schedule = state.schedule
    if not schedule.paused:
        return None
    next_due = schedule.spec.cadence.after(state.now)
    return ScheduleWrite(dataclasses.replace(schedule, paused=False, next_due=next_due), wake=True)


def update(
    state: ScheduleState, spec: ScheduleSpec, args: Sequence[JSONValue] | None
) -> ScheduleWrite:
    """The schedule with ``spec`` (and ``args``, if given). A new cadence or time zone goes
    on from now; a buffered due time is dropped (counted) if the policy is no longer
    ``buffer_one``."""
    schedule = state.schedule
    changes: dict[str, Any] = {"spec": spec}
    if args is not None:
        changes["args"] = list(args)
    old = schedule.spec
    if (spec.cron, spec.every, spec.timezone) != (old.cron, old.every, old.timezone):
        changes["next_due"] = spec.cadence.after(state.now)
    if schedule.buffered is not None and spec.overlap != "buffer_one":
        changes["buffered"] = None
        changes["skipped_overlap"] = schedule.skipped_overlap + 1
    return ScheduleWrite(dataclasses.replace(schedule, **changes), wake=True)


def _overlapping(
    spec: ScheduleSpec,
    on_time: list[datetime],
    buffered: datetime | None,
    open_runs: tuple[str, ...],
) -> tuple[list[datetime], datetime | None, int, tuple[str, ...]]:
    """Due times that come while runs are open, by the overlap policy: those to start, the
    one kept, how many are skipped, and the runs to ask to cancel."""
    match spec.overlap:
        case "allow_all":
            return on_time, buffered, 0, ()
        case "cancel_other":
            return on_time, buffered, 0, open_runs
        case "buffer_one" if buffered is None:
            return [], on_time[0], len(on_time) - 1, ()
        case _:  # skip, or buffer_one with one kept already
            return [], buffered, len(on_time), ()


def _write(
    schedule: StoredSchedule,
    due_times: Sequence[datetime],
    cancels: tuple[str, ...],
    *,
    wake: bool = False,
) -> ScheduleWrite:
    starts = tuple(
        ScheduledStart(
            due,
            NewWorkflow(
                id=scheduled_id(schedule.id, due),
                name=schedule.workflow,
                version="",
                args=list(schedule.args),
                start_at=None,
            ),
        )
        for due in due_times
    )
    reason = ""
    if cancels and starts:
        reason = (
            f"schedule {schedule.id!r} (overlap 'cancel_other') starts {starts[-1].workflow.id!r}"
        )
    return ScheduleWrite(schedule, starts, cancels, reason, wake)
