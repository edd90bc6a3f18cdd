"""Running a command's coroutine: its errors become one line on stderr and an exit code."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Iterator
from typing import Any

import typer

from tapeflow.cli._exits import CliError, ExitCode, exit_code_for
from tapeflow.errors import TapeflowError


def run(work: Coroutine[Any, Any, None]) -> None:
    with reported():
        asyncio.run(work)


@contextlib.contextmanager
def reported() -> Iterator[None]:
    """Errors inside become one line on stderr and the exit code they call for."""
    try:
        yield
    except (TapeflowError, CliError) as exc:
        message = " ".join(str(exc).split())  # one line, even for a multi-line driver message
        typer.echo(f"tapeflow: error: {message}", err=True)
        raise typer.Exit(exit_code_for(exc)) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


class NotAvailable(CliError):
    """A command over a capability the backend does not have."""

    def __init__(self, command: str, api: str) -> None:
        super().__init__(
            f"'tapeflow {command}' needs {api}, which this backend does not have",
            ExitCode.ERROR,
        )
