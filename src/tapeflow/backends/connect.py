"""``tapeflow.connect(url)``: the backend a URL names, opened (and its schema made) on use."""

from __future__ import annotations

import os
from collections.abc import Generator
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tapeflow._validate import fail
from tapeflow.backends import failpoints
from tapeflow.backends.base import Backend
from tapeflow.errors import InvalidArgument

DEFAULT_URL = "sqlite:///tapeflow.db"
URL_VARIABLE = "TAPEFLOW_DATABASE_URL"


def backend_for(url: str) -> Backend:
    """The (not yet opened) backend for ``url``, which follows SQLAlchemy's convention:
    ``sqlite:///relative.db``, ``sqlite:////absolute/path.db``, ``sqlite://`` (in memory),
    ``postgresql://user:password@host:5432/db`` (add ``?schema=name`` to pick the schema)."""
    if not isinstance(url, str) or "://" not in url:
        fail("database URL", url, "a URL string such as 'sqlite:///tapeflow.db'")
    scheme, _, rest = url.partition("://")
    if scheme == "sqlite":
        from tapeflow.backends.sqlite import SQLiteBackend

        if rest in ("", "/", "/:memory:"):
            return SQLiteBackend(":memory:")
        if not rest.startswith("/"):
            fail("database URL", url, "'sqlite:///path.db' (three slashes) for SQLite")
        return SQLiteBackend(rest[1:].partition("?")[0])
    if scheme in ("postgresql", "postgres"):
        return _postgres(url)
    fail("database URL", url, "a sqlite:// or postgresql:// URL")


def _postgres(url: str) -> Backend:
    """``postgresql://user:pass@host:port/db?schema=name``; ``schema`` (default "tapeflow")
    is tapeflow's own parameter, every other one goes to libpq."""
    try:
        from tapeflow.backends.postgres import PostgresBackend
    except ImportError as exc:
        raise InvalidArgument(
            "PostgreSQL needs psycopg 3 and psycopg_pool: install tapeflow with its postgres"
            f" extra ('path/to/tapeflow[postgres]'), or 'psycopg[pool]' yourself ({exc})"
        ) from None
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 (it raises for a port that is not a number)
    except ValueError:
        fail("database URL", url, "a URL whose port is a number from 0 to 65535")
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((value for key, value in query if key == "schema"), "tapeflow")
    rest = urlencode([(key, value) for key, value in query if key != "schema"])
    conninfo = urlunsplit(parts._replace(scheme="postgresql", query=rest))
    return PostgresBackend(conninfo, schema=schema)


class Connection:
    """Use as ``async with tapeflow.connect(url) as backend`` or ``backend = await ...``."""

    def __init__(self, url: str | None) -> None:
        self.url = os.environ.get(URL_VARIABLE) or DEFAULT_URL if url is None else url
        self.backend = failpoints.from_environment(backend_for(self.url))

    def __await__(self) -> Generator[Any, None, Backend]:
        yield from self.backend.open().__await__()
        return self.backend

    async def __aenter__(self) -> Backend:
        await self.backend.open()
        return self.backend

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.backend.close()


def connect(url: str | None = None) -> Connection:
    """Connect to the backend at ``url`` (default: $TAPEFLOW_DATABASE_URL, else
    ``sqlite:///tapeflow.db``), creating its schema if missing."""
    return Connection(url)
