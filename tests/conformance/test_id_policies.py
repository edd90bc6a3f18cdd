"""What a start does with an id that has a run already: ``id_reuse`` decides whether a new
run may follow a closed one, then ``id_conflict`` whether a taken id fails or gives its run;
``start_event`` delivers an event in the start's own transaction."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

import tapeflow
from tapeflow import workflow
from tapeflow.history import EventReceived, WorkflowExecutionStarted
from tests.conformance._waiting import history
from tests.conftest import WorkerFactory


@workflow.defn
async def order(number: int) -> str:
    return f"order {number}"


@workflow.defn
async def doomed(number: int) -> str:
    raise ValueError(f"order {number} is out of stock")


@workflow.defn
async def approval(number: int) -> tuple[int, bool]:
    return number, await workflow.wait_event("approved", type=bool)


@workflow.defn
async def tally(expected: int) -> list[int]:
    votes: list[int] = []
    workflow.on_event("vote", votes.append, type=int)
    await workflow.wait_condition(lambda: len(votes) >= expected)
    return sorted(votes)


WORKFLOWS = [order, doomed, approval]


async def _closed(client: tapeflow.Client, definition: Any, workflow_id: str) -> str:
    """Run a workflow to its end; its run id."""
    handle = await client.start_workflow(definition, 1, id=workflow_id)
    with contextlib.suppress(tapeflow.WorkflowFailed):
        await handle.result(timeout=10)
    assert handle.run_id is not None
    return handle.run_id


async def _runs(client: tapeflow.Client, workflow_id: str) -> int:
    """How many runs the id has had."""
    count, record = 1, await client.describe(workflow_id)
    while record.previous_run_id is not None:
        count += 1
        record = await client.backend.get_workflow(workflow_id, record.previous_run_id)
    return count


async def test_a_taken_id_fails_by_default(client: tapeflow.Client) -> None:
    first = await client.start_workflow(order, 1, id="order-7")
    with pytest.raises(tapeflow.WorkflowAlreadyExists):
        await client.start_workflow(order, 2, id="order-7", id_conflict="fail")
    record = await client.describe("order-7")
    assert (record.run_id, record.args) == (first.run_id, [1])


async def test_use_existing_gives_the_open_run(client: tapeflow.Client) -> None:
    first = await client.start_workflow(order, 1, id="order-7")
    again = await client.start_workflow(order, 2, id="order-7", id_conflict="use_existing")
    assert again.id == "order-7"
    assert again.run_id == first.run_id is not None
    record = await client.describe("order-7")
    assert (record.run_id, record.args) == (first.run_id, [1])  # the second start wrote nothing


async def test_use_existing_gives_the_closed_run(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=WORKFLOWS):
        run_id = await _closed(client, order, "order-7")
        again = await client.start_workflow(order, 2, id="order-7", id_conflict="use_existing")
        assert again.run_id == run_id
        assert await again.result(timeout=10) == "order 1"
    assert await _runs(client, "order-7") == 1


@pytest.mark.parametrize(
    ("definition", "reused_by"),
    [(order, {"allow"}), (doomed, {"allow", "allow_failed"})],
    ids=["after-completed", "after-failed"],
)
async def test_id_reuse_after_the_run_closed(
    client: tapeflow.Client, worker: WorkerFactory, definition: Any, reused_by: set[str]
) -> None:
    async with worker(workflows=WORKFLOWS):
        previous = await _closed(client, definition, "order-7")
        for reuse in ("reject", "allow_failed", "allow"):
            if reuse not in reused_by:
                with pytest.raises(tapeflow.WorkflowAlreadyExists):
                    await client.start_workflow(definition, 2, id="order-7", id_reuse=reuse)
                continue
            handle = await client.start_workflow(definition, 2, id="order-7", id_reuse=reuse)
            assert handle.run_id not in (None, previous)
            with contextlib.suppress(tapeflow.WorkflowFailed):
                await handle.result(timeout=10)
            record = await client.describe("order-7")
            assert (record.run_id, record.previous_run_id) == (handle.run_id, previous)
            assert record.args == [2]
            previous = record.run_id
        assert await _runs(client, "order-7") == 1 + len(reused_by)


async def test_an_open_run_is_never_reused(client: tapeflow.Client) -> None:
    first = await client.start_workflow(order, 1, id="order-7")
    with pytest.raises(tapeflow.WorkflowAlreadyExists):
        await client.start_workflow(order, 2, id="order-7", id_reuse="allow")
    again = await client.start_workflow(
        order, 2, id="order-7", id_reuse="allow", id_conflict="use_existing"
    )
    assert again.run_id == first.run_id


async def test_id_reuse_decides_before_use_existing(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=WORKFLOWS):
        completed = await _closed(client, order, "order-7")
        kept = await client.start_workflow(
            order, 2, id="order-7", id_reuse="allow_failed", id_conflict="use_existing"
        )
        assert kept.run_id == completed  # not reusable: the closed run
        reused = await client.start_workflow(
            order, 3, id="order-7", id_reuse="allow", id_conflict="use_existing"
        )
        assert reused.run_id != completed  # reusable: a new run
        assert await reused.result(timeout=10) == "order 3"
    assert await _runs(client, "order-7") == 2


async def test_start_event_reaches_a_new_workflow_right_after_its_start(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    handle = await client.start_workflow(approval, 7, id="order-7", start_event=("approved", True))
    async with worker(workflows=WORKFLOWS):
        assert await handle.result(timeout=10) == (7, True)
    events = [e for e in await history(client, "order-7") if isinstance(e, EventReceived)]
    assert events == [EventReceived(name="approved", payload=True)]


async def test_start_event_reaches_the_existing_workflow(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    first = await client.start_workflow(approval, 7, id="order-7")
    with pytest.raises(tapeflow.WorkflowAlreadyExists):  # refused: its event is not delivered
        await client.start_workflow(approval, 8, id="order-7", start_event=("approved", False))
    found = await client.start_workflow(
        approval, 8, id="order-7", id_conflict="use_existing", start_event=("approved", True)
    )
    assert found.run_id == first.run_id
    async with worker(workflows=WORKFLOWS):
        assert await found.result(timeout=10) == (7, True)


async def test_start_event_to_a_closed_workflow_raises_unless_it_is_reused(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=WORKFLOWS):
        closed = await _closed(client, order, "order-7")
        with pytest.raises(tapeflow.WorkflowAlreadyCompleted):
            await client.start_workflow(
                approval, 8, id="order-7", id_conflict="use_existing", start_event=("approved", 1)
            )
        assert (await client.describe("order-7")).run_id == closed  # nothing written
        reused = await client.start_workflow(
            approval,
            8,
            id="order-7",
            id_conflict="use_existing",
            id_reuse="allow",
            start_event=("approved", True),
        )
        assert reused.run_id != closed
        assert await reused.result(timeout=10) == (8, True)


async def test_fifty_concurrent_starts_of_one_id_make_one_workflow(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    handles = await asyncio.gather(
        *(
            client.start_workflow(approval, n, id="order-7", id_conflict="use_existing")
            for n in range(50)
        )
    )
    assert len(handles) == 50
    assert len({h.run_id for h in handles}) == 1
    assert (await client.describe("order-7")).run_id == handles[0].run_id
    await client.send_event("order-7", "approved", True)
    async with worker(workflows=WORKFLOWS):
        number, approved = await handles[0].result(timeout=10)
    assert approved
    assert 0 <= number < 50
    starts = [
        e for e in await history(client, "order-7") if isinstance(e, WorkflowExecutionStarted)
    ]
    assert len(starts) == 1
    assert await _runs(client, "order-7") == 1


async def test_concurrent_starts_from_many_connections_make_one_workflow(
    client: tapeflow.Client, backend_url: str, worker: WorkerFactory
) -> None:
    """Each connection's starts are one transaction (batched on PostgreSQL): those of the
    transactions that lose the race must find the winner's run, which they could not see
    at first, and deliver their events to it."""
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            tapeflow.Client(await stack.enter_async_context(tapeflow.connect(backend_url)))
            for _ in range(4)
        ]
        handles = await asyncio.gather(
            *(
                c.start_workflow(
                    tally, 40, id="order-7", id_conflict="use_existing", start_event=("vote", n)
                )
                for n in range(10)
                for c in clients
            )
        )
    assert len({h.run_id for h in handles}) == 1
    async with worker(workflows=[tally]):
        tallied = client.get_handle("order-7", result_type=list[int])
        assert await tallied.result(timeout=10) == sorted(list(range(10)) * 4)
    assert await _runs(client, "order-7") == 1


async def test_bad_policies_are_refused_and_write_nothing(client: tapeflow.Client) -> None:
    bad: list[dict[str, Any]] = [
        {"id_conflict": "replace"},
        {"id_conflict": True},
        {"id_reuse": "always"},
        {"id_reuse": None},
        {"start_event": "approved"},
        {"start_event": ("approved",)},
        {"start_event": ["approved", True]},
        {"start_event": ("", True)},
        {"start_event": ("approved", object())},
    ]
    for options in bad:
        with pytest.raises(tapeflow.InvalidArgument) as caught:
            await client.start_workflow(approval, 1, id="order-7", **options)
        assert str(caught.value)
    with pytest.raises(tapeflow.InvalidArgument, match=r"id_conflict .* 'fail', 'use_existing'"):
        await client.start_workflow(approval, 1, id="order-7", id_conflict="replace")  # type: ignore[call-overload]
    with pytest.raises(tapeflow.WorkflowNotFound):
        await client.describe("order-7")
