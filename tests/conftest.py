"""Fixtures shared by every test: a fresh backend per test, workers with fast test options."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import tapeflow

WorkerFactory = Callable[..., AbstractAsyncContextManager[tapeflow.Worker]]


@pytest.fixture(params=["sqlite"])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database of each backend kind (one per test)."""
    kind: str = request.param
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'tapeflow.db'}"
    raise AssertionError(kind)


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
