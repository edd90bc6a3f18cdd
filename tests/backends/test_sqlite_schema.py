"""SQLite: the numbered migrations add up to schema.sql, and a newer schema is refused."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

import tapeflow
from tapeflow.backends._sql_files import migrations, read_sql
from tapeflow.backends.sqlite.backend import _statements


def _shape(conn: sqlite3.Connection) -> dict[str, object]:
    """Tables with their columns and foreign keys, indexes with their columns: what a query
    can tell apart."""
    names = conn.execute(
        "SELECT type, name, tbl_name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
    ).fetchall()
    shape: dict[str, object] = {}
    for kind, name, table in names:
        if kind == "table":
            columns = conn.execute(f"PRAGMA table_xinfo('{name}')").fetchall()
            keys = conn.execute(f"PRAGMA foreign_key_list('{name}')").fetchall()
            shape[name] = (columns, keys)
        else:
            columns = conn.execute(f"PRAGMA index_xinfo('{name}')").fetchall()
            unique = [
                row[2] for row in conn.execute(f"PRAGMA index_list('{table}')") if row[1] == name
            ]
            shape[name] = (table, columns, unique)
    return shape


def test_migrations_add_up_to_the_schema() -> None:
    from_schema = sqlite3.connect(":memory:")
    for statement in _statements(read_sql("tapeflow.backends.sqlite", "schema.sql")):
        from_schema.execute(statement)
    migrated = sqlite3.connect(":memory:")
    for _, script in migrations("tapeflow.backends.sqlite"):
        for statement in _statements(script):
            migrated.execute(statement)
    assert _shape(migrated) == _shape(from_schema)
    assert _shape(migrated)  # not vacuously equal


async def test_connect_creates_the_schema_once_and_reopens(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    async with tapeflow.connect(url):
        pass
    async with tapeflow.connect(url) as backend:  # second open: nothing to migrate
        with pytest.raises(tapeflow.WorkflowNotFound):
            await backend.get_workflow("none")
    conn = sqlite3.connect(tmp_path / "app.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(
        migrations("tapeflow.backends.sqlite")
    )


async def test_a_newer_schema_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    with pytest.raises(tapeflow.SchemaVersionError, match="upgrade tapeflow"):
        async with tapeflow.connect(f"sqlite:///{path}"):
            pass


def test_url_convention(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tapeflow.backends.connect import backend_for
    from tapeflow.backends.sqlite import SQLiteBackend

    relative = backend_for("sqlite:///relative.db")
    absolute = backend_for("sqlite:////abs/path.db")
    assert isinstance(relative, SQLiteBackend)
    assert isinstance(absolute, SQLiteBackend)
    assert (relative.path, absolute.path) == ("relative.db", "/abs/path.db")
    with pytest.raises(tapeflow.InvalidArgument):
        backend_for("mysql://x")
    with pytest.raises(tapeflow.InvalidArgument):
        backend_for("tapeflow.db")
    monkeypatch.setenv("TAPEFLOW_DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    assert tapeflow.connect().url == f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.delenv("TAPEFLOW_DATABASE_URL")
    assert tapeflow.connect().url == "sqlite:///tapeflow.db"


async def test_many_processes_opening_a_new_file_at_once(tmp_path: Path) -> None:
    """Switching a new file to WAL ignores busy_timeout; opening must wait, not fail."""
    for round_ in range(10):
        url = f"sqlite:///{tmp_path / f'race-{round_}.db'}"
        backends = [tapeflow.connect(url).backend for _ in range(4)]
        try:
            await asyncio.gather(*(backend.open() for backend in backends))
        finally:
            await asyncio.gather(*(backend.close() for backend in backends))
