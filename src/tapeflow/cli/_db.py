"""``tapeflow db``: the schema and the upkeep of the database itself."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

import typer

from tapeflow.backends.base import InspectsSchema, SchemaVersion
from tapeflow.backends.connect import connect
from tapeflow.cli._backend import opened
from tapeflow.cli._exits import CliError, ExitCode
from tapeflow.cli._output import print_fields, print_json
from tapeflow.cli._params import Json, Url
from tapeflow.cli._run import NotAvailable, run
from tapeflow.client import DELETE_BATCH, Client

_SPAN = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNIT = {"": "seconds", "s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def migrate(url: Url = None, json_: Json = False) -> None:
    """Create the schema, or bring it to this tapeflow's version (workers do so too)."""

    async def work() -> None:
        async with opened(url, create=True) as backend:
            version = await _version_of(backend)
        _show(version, json_)

    run(work())


def status(url: Url = None, json_: Json = False) -> None:
    """Show the schema version and how many migrations are pending; changes nothing."""

    async def work() -> None:
        _show(await _version_of(connect(url).backend), json_)

    run(work())


async def _version_of(backend: object) -> SchemaVersion:
    if not isinstance(backend, InspectsSchema):
        raise NotAvailable("db status", f"a backend that reads its schema version ({backend!r})")
    return await backend.schema_version()


def _show(version: SchemaVersion, json_: bool) -> None:
    if version.current > version.latest:
        state = "newer than this tapeflow: upgrade tapeflow"
    elif version.pending:
        state = f"{version.pending} migration(s) pending: run 'tapeflow db migrate'"
    else:
        state = "up to date"
    if json_:
        print_json(
            {"current": version.current, "latest": version.latest, "pending": version.pending}
        )
    else:
        print_fields({"schema version": version.current, "latest": version.latest, "state": state})


def gc(
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than", help="Delete workflows that ended longer ago: 30d, 12h, 90m, 45s."
        ),
    ],
    batch: Annotated[
        int, typer.Option("--batch", min=1, help="Workflows per transaction.")
    ] = DELETE_BATCH,
    url: Url = None,
    json_: Json = False,
) -> None:
    """Delete workflows (and their histories) that ended longer ago than --older-than."""

    async def work() -> None:
        age = parse_span(older_than)
        async with opened(url) as backend:
            deleted = await Client(backend).delete_closed(age, batch=batch)
        if json_:
            print_json({"deleted": deleted})
        else:
            typer.echo(f"deleted {deleted} workflow(s) that ended before {age} ago")

    run(work())


def parse_span(text: str) -> timedelta:
    found = _SPAN.fullmatch(text.strip())
    if found is None:
        raise CliError(f"--older-than: not a duration such as 30d or 12h: {text!r}", ExitCode.USAGE)
    return timedelta(**{_UNIT[found.group(2)]: float(found.group(1))})
