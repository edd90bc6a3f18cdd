"""A send retried with its idempotency key delivers once: the key is kept with the workflow
id, across its runs, and only for a send that delivered."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

import tapeflow
from tapeflow import workflow
from tests.conformance._waiting import eventually
from tests.conftest import WorkerFactory


@workflow.defn
async def collect() -> list[str]:
    """Every "item" until "done"."""
    items: list[str] = []
    workflow.on_event("item", items.append, type=str)
    await workflow.wait_event("done")
    return items


@workflow.defn
async def collect_in_runs(runs_left: int) -> list[str]:
    """The items of its last run: each run before it goes on to the next on "next"."""
    items: list[str] = []
    workflow.on_event("item", items.append, type=str)
    if runs_left:
        await workflow.wait_event("next")
        workflow.continue_as_new(runs_left - 1)
    await workflow.wait_event("done")
    return items


async def _items(
    client: tapeflow.Client, worker: WorkerFactory, *workflow_ids: str
) -> list[list[str]]:
    """What each workflow saw, once told it is done."""
    for workflow_id in workflow_ids:
        await client.send_event(workflow_id, "done")
    async with worker(workflows=[collect, collect_in_runs]):
        return [await client.get_handle(w).result(timeout=10) for w in workflow_ids]


async def test_a_retried_send_delivers_once(client: tapeflow.Client, worker: WorkerFactory) -> None:
    handle = await client.start_workflow(collect, id="cart")
    await client.send_event("cart", "item", "book", idempotency_key="req-123")
    await handle.send_event("item", "book", idempotency_key="req-123")  # the retry
    await client.send_event("cart", "item", "book again", idempotency_key="req-123")
    assert await _items(client, worker, "cart") == [["book"]]


async def test_different_keys_and_no_key_deliver_each(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    await client.start_workflow(collect, id="cart")
    await client.send_event("cart", "item", "book", idempotency_key="req-1")
    await client.send_event("cart", "item", "pen", idempotency_key="req-2")
    await client.send_event("cart", "item", "ink")
    await client.send_event("cart", "item", "ink")
    assert await _items(client, worker, "cart") == [["book", "pen", "ink", "ink"]]


async def test_one_key_for_two_workflows_delivers_to_each(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    for workflow_id in ("cart-a", "cart-b"):
        await client.start_workflow(collect, id=workflow_id)
        await client.send_event(workflow_id, "item", workflow_id, idempotency_key="req-123")
    assert await _items(client, worker, "cart-a", "cart-b") == [["cart-a"], ["cart-b"]]


async def test_concurrent_sends_with_one_key_deliver_once(
    client: tapeflow.Client, worker: WorkerFactory, backend_url: str
) -> None:
    await client.start_workflow(collect, id="cart")
    async with contextlib.AsyncExitStack() as stack:
        clients = [client] + [
            tapeflow.Client(await stack.enter_async_context(tapeflow.connect(backend_url)))
            for _ in range(3)
        ]
        await asyncio.gather(
            *(
                c.send_event("cart", "item", f"book {n}", idempotency_key="req-123")
                for n in range(10)
                for c in clients
            )
        )
    [items] = await _items(client, worker, "cart")
    assert len(items) == 1
    assert items[0].startswith("book")


async def test_keys_outlive_the_run_they_were_sent_to(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    """Continue-as-new starts a new run of the id: a retry reaching it delivers nothing."""
    await client.start_workflow(collect_in_runs, 1, id="cart")
    await client.send_event("cart", "item", "book", idempotency_key="req-1")
    first = await client.describe("cart")
    await client.send_event("cart", "next")
    async with worker(workflows=[collect_in_runs]):

        async def continued() -> bool:
            return (await client.describe("cart")).previous_run_id == first.run_id

        await eventually(continued, "the first run continued as new")
        await client.send_event("cart", "item", "book", idempotency_key="req-1")  # the retry
        await client.send_event("cart", "item", "pen", idempotency_key="req-2")
        await client.send_event("cart", "done")
        assert await client.get_handle("cart").result(timeout=10) == ["pen"]


async def test_a_retry_after_the_workflow_closed_returns(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    await client.start_workflow(collect, id="cart")
    await client.send_event("cart", "item", "book", idempotency_key="req-1")
    assert await _items(client, worker, "cart") == [["book"]]
    await client.send_event("cart", "item", "book", idempotency_key="req-1")  # delivered once
    with pytest.raises(tapeflow.WorkflowAlreadyCompleted):
        await client.send_event("cart", "item", "pen", idempotency_key="req-2")
    # A new run of the id: its keys are the id's.
    await client.start_workflow(collect, id="cart", id_reuse="allow")
    await client.send_event("cart", "item", "book", idempotency_key="req-1")
    await client.send_event("cart", "item", "pen", idempotency_key="req-2")  # refused: not kept
    assert await _items(client, worker, "cart") == [["pen"]]


async def test_a_refused_send_keeps_no_key(client: tapeflow.Client, worker: WorkerFactory) -> None:
    with pytest.raises(tapeflow.WorkflowNotFound):
        await client.send_event("cart", "item", "book", idempotency_key="req-1")
    await client.start_workflow(collect, id="cart")
    await client.send_event("cart", "item", "book", idempotency_key="req-1")
    assert await _items(client, worker, "cart") == [["book"]]


async def test_bad_keys_are_refused_and_deliver_nothing(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    await client.start_workflow(collect, id="cart")
    bad: list[Any] = ["", "   ", "req\x00", "x" * 256, 123, b"req"]
    for key in bad:
        with pytest.raises(tapeflow.InvalidArgument, match="idempotency key"):
            await client.send_event("cart", "item", "book", idempotency_key=key)
        with pytest.raises(tapeflow.InvalidArgument, match="idempotency key"):
            await client.get_handle("cart").send_event("item", "book", idempotency_key=key)
    await client.send_event("cart", "item", "pen", idempotency_key="req-1")
    assert await _items(client, worker, "cart") == [["pen"]]
