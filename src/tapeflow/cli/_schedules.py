"""``tapeflow schedules`` and ``tapeflow schedule ...``: over ``Client.list_schedules`` and
``ScheduleHandle``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Annotated, Any

import typer

from tapeflow.cli._backend import opened
from tapeflow.cli._output import print_fields, print_json, print_table
from tapeflow.cli._params import Json, Url
from tapeflow.cli._run import run
from tapeflow.client import Client
from tapeflow.schedules import ScheduleDescription, ScheduleHandle

COLUMNS = ("id", "workflow", "when", "state", "next fire, UTC", "last run")

ScheduleId = Annotated[str, typer.Argument(help="The schedule's id.", show_default=False)]


def schedules(url: Url = None, json_: Json = False) -> None:
    """List the schedules: cadence, state, next fire time, last run, due times skipped."""

    async def work() -> None:
        async with opened(url) as backend:
            found = await Client(backend).list_schedules()
        if json_:
            print_json([description_json(d) for d in found])
        else:
            print_table(COLUMNS, map(_row, found))

    run(work())


def describe(schedule_id: ScheduleId, url: Url = None, json_: Json = False) -> None:
    """Show a schedule: its spec, state, next fire times, last runs and skipped counts."""

    async def work() -> None:
        async with opened(url) as backend:
            found = await Client(backend).get_schedule(schedule_id).describe()
        shown = description_json(found)
        if json_:
            print_json(shown)
            return
        runs = shown.pop("last_runs")
        shown["next_fire_times"] = ", ".join(shown["next_fire_times"])
        print_fields(shown)
        if runs:
            typer.echo("")
            rows = ((r["workflow_id"], r["status"] or "deleted") for r in runs)
            print_table(("last runs", "status"), rows)

    run(work())


def pause(schedule_id: ScheduleId, url: Url = None, json_: Json = False) -> None:
    """Fire nothing until unpaused (due times in between are not caught up)."""
    _act(schedule_id, url, json_, "paused", ScheduleHandle.pause)


def unpause(schedule_id: ScheduleId, url: Url = None, json_: Json = False) -> None:
    """Fire again, from the next due time on."""
    _act(schedule_id, url, json_, "unpaused", ScheduleHandle.unpause)


def delete(schedule_id: ScheduleId, url: Url = None, json_: Json = False) -> None:
    """Delete a schedule; the workflows it started stay."""
    _act(schedule_id, url, json_, "deleted", ScheduleHandle.delete)


def _act(
    schedule_id: str,
    url: str | None,
    json_: bool,
    done: str,
    act: Callable[[ScheduleHandle], Awaitable[None]],
) -> None:
    async def work() -> None:
        async with opened(url) as backend:
            await act(Client(backend).get_schedule(schedule_id))
        if json_:
            print_json({"id": schedule_id})
        else:
            typer.echo(f"schedule {schedule_id} {done}")

    run(work())


def trigger(schedule_id: ScheduleId, url: Url = None, json_: Json = False) -> None:
    """Start the schedule's workflow now, as its overlap policy allows; print its id."""

    async def work() -> None:
        async with opened(url) as backend:
            started = await Client(backend).get_schedule(schedule_id).trigger()
        workflow_id = None if started is None else started.id
        if json_:
            print_json({"id": schedule_id, "workflow_id": workflow_id})
        elif workflow_id is None:
            typer.echo(f"schedule {schedule_id}: a run is open; its overlap policy started none")
        else:
            typer.echo(workflow_id)

    run(work())


def _moment(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _span(span: timedelta | None) -> float | None:
    return None if span is None else span.total_seconds()


def description_json(found: ScheduleDescription) -> dict[str, Any]:
    """A schedule as JSON: times in ISO 8601 (UTC), durations in seconds."""
    spec = found.spec
    return {
        "id": found.id,
        "workflow": found.workflow,
        "args": found.args,
        "cron": spec.cron,
        "every_seconds": _span(spec.every),
        "timezone": spec.timezone,
        "overlap": spec.overlap,
        "catchup_window_seconds": _span(spec.catchup_window),
        "paused": found.paused,
        "next_fire_times": [t.isoformat() for t in found.next_fire_times],
        "buffered": _moment(found.buffered),
        "skipped": found.skipped,
        "skipped_catchup": found.skipped_catchup,
        "skipped_overlap": found.skipped_overlap,
        "last_runs": [
            {
                "workflow_id": run.workflow_id,
                "due_at": run.due_at.isoformat(),
                "started_at": run.started_at.isoformat(),
                "status": None if run.status is None else run.status.value,
            }
            for run in found.last_runs
        ],
        "created_at": found.created_at.isoformat(),
        "updated_at": found.updated_at.isoformat(),
    }


def _row(found: ScheduleDescription) -> tuple[object, ...]:
    spec = found.spec
    when = f"{spec.cron} {spec.timezone}" if spec.cron is not None else f"every {spec.every}"
    state: str = "paused" if found.paused else spec.overlap
    if found.skipped:
        state += f", {found.skipped} skipped"
    upcoming = found.next_fire_times
    last = found.last_runs[0] if found.last_runs else None
    return (
        found.id,
        found.workflow,
        when,
        state,
        upcoming[0].strftime("%Y-%m-%d %H:%M") if upcoming else "",
        "" if last is None else (last.status or "deleted"),
    )
