"""Fixtures shared by every test: a fresh backend per test, workers with fast test options."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

import tapeflow

WorkerFactory = Callable[..., AbstractAsyncContextManager[tapeflow.Worker]]


POSTGRES_URL = os.environ.get(
    "TAPEFLOW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def postgres_reachable() -> bool:
    """Whether the test PostgreSQL answers. In CI (CI=true) it must: the run fails if not."""
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=5):
            return True
    except psycopg.OperationalError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but PostgreSQL at {POSTGRES_URL} is unreachable: {exc}")
        return False


@pytest.fixture(params=["sqlite", "postgres"])
def backend_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_reachable: bool
) -> Iterator[str]:
    """The URL of an empty database of each backend kind (one per test): a SQLite file, or
    a PostgreSQL schema of its own, dropped afterwards."""
    kind: str = request.param
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'tapeflow.db'}"
        return
    if not postgres_reachable:
        pytest.skip(f"postgres unreachable at {POSTGRES_URL} (CI=true makes this a failure)")
    with _fresh_schema() as schema:
        yield f"{POSTGRES_URL}?schema={schema}"


@pytest.fixture
def postgres_url(postgres_reachable: bool) -> Iterator[str]:
    """For PostgreSQL-only tests: the URL of a schema of its own, dropped afterwards."""
    if not postgres_reachable:
        pytest.skip(f"postgres unreachable at {POSTGRES_URL} (CI=true makes this a failure)")
    with _fresh_schema() as schema:
        yield f"{POSTGRES_URL}?schema={schema}"


@contextlib.contextmanager
def _fresh_schema() -> Iterator[str]:
    schema = f"test_{uuid.uuid4().hex[:16]}"
    yield schema
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
async def backend(backend_url: str) -> AsyncIterator[tapeflow.Backend]:
    async with tapeflow.connect(backend_url) as opened:
        yield opened


@pytest.fixture
def client(backend: tapeflow.Backend) -> tapeflow.Client:
    return tapeflow.Client(backend)


@pytest.fixture(params=[1000, 0], ids=["cache", "nocache"])
def cache_size(request: pytest.FixtureRequest) -> int:
    """Every end-to-end test runs with the sticky workflow cache on and off."""
    size: int = request.param
    return size


@pytest.fixture
def worker(backend: tapeflow.Backend, cache_size: int) -> WorkerFactory:
    """``async with worker(workflows=[...], activities=[...], **options)``: fast test defaults."""

    def make(**kwargs: Any) -> tapeflow.Worker:
        options: dict[str, Any] = {
            "workflow_cache_size": cache_size,
            "poll_interval": timedelta(milliseconds=50),
            "max_concurrent_activities": 8,
            "shutdown_grace": timedelta(seconds=2),
        }
        options.update(kwargs)
        return tapeflow.Worker(backend, **options)

    return make  # a Worker is its own async context manager
