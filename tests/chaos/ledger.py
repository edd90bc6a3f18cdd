"""A side-effect ledger: every activity attempt writes one row, so re-executions are counted.

An attempt records (workflow id, run id, activity seq, attempt, worker pid, time) through the
ledger's own connection, outside tapeflow's transactions: a worker killed after the write but
before its completion is committed leaves a row that tapeflow never hears of, exactly like a
real side effect (an e-mail sent, a card charged). For a SQLite run the ledger is a separate
SQLite file in WAL mode next to the database; for PostgreSQL a table in a schema of its own
(``<schema>_ledger``), on its own connections named ``tapeflow-chaos-ledger``.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from tests.chaos.location import Location, locate

LEDGER_APPLICATION = "tapeflow-chaos-ledger"


@dataclass(frozen=True)
class Attempt:
    workflow_id: str
    run_id: str
    """Activity seqs are numbered per run: a workflow that continues as new reuses them."""
    seq: int
    attempt: int
    pid: int
    at: float
    """Unix time of the write (the side effect)."""


class Ledger:
    """One per process; each thread writes through a connection of its own."""

    def __init__(self, url: str) -> None:
        self.location: Location = locate(url)
        self._local = threading.local()
        if self.location.kind == "sqlite":
            self.path = self.location.path + "-ledger"
            self.schema = ""
        else:
            self.path = ""
            self.schema = f"{self.location.schema}_ledger"

    def __repr__(self) -> str:
        return f"Ledger({self.path or self.schema!r})"

    # -- connections -----------------------------------------------------------------------

    def _connect(self) -> Any:
        if self.location.kind == "sqlite":
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            return conn
        return psycopg.connect(
            self.location.postgres_url(LEDGER_APPLICATION),
            autocommit=True,
            connect_timeout=5,
        )

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def _forget(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _table(self) -> str:
        if self.location.kind == "sqlite":
            return "attempts"
        return sql.Identifier(self.schema, "attempts").as_string(None)

    # -- writes ----------------------------------------------------------------------------

    def create(self) -> None:
        """Make the ledger (idempotent)."""
        conn = self._conn()
        if self.location.kind == "postgres":
            conn.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema))
            )
        conn.execute(
            f"""CREATE TABLE IF NOT EXISTS {self._table()} (
                    workflow_id TEXT NOT NULL, run_id TEXT NOT NULL, seq INTEGER NOT NULL,
                    attempt INTEGER NOT NULL,
                    pid INTEGER NOT NULL, at DOUBLE PRECISION NOT NULL)"""
        )

    def record(self, workflow_id: str, run_id: str, seq: int, attempt: int) -> None:
        """Write one attempt; raises if the ledger's database is away (the attempt then fails
        before its side effect, and tapeflow retries it)."""
        marker = "?" if self.location.kind == "sqlite" else "%s"
        statement = f"INSERT INTO {self._table()} VALUES ({', '.join([marker] * 6)})"
        row = (workflow_id, run_id, seq, attempt, os.getpid(), time.time())
        try:
            self._conn().execute(statement, row)
        except (sqlite3.Error, psycopg.Error):
            self._forget()
            raise

    # -- reads -----------------------------------------------------------------------------

    def attempts(self) -> list[Attempt]:
        query = f"SELECT workflow_id, run_id, seq, attempt, pid, at FROM {self._table()}"
        for retry in (True, False):  # a connection broken by a restart: once more on a new one
            try:
                rows = self._conn().execute(query).fetchall()
                break
            except (sqlite3.Error, psycopg.Error):
                self._forget()
                if not retry:
                    raise
        return [
            Attempt(str(w), str(r), int(s), int(a), int(p), float(t)) for w, r, s, a, p, t in rows
        ]

    def drop(self) -> None:
        """Remove the PostgreSQL ledger schema (a SQLite ledger goes with its directory)."""
        if self.location.kind == "postgres":
            self._conn().execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.schema))
            )

    def close(self) -> None:
        self._forget()


def executions(attempts: list[Attempt]) -> Counter[tuple[str, int]]:
    """How many times each (run id, activity seq) ran its side effect."""
    return Counter((a.run_id, a.seq) for a in attempts)


_active: Ledger | None = None


def use(ledger: Ledger) -> None:
    """Make ``ledger`` the one this process's activities write to."""
    global _active
    _active = ledger


def active() -> Ledger:
    if _active is None:
        raise RuntimeError("no ledger in this process: call tests.chaos.ledger.use() first")
    return _active
