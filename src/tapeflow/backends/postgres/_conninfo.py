"""A PostgreSQL URL or connection string, checked by libpq's own parser before any
connection is tried: a mistake is an ``InvalidArgument`` at once, never a pool retrying
(and logging) a string it cannot use."""

from __future__ import annotations

from urllib.parse import unquote

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tapeflow._validate import fail
from tapeflow.backends._redact import redact

OWN_PARAMETERS = ("schema", "pool_max_size")
"""The query parameters tapeflow reads from a PostgreSQL URL; libpq gets the others."""
CONNECT_TIMEOUT = 5
"""Seconds a connection attempt waits for an answer unless the URL sets ``connect_timeout``
(psycopg's default is 130): a host that never answers is reported within seconds."""


def split_url(rest: str) -> tuple[str, dict[str, str]]:
    """A PostgreSQL URL (``rest``: what follows its scheme) as a libpq URL and tapeflow's
    parameters (decoded). libpq's parameters stay as written: decoding and encoding them
    again would turn a ``+`` into a space."""
    location, _, query = rest.partition("?")
    own: dict[str, str] = {}
    passed: list[str] = []
    for item in filter(None, query.split("&")):
        key, _, value = item.partition("=")
        if key in OWN_PARAMETERS:
            own[key] = unquote(value)
        else:
            passed.append(item)
    return f"postgresql://{location}" + (f"?{'&'.join(passed)}" if passed else ""), own


def checked(conninfo: str) -> str:
    """``conninfo`` as libpq reads it, rewritten as key=value pairs so that nothing later
    parses the user's spelling again (libpq quotes a bad token, a password maybe, in its
    message), with the default ``connect_timeout``."""
    params: dict[str, str | int | None] | None = None
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError as exc:
        reason = redact(str(exc).strip(), url=conninfo)
    if params is None:  # raised outside the handler: the driver's message must not ride along
        fail(
            "database URL",
            redact(conninfo),
            f"one libpq accepts ({reason}; tapeflow's own parameters: {', '.join(OWN_PARAMETERS)})",
        )
    for port in str(params.get("port", "")).split(","):
        if port and not (port.isdecimal() and int(port) <= 65535):
            fail("database URL", redact(conninfo), "a URL whose port is a number from 0 to 65535")
    params.setdefault("connect_timeout", CONNECT_TIMEOUT)
    return make_conninfo("", **params)
