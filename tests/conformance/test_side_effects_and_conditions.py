"""On a real worker, cache on and off: a side effect's value is made once (a replay reads
it back), and wait_condition wakes on events that came in later tasks."""

from __future__ import annotations

import uuid
from datetime import timedelta

import tapeflow
from tapeflow import workflow
from tapeflow.history import MarkerRecorded, TimerFired
from tests.conformance._waiting import has_run, history
from tests.conftest import WorkerFactory


@workflow.defn
async def keeps_a_token() -> list[str]:
    token = await workflow.side_effect(lambda: uuid.uuid4().hex)
    seen: list[str] = []
    workflow.on_event("item", seen.append)
    await workflow.wait_condition(lambda: len(seen) >= 2, timeout=timedelta(minutes=5))
    await workflow.sleep(0.1)  # one more task: with the cache off, one more replay
    return [token, *seen]


async def test_a_side_effect_keeps_its_value_across_replays(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[keeps_a_token]):
        handle = await client.start_workflow(keeps_a_token, id="token")
        await has_run(client, handle.id)
        await client.send_event(handle.id, "item", "a")
        await client.send_event(handle.id, "item", "b")
        token, *seen = await handle.result(timeout=10)
    assert seen == ["a", "b"]
    [marker] = [e for e in await history(client, handle.id) if isinstance(e, MarkerRecorded)]
    assert marker.details == token


@workflow.defn
async def waits_for_stock(timeout_seconds: float | None) -> str:
    stock: list[int] = []
    workflow.on_event("stock", stock.append)
    timeout = None if timeout_seconds is None else timedelta(seconds=timeout_seconds)
    try:
        await workflow.wait_condition(lambda: sum(stock) >= 3, timeout=timeout)
    except TimeoutError:
        return f"gave up with {sum(stock)}"
    return f"got {sum(stock)}"


async def test_wait_condition_without_a_timeout_waits_for_as_long_as_it_takes(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[waits_for_stock]):
        handle = await client.start_workflow(waits_for_stock, None, id="no-timeout")
        await has_run(client, handle.id)
        for amount in (1, 1, 2):  # met on the third, each in a task of its own
            await client.send_event(handle.id, "stock", amount)
        assert await handle.result(timeout=10) == "got 4"


async def test_wait_condition_raises_timeout_error_when_its_timer_fires_first(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[waits_for_stock]):
        handle = await client.start_workflow(waits_for_stock, 0.3, id="times-out")
        await has_run(client, handle.id)
        await client.send_event(handle.id, "stock", 1)
        assert await handle.result(timeout=10) in ("gave up with 0", "gave up with 1")
    fired = [e for e in await history(client, handle.id) if isinstance(e, TimerFired)]
    assert len(fired) == 1  # a durable timer, not the worker's clock
