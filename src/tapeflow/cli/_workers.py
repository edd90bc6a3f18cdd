"""``tapeflow workers``: the workers that run, or ran lately, and what each runs."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import typer

from tapeflow.backends.presence import WorkerPresence, WorkerRecord
from tapeflow.cli._backend import opened
from tapeflow.cli._exits import CliError
from tapeflow.cli._output import print_json, print_table
from tapeflow.cli._params import Json, Url
from tapeflow.cli._run import run

COLUMNS = ("name", "state", "host", "pid", "workflows", "activities", "last seen")


def workers(
    within: Annotated[
        float,
        typer.Option("--within", min=0.001, help="Minutes: workers heard from in this last while."),
    ] = 60.0,
    url: Url = None,
    json_: Json = False,
) -> None:
    """List the workers heard from lately (stopped and silent ones too), the newest first."""

    async def work() -> None:
        async with opened(url) as backend:
            if not isinstance(backend, WorkerPresence):
                raise CliError("this backend does not keep which workers run")
            found = await backend.list_workers(timedelta(minutes=within))
        if json_:
            print_json([_json(w) for w in found])
        else:
            print_table(COLUMNS, map(_row, found))

    run(work())


def _json(record: WorkerRecord) -> dict[str, Any]:
    info = record.info
    return {
        "id": info.id,
        **info.to_json(),
        "state": record.state,
        "started_at": record.started_at.isoformat(),
        "silent_for_seconds": record.silent_for.total_seconds(),
        "last_seen_at": record.last_seen_at.isoformat(),
        "stopped_at": None if record.stopped_at is None else record.stopped_at.isoformat(),
    }


def _row(record: WorkerRecord) -> tuple[object, ...]:
    info = record.info
    return (
        info.name,
        record.state,
        info.host,
        info.pid,
        ", ".join(info.workflows),
        ", ".join(info.activities),
        f"{round(record.silent_for.total_seconds())} s ago",
    )
