"""SQLite: a database made before runs were in the key is migrated with its workflows in
flight, and they carry on, each as its first run."""

from __future__ import annotations

import contextlib
import sqlite3
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import tapeflow
from tapeflow import activity, workflow
from tapeflow.backends._sql_files import migrations
from tapeflow.backends.sqlite.backend import _statements
from tapeflow.history import (
    ActivityScheduled,
    EventReceived,
    HistoryEvent,
    WorkflowExecutionStarted,
    WorkflowTaskStarted,
    encode_event,
)

BEFORE_RUNS = 4
"""The last schema version keyed by workflow id."""


@activity.defn
def shout(word: str) -> str:
    return word.upper()


@workflow.defn
async def greet(word: str) -> str:
    loud = await workflow.execute_activity(shout, word)
    punctuation: str = await workflow.wait_event("go")
    return loud + punctuation


async def test_a_workflow_in_flight_carries_on_as_its_first_run(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    now = datetime.now(UTC)
    with _schema_before_runs(path) as conn:
        first_task = _store_greet_in_flight(conn, "greeting", now)

    async with tapeflow.connect(f"sqlite:///{path}") as backend:
        described = await backend.get_workflow("greeting")
        assert uuid.UUID(described.run_id).version == 4
        assert (described.status, described.history_length) == (
            tapeflow.WorkflowStatus.RUNNING,
            len(first_task),
        )
        assert await backend.load_history("greeting") == first_task
        assert await backend.load_history("greeting", described.run_id) == first_task

        worker = tapeflow.Worker(
            backend,
            workflows=[greet],
            activities=[shout],
            poll_interval=timedelta(milliseconds=50),
            workflow_cache_size=0,  # the worker replays the migrated history
        )
        async with worker:
            handle = tapeflow.Client(backend).get_handle("greeting", result_type=str)
            assert await handle.result(timeout=10) == "TAPE!"
        history = await backend.load_history("greeting")
        assert history[: len(first_task)] == first_task
        assert (await backend.get_workflow("greeting")).run_id == described.run_id

    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []


async def test_ids_of_inbox_rows_and_activity_tasks_are_never_handed_out_twice(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    with _schema_before_runs(path) as conn:
        _store_greet_in_flight(conn, "greeting", datetime.now(UTC))
        handed_out = _autoincrement_counters(conn)
        conn.execute("DELETE FROM inbox")  # consumed since: the counters went on
        conn.execute("DELETE FROM activity_tasks")

    async with tapeflow.connect(f"sqlite:///{path}"):
        pass

    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert _autoincrement_counters(conn) == handed_out


@contextlib.contextmanager
def _schema_before_runs(path: Path) -> Iterator[sqlite3.Connection]:
    """A database file at schema version 4, to fill in one transaction."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("BEGIN")
        for version, script in migrations("tapeflow.backends.sqlite")[:BEFORE_RUNS]:
            for statement in _statements(script):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version}")
        yield conn
        conn.execute("COMMIT")


def _store_greet_in_flight(
    conn: sqlite3.Connection, workflow_id: str, at: datetime
) -> list[HistoryEvent]:
    """``greet("tape")`` as the code before runs stored it after its first task: running,
    its activity task due, an event "go" in its inbox, its task sticky to a worker that is
    gone. Returns the first task's history."""
    us = time.time_ns() // 1000
    history: list[HistoryEvent] = [
        WorkflowTaskStarted(at=at),
        WorkflowExecutionStarted(name="greet", version="", args=["tape"], started_at=at),
        ActivityScheduled(seq=1, name="shout", args=["tape"], retry=None),
    ]
    conn.execute(
        "INSERT INTO workflows (id, name, version, status, args, created_at, start_at, "
        "history_length) VALUES (?, 'greet', '', 'running', '[\"tape\"]', ?, ?, ?)",
        (workflow_id, us, us, len(history)),
    )
    conn.execute(
        "INSERT INTO workflow_tasks (workflow_id, name, lease_token, sticky_owner) "
        "VALUES (?, 'greet', 1, 'gone-worker')",
        (workflow_id,),
    )
    conn.executemany(
        "INSERT INTO history (workflow_id, seq, event) VALUES (?, ?, ?)",
        [(workflow_id, seq, encode_event(e)) for seq, e in enumerate(history, start=1)],
    )
    conn.execute(
        "INSERT INTO inbox (workflow_id, visible_at, event) VALUES (?, ?, ?)",
        (workflow_id, us, encode_event(EventReceived(name="go", payload="!"))),
    )
    conn.execute(
        "INSERT INTO activity_tasks (workflow_id, seq, name, args, visible_at) "
        "VALUES (?, 1, 'shout', '[\"tape\"]', ?)",
        (workflow_id, us),
    )
    return history


def _autoincrement_counters(conn: sqlite3.Connection) -> dict[str, int]:
    rows = conn.execute("SELECT name, seq FROM sqlite_sequence").fetchall()
    return {name: seq for name, seq in rows}
