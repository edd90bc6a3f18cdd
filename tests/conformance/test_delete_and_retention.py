"""Deleting closed workflows: one by ``handle.delete()``, or all those closed longer ago
than a retention (``Client.delete_closed``, a worker's ``retention``), in batches, one
process at a time."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

import tapeflow
from tapeflow import workflow
from tapeflow._worker import retention
from tapeflow._worker.retention import Retention
from tests.conformance._stored import stored
from tests.conftest import WorkerFactory

OWNED = {  # every row a workflow id owns, by table
    "workflows": "SELECT run_id FROM workflows WHERE id = {}",
    "history": "SELECT h.seq FROM history h JOIN workflows w USING (run_id) WHERE w.id = {}",
    "inbox": "SELECT e.id FROM inbox e JOIN workflows w USING (run_id) WHERE w.id = {}",
    "activity_tasks": "SELECT a.id FROM activity_tasks a JOIN workflows w USING (run_id)"
    " WHERE w.id = {}",
    "workflow_tasks": "SELECT t.run_id FROM workflow_tasks t JOIN workflows w USING (run_id)"
    " WHERE w.id = {}",
    "event_keys": "SELECT key FROM event_keys WHERE workflow_id = {}",
}
ORPHANS = {  # rows of runs that no longer exist
    table: f"SELECT count(*) FROM {table} x WHERE x.run_id <> {{}}"
    " AND NOT EXISTS (SELECT 1 FROM workflows w WHERE w.run_id = x.run_id)"
    for table in ("history", "inbox", "activity_tasks", "workflow_tasks")
}


@workflow.defn
async def collect(count: int) -> list[str]:
    return [await workflow.wait_event("item", type=str) for _ in range(count)]


def _owned(url: str, workflow_id: str) -> dict[str, int]:
    return {table: len(stored(url, query, workflow_id)) for table, query in OWNED.items()}


def _age(url: str, workflow_id: str, hours: int) -> None:
    """Make the workflow's runs look as if they ended ``hours`` earlier."""
    ago = (
        f"completed_at - {hours * 3_600_000_000}"
        if url.startswith("sqlite:///")
        else f"completed_at - interval '{hours} hours'"
    )
    stored(
        url, f"UPDATE workflows SET completed_at = {ago} WHERE id = {{}} RETURNING id", workflow_id
    )


async def _closed(client: tapeflow.Client, workflow_id: str, *, runs: int = 1) -> None:
    """A workflow of ``runs`` completed runs, each sent an event with a key."""
    for run in range(runs):
        handle = await client.start_workflow(collect, 1, id=workflow_id, id_reuse="allow")
        await handle.send_event("item", f"{run}", idempotency_key=f"key-{run}")
        await handle.result(timeout=10)


async def test_delete_removes_every_row_of_every_run(
    client: tapeflow.Client, worker: WorkerFactory, backend_url: str
) -> None:
    async with worker(workflows=[collect]):
        await _closed(client, "gone", runs=2)
        await _closed(client, "kept")
    assert _owned(backend_url, "gone")["workflows"] == 2
    assert _owned(backend_url, "gone")["event_keys"] == 2
    kept = _owned(backend_url, "kept")

    await client.get_handle("gone").delete()

    assert _owned(backend_url, "gone") == dict.fromkeys(OWNED, 0)
    assert _owned(backend_url, "kept") == kept
    for query in ORPHANS.values():
        assert stored(backend_url, query, "") == [(0,)]
    with pytest.raises(tapeflow.WorkflowNotFound):
        await client.describe("gone")
    with pytest.raises(tapeflow.WorkflowNotFound):
        await client.get_handle("gone").delete()


async def test_an_open_workflow_is_not_deleted(
    client: tapeflow.Client, worker: WorkerFactory, backend_url: str
) -> None:
    async with worker(workflows=[collect]):
        await _closed(client, "open")  # its first run closed; the next one stays open
    handle = await client.start_workflow(collect, 2, id="open", id_reuse="allow")
    await handle.send_event("item", "one", idempotency_key="one")
    before = _owned(backend_url, "open")
    with pytest.raises(tapeflow.WorkflowStillOpen, match="'open' is still pending"):
        await handle.delete()
    assert _owned(backend_url, "open") == before
    async with worker(workflows=[collect]):
        await handle.send_event("item", "two")
        assert await handle.result(timeout=10) == ["one", "two"]


async def test_delete_closed_takes_only_those_closed_long_enough_ago_in_batches(
    client: tapeflow.Client, worker: WorkerFactory, backend_url: str
) -> None:
    async with worker(workflows=[collect]):
        for n in range(5):
            await _closed(client, f"old-{n}")
            _age(backend_url, f"old-{n}", hours=2)
        await _closed(client, "recent")
        waiting = await client.start_workflow(collect, 1, id="waiting")
    _age(backend_url, "waiting", hours=2)  # never ended: no end time to age

    assert await client.backend.delete_closed(timedelta(hours=1), 2) == 2
    assert await client.delete_closed(timedelta(hours=1), batch=2) == 3
    assert await client.delete_closed(timedelta(hours=1)) == 0
    for n in range(5):
        assert _owned(backend_url, f"old-{n}") == dict.fromkeys(OWNED, 0)
    assert (await client.describe("recent")).status is tapeflow.WorkflowStatus.COMPLETED
    assert not (await waiting.describe()).status.finished  # a worker may have begun it


async def test_two_collectors_take_turns_and_delete_each_workflow_once(
    client: tapeflow.Client, worker: WorkerFactory, backend_url: str
) -> None:
    async with worker(workflows=[collect]):
        for n in range(7):
            await _closed(client, f"old-{n}")
            _age(backend_url, f"old-{n}", hours=2)
    async with tapeflow.connect(backend_url) as other:
        first, second = (
            Retention(client.backend, timedelta(hours=1), batch=2),
            Retention(other, timedelta(hours=1), batch=2),
        )
        counts = await asyncio.gather(first.collect(), second.collect())
        assert sum(counts) <= 7  # one may have found the other at it, and left it the rest
        assert sum(counts) + await client.delete_closed(timedelta(hours=1)) == 7


async def test_a_worker_with_a_retention_deletes_what_is_past_it(
    client: tapeflow.Client,
    worker: WorkerFactory,
    backend_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(retention, "EVERY", 0.05)
    async with worker(workflows=[collect]):
        await _closed(client, "old")
        await _closed(client, "recent")
    _age(backend_url, "old", hours=2)
    async with worker(workflows=[collect], retention=timedelta(hours=1)):
        for _ in range(200):
            if not stored(backend_url, OWNED["workflows"], "old"):
                break
            await asyncio.sleep(0.05)
    assert _owned(backend_url, "old") == dict.fromkeys(OWNED, 0)
    assert (await client.describe("recent")).status is tapeflow.WorkflowStatus.COMPLETED


def test_a_retention_must_be_a_positive_timedelta() -> None:
    for bad in (timedelta(0), 3600, timedelta(days=-1)):
        with pytest.raises(tapeflow.InvalidArgument, match="retention"):
            tapeflow.WorkerOptions(retention=bad)  # type: ignore[arg-type]
