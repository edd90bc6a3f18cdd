"""What the database itself holds, for what the protocol does not show (run numbers, rows
no task will read, rows a delete must leave none of)."""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Any

import psycopg


def stored(url: str, query: str, param: str) -> list[tuple[Any, ...]]:
    """The rows of ``query`` (``{}`` its one parameter) in the database at ``url``; what
    it writes is committed."""
    if url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
            rows = conn.execute(query.format("?"), (param,)).fetchall()
            conn.commit()  # for a query that writes (the test's own changes)
            return rows
    base, _, schema = url.partition("?schema=")
    with psycopg.connect(base, options=f"-c search_path={schema}") as pg:
        return pg.execute(query.format("%s"), (param,)).fetchall()
