"""The backends the conformance suite runs on (see tests/conformance/plugin.py), and the
fixtures of the PostgreSQL-only tests. Loaded as a pytest plugin by tests/conftest.py."""

from __future__ import annotations

import contextlib
import functools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.conformance.plugin import BackendFactory, register_backend, require_available

POSTGRES_URL = os.environ.get(
    "TAPEFLOW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


@contextlib.contextmanager
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    """A SQLite file of the test's own."""
    yield f"sqlite:///{tmp_path / 'tapeflow.db'}"


@functools.cache
def postgres_unreachable() -> str | None:
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=5):
            return None
    except psycopg.OperationalError as exc:
        return f"unreachable at {POSTGRES_URL}: {exc}"


@contextlib.contextmanager
def postgres_schema_url(_tmp_path: Path | None = None) -> Iterator[str]:
    """A PostgreSQL schema of its own, dropped afterwards."""
    schema = f"test_{uuid.uuid4().hex[:16]}"
    yield f"{POSTGRES_URL}?schema={schema}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


register_backend(BackendFactory("sqlite", sqlite_url))
register_backend(BackendFactory("postgres", postgres_schema_url, postgres_unreachable))


@pytest.fixture(scope="session")
def postgres_reachable() -> bool:
    """Whether the test PostgreSQL answers. In CI (CI=true) it must: the run fails if not."""
    reason = postgres_unreachable()
    if reason is not None and os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but PostgreSQL is {reason}")
    return reason is None


@pytest.fixture
def postgres_url(postgres_reachable: bool) -> Iterator[str]:
    """For PostgreSQL-only tests: the URL of a schema of its own, dropped afterwards."""
    require_available("postgres", postgres_unreachable())
    with postgres_schema_url() as url:
        yield url
