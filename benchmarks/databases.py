"""A fresh database for each measurement: a SQLite file, or a PostgreSQL schema of its own
(``?schema=bench_<random>``, dropped afterwards), and PostgreSQL's own transaction counts."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class Database:
    kind: str
    """"sqlite" or "postgres"."""
    url: str
    """The tapeflow URL."""
    server: str = ""
    """PostgreSQL: the server's URL, without tapeflow's parameters."""
    application: str = ""
    """PostgreSQL: the application_name of every connection tapeflow opens for it."""


def _with_params(url: str, params: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{params}"


@contextlib.contextmanager
def fresh(kind: str, postgres_url: str, scratch: Path) -> Iterator[Database]:
    tag = uuid.uuid4().hex[:12]
    if kind == "sqlite":
        path = scratch / f"bench-{tag}.db"
        try:
            yield Database(kind, f"sqlite:///{path}")
        finally:
            for suffix in ("", "-wal", "-shm"):
                path.with_name(path.name + suffix).unlink(missing_ok=True)
        return
    import psycopg
    from psycopg import sql

    schema, application = f"bench_{tag}", f"tapeflow-bench-{tag}"
    url = _with_params(postgres_url, f"schema={schema}&application_name={application}")
    try:
        yield Database(kind, url, postgres_url, application)
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def postgres_reachable(postgres_url: str) -> str | None:
    """None if the server answers, else why not."""
    try:
        import psycopg

        with psycopg.connect(postgres_url, connect_timeout=5):
            return None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


_own_transactions = 0
"""Transactions that the readings below cost the server themselves: PostgreSQL counts one
for each connection's start-up and one for each statement. Measurements subtract them."""


def own_transactions() -> int:
    return _own_transactions


def _query(db: Database, query: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
    """One statement on a connection of its own (as a reading, it must see fresh counts)."""
    global _own_transactions
    import psycopg

    with psycopg.connect(db.server, autocommit=True) as conn:
        _own_transactions += 2
        return conn.execute(query, params).fetchall()


def server_transactions(db: Database) -> int:
    """``xact_commit + xact_rollback`` of the database, as pg_stat_database has it now.

    Backends publish their counts when they end (or, while idle, up to 10 s later), so read
    this after every connection of the measurement is closed (see ``wait_closed``)."""
    rows = _query(
        db,
        "SELECT xact_commit + xact_rollback FROM pg_stat_database"
        " WHERE datname = current_database()",
    )
    return int(rows[0][0]) if rows else 0


def wait_closed(db: Database, timeout: float = 10.0) -> None:
    """Wait until no session of this measurement is left on the server."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = _query(
            db,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            (db.application,),
        )
        if not rows or rows[0][0] == 0:
            break
        time.sleep(0.05)
    time.sleep(0.1)  # an exiting backend publishes its counts on the way out


def session_pids(db: Database) -> list[int]:
    """The server processes of this measurement's sessions."""
    rows = _query(
        db, "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (db.application,)
    )
    return [int(row[0]) for row in rows]
