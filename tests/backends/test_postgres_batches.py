"""PostgreSQL: starts that arrive together share one statement, and wake-ups go out after
the commit; a start refused or a wake-up lost never loses or half-writes a workflow."""

from __future__ import annotations

import asyncio

import pytest

import tapeflow
from tapeflow import activity, workflow
from tapeflow._worker import poller
from tapeflow.backends.postgres import backend as postgres_backend


@activity.defn
async def add_one(number: int) -> int:
    return number + 1


@workflow.defn
async def plus_one(number: int) -> int:
    return await workflow.execute_activity(add_one, number)


async def test_concurrent_starts_share_statements_and_refuse_taken_ids(postgres_url: str) -> None:
    async with tapeflow.connect(postgres_url) as backend:
        client = tapeflow.Client(backend)
        await client.start_workflow(plus_one, 0, id="taken")
        starts = [client.start_workflow(plus_one, n, id=f"wf-{n}") for n in range(40)]
        starts += [client.start_workflow(plus_one, 1, id="wf-7")]  # the same id, same batch
        starts += [client.start_workflow(plus_one, 2, id="taken")]
        outcomes = await asyncio.gather(*starts, return_exceptions=True)
        refused = [o for o in outcomes if isinstance(o, tapeflow.WorkflowAlreadyExists)]
        assert len(refused) == 2, outcomes
        assert all(isinstance(o, tapeflow.WorkflowHandle) for o in outcomes[:40])
        async with tapeflow.Worker(backend, workflows=[plus_one], activities=[add_one]):
            results = [await h.result(timeout=30) for h in outcomes[:40]]  # type: ignore[union-attr]
        assert results == [n + 1 for n in range(40)]  # the first start of wf-7 won
        record = await client.describe("taken")
        assert record.args == [0]


async def test_lost_wake_ups_lose_no_work(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every NOTIFY fails: the commits still hold, and pollers and result waiters find the
    work at their fallback poll."""
    monkeypatch.setitem(postgres_backend._Q, "notify", "SELECT 1/0")
    monkeypatch.setattr(poller, "FALLBACK_POLL_SECONDS", 0.2)
    monkeypatch.setattr(tapeflow.client, "FALLBACK_POLL_SECONDS", 0.2)
    async with (
        tapeflow.connect(postgres_url) as worker_side,
        tapeflow.connect(postgres_url) as client_side,
    ):
        client = tapeflow.Client(client_side)
        async with tapeflow.Worker(worker_side, workflows=[plus_one], activities=[add_one]):
            handles = await asyncio.gather(*(client.start_workflow(plus_one, n) for n in range(10)))
            results = [await h.result(timeout=30) for h in handles]
    assert results == [n + 1 for n in range(10)]
