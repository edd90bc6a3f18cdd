"""A workflow no live worker runs says so: ``describe().hint``, and ``result()`` logs it."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest

import tapeflow
import tapeflow.client
from tapeflow import workflow
from tapeflow.backends import _pollers
from tests.conftest import WorkerFactory


@workflow.defn
async def subscription(text: str) -> str:
    return text


@workflow.defn
async def other(text: str) -> str:
    return text


NO_WORKER = "no worker has polled for 'subscription' in the last 30 s"


async def test_describe_says_no_worker_polls_for_a_pending_workflow(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    handle = await client.start_workflow(subscription, "a", id="nobody-runs-it")
    record = await handle.describe()
    assert record.status is tapeflow.WorkflowStatus.PENDING
    assert record.hint is not None
    assert record.hint.startswith(NO_WORKER)

    async with worker(workflows=[other]):  # a worker, but not one for this workflow
        done = await client.start_workflow(other, "b", id="somebody-runs-this")
        assert await done.result(timeout=10) == "b"
        assert (await done.describe()).hint is None
        assert (await handle.describe()).hint is not None

    async with worker(workflows=[subscription]):
        assert await handle.result(timeout=10) == "a"
    assert (await handle.describe()).hint is None


async def test_the_hint_comes_back_once_the_workers_are_gone(
    client: tapeflow.Client, worker: WorkerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_pollers, "SILENT_AFTER", timedelta(seconds=3))
    async with worker(workflows=[subscription]):
        ran = await client.start_workflow(subscription, "x", id="ran")
        assert await ran.result(timeout=10) == "x"
    handle = await client.start_workflow(subscription, "y", id="started-after-they-left")
    assert (await handle.describe()).hint is None  # a worker polled a moment ago
    await asyncio.sleep(3.1)
    assert (await handle.describe()).hint is not None


async def test_result_logs_the_hint_once_while_it_waits(
    client: tapeflow.Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(tapeflow.client, "HINT_AFTER", 0.2)
    handle = await client.start_workflow(subscription, "c", id="waits-in-vain")
    with caplog.at_level(logging.WARNING, logger="tapeflow.client"), pytest.raises(TimeoutError):
        await handle.result(timeout=1.5)
    warnings = [r.getMessage() for r in caplog.records if r.name == "tapeflow.client"]
    assert len(warnings) == 1, warnings
    assert "'waits-in-vain'" in warnings[0]
    assert NO_WORKER in warnings[0]
