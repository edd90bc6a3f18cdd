"""Counting what a process asks of its database, from inside the process.

PostgreSQL: psycopg's async cursor and transaction are wrapped, so every statement sent
(``queries``: round trips, ``BEGIN`` and ``COMMIT`` included) and every transaction ended
(``transactions``: an autocommit statement is one, a ``conn.transaction()`` block is one)
is counted: what ``pg_stat_database.xact_commit + xact_rollback`` counts for this process,
but exact even while other clients use the database. SQLite: the connection's trace
callback sees every statement; ``transactions`` counts the ``COMMIT``s (write transactions;
reads outside a transaction commit nothing).
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Counts:
    queries: int = 0
    transactions: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


COUNTS = Counts()
_lock = threading.Lock()
_installed = False


def _add(queries: int, transactions: int) -> None:
    with _lock:
        COUNTS.queries += queries
        COUNTS.transactions += transactions


def count_psycopg() -> None:
    """Wrap psycopg's async cursor and transaction (idempotent; this process only)."""
    global _installed
    if _installed:
        return
    _installed = True
    import psycopg
    from psycopg.pq import TransactionStatus

    idle = TransactionStatus.IDLE
    execute = psycopg.AsyncCursor.execute
    enter = psycopg.AsyncTransaction.__aenter__
    leave = psycopg.AsyncTransaction.__aexit__

    @functools.wraps(execute)
    async def counted_execute(self: Any, *args: Any, **kwargs: Any) -> Any:
        pgconn = self.connection.pgconn
        alone = pgconn.transaction_status == idle
        try:
            return await execute(self, *args, **kwargs)
        finally:
            # From idle back to idle: the statement was a transaction of its own.
            _add(1, int(alone and pgconn.transaction_status == idle))

    @functools.wraps(enter)
    async def counted_enter(self: Any) -> Any:
        result = await enter(self)
        _add(1, 0)  # BEGIN (or SAVEPOINT)
        return result

    @functools.wraps(leave)
    async def counted_leave(self: Any, *args: Any) -> Any:
        try:
            return await leave(self, *args)
        finally:
            _add(1, int(bool(self._outer_transaction)))  # COMMIT or ROLLBACK

    setattr(psycopg.AsyncCursor, "execute", counted_execute)  # noqa: B010
    setattr(psycopg.AsyncTransaction, "__aenter__", counted_enter)  # noqa: B010
    setattr(psycopg.AsyncTransaction, "__aexit__", counted_leave)  # noqa: B010


def count_sqlite(backend: object) -> bool:
    """Trace the statements of a SQLite backend's connection; False if it has none we know."""
    conn = getattr(backend, "_conn", None)
    if not isinstance(conn, sqlite3.Connection):
        return False

    def traced(statement: str) -> None:
        _add(1, int(statement.lstrip()[:6].upper() == "COMMIT"))

    conn.set_trace_callback(traced)
    return True


def snapshot() -> dict[str, int]:
    with _lock:
        return COUNTS.as_dict()
