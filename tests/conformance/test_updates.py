"""Updates: a request in, an answer out. ``execute_update`` returns the handler's result
once it has run; a validator's rejection leaves history as it was; an accepted update and
its answer are in history, so a replay, or another worker after a crash, gives the same
answer; an ``update_id`` makes it happen once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import tapeflow
import tapeflow.testing
from tapeflow import activity, workflow
from tapeflow.backends.failpoints import parse, wrap
from tapeflow.history import (
    HistoryEvent,
    UpdateAccepted,
    UpdateCompleted,
    UpdateRequested,
)
from tests.conformance._waiting import eventually, has_run, history, history_has
from tests.conformance.update_workflows import pack, packing
from tests.conftest import WorkerFactory

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Cart:
    owner: str


@dataclass
class Line:
    item: str
    quantity: int


@dataclass
class Receipt:
    lines: int
    total: int


@workflow.defn
async def checkout(cart: Cart) -> str:
    items: list[str] = []

    def add(item: str) -> int:
        items.append(item)
        return len(items)

    def check(item: str) -> None:
        if not item:
            raise ValueError("empty item")

    def receipt(line: Line) -> Receipt:  # typed both ways: a dataclass in, one out
        items.extend([line.item] * line.quantity)
        return Receipt(lines=len(items), total=line.quantity)

    def remove(item: str) -> int:
        items.remove(item)  # ValueError if it is not there: the update fails
        return len(items)

    workflow.on_update("add", add, validator=check)
    workflow.on_update("receipt", receipt)
    workflow.on_update("remove", remove)
    await workflow.wait_event("pay")
    return f"{cart.owner}: " + ",".join(items)


@activity.defn
async def price(item: str) -> int:
    return len(item) * 100


@workflow.defn
async def priced_cart() -> int:
    total = 0

    async def add(item: str) -> int:
        nonlocal total
        cost = await workflow.execute_activity(price, item)
        total += cost  # after the await: other updates ran meanwhile
        return total

    workflow.on_update("add", add)
    await workflow.wait_event("pay")
    return total


@workflow.defn
async def counter(start: int) -> int:
    """Counts by "bump"; "next" with "again" continues it as new, with its count."""
    count = start

    def bump(by: int) -> int:
        nonlocal count
        count += by
        return count

    workflow.on_update("bump", bump)
    if await workflow.wait_event("next", type=str) == "again":
        workflow.continue_as_new(count)
    return count


@workflow.defn
async def waiter() -> str:
    """Its "hold" update waits for an event that may never come."""

    async def hold() -> str:
        released: str = await workflow.wait_event("release", type=str)
        return released

    workflow.on_update("hold", hold)
    await workflow.wait_event("stop")
    return "stopped"


@workflow.defn
async def ends_at_once() -> str:
    return "done"


WORKFLOWS = [checkout, priced_cart, counter, waiter, ends_at_once]


def _updates(events: list[HistoryEvent]) -> list[HistoryEvent]:
    return [e for e in events if isinstance(e, UpdateAccepted | UpdateCompleted | UpdateRequested)]


async def test_an_update_returns_its_handlers_result_and_is_recorded(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=WORKFLOWS):
        handle = await client.start_workflow(checkout, Cart("ada"), id="cart")
        assert await handle.execute_update("add", "apple", update_id="u-1") == 1
        line = Line("pear", 2)
        assert await handle.execute_update("receipt", line, result_type=Receipt) == Receipt(3, 2)
        await handle.send_event("pay")
        assert await handle.result(timeout=10) == "ada: apple,pear,pear"
    events = await history(client, "cart")
    assert _updates(events)[:2] == [
        UpdateAccepted(update_id="u-1", name="add", args=["apple"]),
        UpdateCompleted(update_id="u-1", name="add", result=1),
    ]
    assert tapeflow.testing.replay(checkout, events, workflow_id="cart").finished


async def test_a_rejected_update_leaves_no_trace_and_the_workflow_goes_on(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=WORKFLOWS):
        handle = await client.start_workflow(checkout, Cart("bo"), id="cart")
        await has_run(client, "cart")
        before = await history(client, "cart")
        with pytest.raises(tapeflow.UpdateFailed) as rejected:
            await handle.execute_update("add", "", update_id="empty")
        assert rejected.value.rejected
        assert (rejected.value.type, rejected.value.message) == ("ValueError", "empty item")
        assert (rejected.value.update_id, rejected.value.name) == ("empty", "add")
        assert await history(client, "cart") == before  # not even a task's start
        with pytest.raises(tapeflow.UpdateFailed, match="no update handler named 'pay'") as none:
            await handle.execute_update("pay")
        assert none.value.rejected
        with pytest.raises(tapeflow.UpdateFailed, match="must be str") as badly:
            await handle.execute_update("add", 42)
        assert (badly.value.type, badly.value.rejected) == ("PayloadError", True)
        assert await history(client, "cart") == before
        assert await handle.execute_update("add", "fig") == 1
        await handle.send_event("pay")
        assert await handle.result(timeout=10) == "bo: fig"
    assert [e.kind for e in _updates(await history(client, "cart"))] == [
        "update_accepted",  # the fig's, and nothing of the rejected ones
        "update_completed",
    ]


async def test_a_failing_handler_fails_its_update_which_history_keeps(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=WORKFLOWS):
        handle = await client.start_workflow(checkout, Cart("cy"), id="cart")
        with pytest.raises(tapeflow.UpdateFailed) as failed:
            await handle.execute_update("remove", "plum", update_id="u-plum")
        assert not failed.value.rejected
        assert failed.value.type == "ValueError"
        assert "list.remove" in failed.value.message
        assert failed.value.traceback is not None
        assert "ValueError" in failed.value.traceback
        assert await handle.execute_update("add", "plum") == 1  # the workflow went on
        assert await handle.execute_update("remove", "plum") == 0
        await handle.send_event("pay")
        assert await handle.result(timeout=10) == "cy: "
    [completed] = [
        e
        for e in await history(client, "cart")
        if isinstance(e, UpdateCompleted) and e.update_id == "u-plum"
    ]
    assert completed.failure is not None
    assert completed.failure.type == "ValueError"


async def test_an_async_handler_calls_an_activity_while_the_workflow_waits(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=WORKFLOWS, activities=[price]):
        handle = await client.start_workflow(priced_cart, id="priced")
        assert await handle.execute_update("add", "tea") == 300
        assert await handle.execute_update("add", "coffee") == 900
        await handle.send_event("pay")
        assert await handle.result(timeout=10) == 900
    events = await history(client, "priced")
    assert tapeflow.testing.replay(priced_cart, events, workflow_id="priced").finished


async def test_twenty_concurrent_updates_get_distinct_consistent_answers(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=WORKFLOWS, activities=[price]):
        cart = await client.start_workflow(checkout, Cart("dee"), id="cart")
        priced = await client.start_workflow(priced_cart, id="priced")
        items = [f"item-{n:02}" for n in range(20)]
        counts = await asyncio.gather(*(cart.execute_update("add", item) for item in items))
        totals = await asyncio.gather(*(priced.execute_update("add", item) for item in items))
        await cart.send_event("pay")
        await priced.send_event("pay")
        added = (await cart.result(timeout=10)).removeprefix("dee: ").split(",")
        assert await priced.result(timeout=10) == 20 * 700
    assert sorted(counts) == list(range(1, 21))  # each answer once
    assert sorted(added) == items
    assert [added.index(item) + 1 for item in items] == counts  # each its own place
    assert sorted(totals) == [700 * n for n in range(1, 21)]


async def test_an_update_id_makes_a_retried_call_return_the_first_answer(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=WORKFLOWS):
        handle = await client.start_workflow(counter, 0, id="counter")
        assert await handle.execute_update("bump", 5, update_id="once") == 5
        assert await handle.execute_update("bump", 5, update_id="once") == 5  # not 10
        again = await asyncio.gather(
            *(handle.execute_update("bump", 1, update_id="x") for _ in range(5))
        )
        assert again == [6] * 5
        await handle.send_event("next", "again")  # a new run: the ids are kept for the id
        await has_next_run(client, "counter")
        assert await handle.execute_update("bump", 5, update_id="once") == 5
        assert await handle.execute_update("bump", 1) == 7
        await handle.send_event("next", "stop")
        assert await handle.result(timeout=10) == 7
    first_run = (await client.describe("counter")).previous_run_id
    assert first_run is not None
    accepted = [e for e in await handle.history(first_run) if isinstance(e, UpdateAccepted)]
    assert [e.update_id for e in accepted] == ["once", "x"]
    await handle.delete()  # its updates go with it
    assert await client.backend.get_update("counter", "once") is None


async def test_a_call_whose_answer_was_lost_is_retried_by_its_update_id(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    """The request committed, but the caller was told the database failed: the retry with
    the same update id gets the answer of the one update there was."""
    handle = await client.start_workflow(counter, 0, id="counter")
    flaky = tapeflow.Client(wrap(client.backend, parse("request_update=raise-after#1")))
    async with worker(workflows=WORKFLOWS):
        with pytest.raises(tapeflow.BackendUnavailable, match="failpoint"):
            await flaky.get_handle("counter").execute_update("bump", 5, update_id="retried")
        assert await flaky.get_handle("counter").execute_update("bump", 5, update_id="retried") == 5
        assert await handle.execute_update("bump", 1) == 6
        await handle.send_event("next", "stop")
        assert await handle.result(timeout=10) == 6


async def has_next_run(client: tapeflow.Client, workflow_id: str) -> None:
    async def check() -> bool:
        record = await client.describe(workflow_id)
        return record.previous_run_id is not None and record.history_length > 0

    await eventually(check, f"{workflow_id!r} continued as new")


async def test_updates_to_closed_and_missing_workflows_are_refused(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    with pytest.raises(tapeflow.WorkflowNotFound):
        await client.get_handle("nobody").execute_update("add", "x")
    async with worker(workflows=WORKFLOWS):
        done = await client.start_workflow(ends_at_once, id="done")
        assert await done.result(timeout=10) == "done"
        with pytest.raises(tapeflow.WorkflowAlreadyCompleted) as closed:
            await done.execute_update("add", "x", update_id="late")
        assert closed.value.status == "completed"
    assert await client.backend.get_update("done", "late") is None  # nothing was kept
    assert await client.backend.get_update("nobody", "late") is None


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda h: h.execute_update("", 1), "update name must be"),
        (lambda h: h.execute_update("add", "x", update_id=""), "update id must be"),
        (lambda h: h.execute_update("add", "x", update_id=7), "update id must be"),
        (lambda h: h.execute_update("add", "x", timeout=-1), "update timeout must be"),
        (lambda h: h.execute_update("add", object()), "argument 0 of update 'add'"),
        (lambda h: h.start_update("a\x00b"), "update name must be"),
    ],
    ids=["name", "empty-id", "int-id", "timeout", "unstorable", "control-character"],
)
async def test_bad_input_is_an_invalid_argument_and_sends_nothing(
    client: tapeflow.Client, call: Callable[[tapeflow.WorkflowHandle[Any]], Any], error: str
) -> None:
    handle = await client.start_workflow(checkout, Cart("eve"), id="cart")
    with pytest.raises(tapeflow.InvalidArgument, match=error):
        await call(handle)
    [task] = await client.backend.claim_workflow_tasks(["checkout"], "me", timedelta(seconds=5), 9)
    assert [item.event.kind for item in task.inbox] == ["workflow_started"]


async def test_an_update_whose_workflow_ends_first_fails_and_no_caller_waits_for_ever(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=WORKFLOWS):
        handle = await client.start_workflow(waiter, id="waiter")
        holding = asyncio.create_task(handle.execute_update("hold", update_id="held"))
        await history_has(client, "waiter", lambda e: isinstance(e, UpdateAccepted))
        await handle.send_event("stop")
        with pytest.raises(tapeflow.UpdateFailed) as ended:
            await asyncio.wait_for(holding, 10)
        assert (ended.value.type, ended.value.rejected) == ("WorkflowAlreadyCompleted", False)
        assert "completed before the update's handler finished" in ended.value.message
        assert await handle.result(timeout=10) == "stopped"
        # asked again, the same answer: the first one stands
        with pytest.raises(tapeflow.UpdateFailed, match="completed before"):
            await handle.execute_update("hold", update_id="held")

        terminated = await client.start_workflow(waiter, id="terminated")
        await has_run(client, "terminated")
        holding = asyncio.create_task(terminated.execute_update("hold"))
        await history_has(client, "terminated", lambda e: isinstance(e, UpdateAccepted))
        await terminated.terminate("enough")
        with pytest.raises(tapeflow.UpdateFailed, match="terminated before it answered") as cut:
            await asyncio.wait_for(holding, 10)
        assert cut.value.type == "WorkflowAlreadyCompleted"


async def test_an_update_sent_before_any_worker_runs_is_answered_once_one_does(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    handle = await client.start_workflow(checkout, Cart("fay"), id="cart")
    with pytest.raises(TimeoutError, match=r"no answer within 0\.2s"):
        await handle.execute_update("add", "kiwi", update_id="early", timeout=0.2)
    waiting = asyncio.create_task(handle.execute_update("add", "kiwi", update_id="early"))
    async with worker(workflows=WORKFLOWS):
        assert await asyncio.wait_for(waiting, 10) == 1
        await handle.send_event("pay")
        assert await handle.result(timeout=10) == "fay: kiwi"  # added once


async def test_an_update_whose_worker_stops_mid_handler_is_finished_by_the_next(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    """The first worker runs the workflow but not the activity the handler awaits; it stops
    with the update half done, and a worker that runs both answers it."""
    handle = await client.start_workflow(priced_cart, id="priced")
    async with worker(workflows=WORKFLOWS):
        asking = asyncio.create_task(handle.execute_update("add", "jam"))
        await history_has(client, "priced", lambda e: e.kind == "activity_scheduled")
    assert not asking.done()
    async with worker(workflows=WORKFLOWS, activities=[price]):
        assert await asyncio.wait_for(asking, 10) == 300
        await handle.send_event("pay")
        assert await handle.result(timeout=10) == 300


async def _wait_for(predicate: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_an_update_survives_its_worker_killed_mid_activity(
    backend_url: str, client: tapeflow.Client, worker: WorkerFactory, tmp_path: Path
) -> None:
    """A worker in another process takes the update and runs the activity its handler
    awaits; killed there, another worker takes over once its leases run out, and the
    caller, waiting all along, gets the answer."""
    markers = tmp_path / "markers"
    markers.mkdir()
    handle = await client.start_workflow(packing, str(markers), id="packing")
    asking = asyncio.create_task(handle.execute_update("pack", "cup"))
    lease = 1.5
    doomed = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.conformance.update_workflows",
        backend_url,
        str(lease),
        cwd=ROOT,
    )
    try:
        await _wait_for(lambda: any(markers.iterdir()))
        doomed.send_signal(signal.SIGKILL)
        await asyncio.wait_for(doomed.wait(), 10)
    finally:
        if doomed.returncode is None:
            doomed.kill()
    assert not asking.done()
    async with worker(
        workflows=[packing], activities=[pack], lease_duration=timedelta(seconds=lease)
    ):
        assert await asyncio.wait_for(asking, 30) == "cup packed"
        await handle.send_event("ship")
        assert await handle.result(timeout=10) == ["cup packed"]
    assert sorted(p.name for p in markers.iterdir()) == [
        f"attempt-1-pid-{doomed.pid}",
        f"attempt-2-pid-{os.getpid()}",
    ]
    events = await history(client, "packing")
    assert [e.kind for e in _updates(events)] == ["update_accepted", "update_completed"]
