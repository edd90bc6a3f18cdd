"""``tapeflow.connect(url)``: the backend a URL names, opened (and its schema made) on use."""

from __future__ import annotations

import os
from collections.abc import Generator, Sequence
from types import TracebackType
from typing import Any

from tapeflow import codec as codecs
from tapeflow._validate import fail
from tapeflow.backends import failpoints
from tapeflow.backends._redact import redact
from tapeflow.backends.base import Backend
from tapeflow.backends.encoded import encoded
from tapeflow.errors import InvalidArgument

DEFAULT_URL = "sqlite:///tapeflow.db"
URL_VARIABLE = "TAPEFLOW_DATABASE_URL"


POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
"""libpq's two spellings, and SQLAlchemy's for psycopg 3 (so one URL serves both)."""


def backend_for(url: str) -> Backend:
    """The (not yet opened) backend for ``url``, which follows SQLAlchemy's convention:
    ``sqlite:///relative.db``, ``sqlite:////absolute/path.db``, ``sqlite://`` (in memory),
    ``postgresql://user:password@host:5432/db?schema=name&pool_max_size=10``."""
    if not isinstance(url, str) or "://" not in url:
        shown = redact(url) if isinstance(url, str) else url  # a key=value conninfo, maybe
        fail("database URL", shown, "a URL string such as 'sqlite:///tapeflow.db'")
    scheme, _, rest = url.partition("://")
    if scheme == "sqlite":
        from tapeflow.backends.sqlite import SQLiteBackend

        if rest in ("", "/", "/:memory:"):
            return SQLiteBackend(":memory:")
        if not rest.startswith("/"):
            fail("database URL", redact(url), "'sqlite:///path.db' (three slashes) for SQLite")
        return SQLiteBackend(rest[1:].partition("?")[0])
    if scheme in POSTGRES_SCHEMES:
        return _postgres(rest)
    fail("database URL", redact(url), "a sqlite:// or postgresql:// URL")


def _postgres(rest: str) -> Backend:
    try:
        from tapeflow.backends.postgres import PostgresBackend
        from tapeflow.backends.postgres._conninfo import split_url
    except ImportError as exc:
        raise InvalidArgument(
            "PostgreSQL needs psycopg 3 and psycopg_pool: install tapeflow with its postgres"
            f" extra ('path/to/tapeflow[postgres]'), or 'psycopg[pool]' yourself ({exc})"
        ) from None
    conninfo, own = split_url(rest)
    size = own.get("pool_max_size", "10")
    if not size.isdecimal() or int(size) < 1:
        fail("pool_max_size in the database URL", size, "a whole number of connections >= 1")
    return PostgresBackend(conninfo, schema=own.get("schema", "tapeflow"), max_size=int(size))


class Connection:
    """Use as ``async with tapeflow.connect(url) as backend`` or ``backend = await ...``."""

    def __init__(self, url: str | None, codec: Codec | None = None) -> None:
        self.url = os.environ.get(URL_VARIABLE) or DEFAULT_URL if url is None else url
        chosen = codecs.from_environment() if codec is None else _codecs(codec)
        self.backend = encoded(failpoints.from_environment(backend_for(self.url)), chosen)

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


Codec = codecs.PayloadCodec | Sequence[codecs.PayloadCodec]
"""One codec, or several applied in order (compress, then encrypt)."""


def _codecs(codec: Codec) -> list[codecs.PayloadCodec]:
    chosen = [codec] if isinstance(codec, codecs.PayloadCodec) else list(codec)
    for one in chosen:
        if not isinstance(one, codecs.PayloadCodec):
            fail("codec", one, "a PayloadCodec (tapeflow.ZlibCodec(), tapeflow.AesGcmCodec...)")
    return chosen


def connect(url: str | None = None, *, codec: Codec | None = None) -> Connection:
    """Connect to the backend at ``url`` (default: $TAPEFLOW_DATABASE_URL, else
    ``sqlite:///tapeflow.db``), creating its schema if missing. Stored payloads go through
    ``codec`` (default: AES-GCM if $TAPEFLOW_CODEC_KEYS is set, else none; ``[]``: none)."""
    return Connection(url, codec)
