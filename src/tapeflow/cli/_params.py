"""Options shared by many commands, declared once."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from tapeflow.backends.connect import DEFAULT_URL, URL_VARIABLE
from tapeflow.cli._exits import CliError, ExitCode

Url = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar=URL_VARIABLE,
        show_envvar=True,
        help=f"Database URL (sqlite:///path.db, postgresql://...); default {DEFAULT_URL}.",
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON, for scripts.")]
WorkflowId = Annotated[str, typer.Argument(help="The workflow's id.", show_default=False)]
Reason = Annotated[str, typer.Option("--reason", help="Recorded in the workflow's history.")]
Modules = Annotated[
    list[str] | None,
    typer.Option(
        "--module",
        "-m",
        help="Module (name or file) that defines the workflows; repeatable.",
        show_default=False,
    ),
]


def parse_json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{what} is not JSON ({exc}): {text!r}", ExitCode.USAGE) from None
