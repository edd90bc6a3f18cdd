"""The database a command works on: ``--url``, else $TAPEFLOW_DATABASE_URL, else the same
default as ``tapeflow.connect()``, so a worker started here and a program that calls
``connect()`` meet on one database."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from tapeflow.backends._redact import redact
from tapeflow.backends.base import Backend, InspectsSchema
from tapeflow.backends.connect import connect
from tapeflow.cli._exits import CliError


@contextlib.asynccontextmanager
async def opened(url: str | None, *, create: bool = False) -> AsyncIterator[Backend]:
    """The backend at ``url``, open (and so migrated).

    Unless ``create``, a database without a tapeflow schema is refused instead of made: a
    read aimed at the wrong file or schema (a typo, a missing ``--url``) should say so, not
    leave an empty database behind and report that it holds nothing."""
    connection = connect(url)  # InvalidArgument for a URL that names no backend
    if not create and await _is_empty(connection.backend):
        raise CliError(
            f"no tapeflow database at {redact(connection.url)}: give --url or "
            "$TAPEFLOW_DATABASE_URL, or create it ('tapeflow db migrate', or a worker)"
        )
    async with connection as backend:
        yield backend


async def _is_empty(backend: Backend) -> bool:
    """No tapeflow schema there yet; a backend that cannot tell is taken at its word."""
    return isinstance(backend, InspectsSchema) and (await backend.schema_version()).current == 0
