"""Bad input gets a clear, typed error and changes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

import tapeflow
from tapeflow import activity, workflow
from tests.conftest import WorkerFactory


@dataclass
class Order:
    id: int
    item: str


@activity.defn
def echo(text: str) -> str:
    return text


@workflow.defn
async def place(order: Order) -> str:
    return await workflow.execute_activity(echo, f"{order.id}:{order.item}")


@workflow.defn
async def greet(name: str) -> str:
    first = await workflow.wait_event("first")
    return f"{name}/{first}"


async def plain_coroutine(order: Order) -> str:
    return order.item


async def _assert_nothing_written(backend: tapeflow.Backend, workflow_id: str) -> None:
    with pytest.raises(tapeflow.WorkflowNotFound):
        await backend.get_workflow(workflow_id)
    with pytest.raises(tapeflow.WorkflowNotFound):
        await backend.load_history(workflow_id)


async def test_starting_a_function_that_is_not_a_workflow(client: tapeflow.Client) -> None:
    with pytest.raises(tapeflow.NotADefinition, match=r"@workflow\.defn"):
        await client.start_workflow(plain_coroutine, Order(1, "x"), id="not-a-workflow")
    with pytest.raises(tapeflow.NotADefinition):
        await client.start_workflow(echo, "x", id="an-activity")  # type: ignore[arg-type]
    await _assert_nothing_written(client.backend, "not-a-workflow")
    await _assert_nothing_written(client.backend, "an-activity")


def test_decorators_refuse_what_cannot_work() -> None:
    def sync_function() -> None: ...

    with pytest.raises(tapeflow.NotADefinition, match="async def"):
        workflow.defn(sync_function)
    with pytest.raises(tapeflow.InvalidArgument):
        activity.defn(name="")(sync_function)

    async def keyword_only(*, value: int) -> None: ...

    with pytest.raises(tapeflow.NotADefinition, match="positional"):
        workflow.defn(keyword_only)


async def test_duplicate_workflow_id_keeps_the_first(client: tapeflow.Client) -> None:
    await client.start_workflow(place, Order(1, "book"), id="order-1")
    with pytest.raises(tapeflow.WorkflowAlreadyExists) as caught:
        await client.start_workflow(place, Order(2, "pen"), id="order-1")
    assert caught.value.workflow_id == "order-1"
    record = await client.describe("order-1")
    assert record.args == [{"id": 1, "item": "book"}]
    assert len(await client.backend.load_history("order-1")) == 0


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(({"id": "one", "item": "x"},), id="wrong-field-type"),
        pytest.param(("not an order",), id="wrong-type"),
        pytest.param((Order(1, "x"), "extra"), id="too-many"),
        pytest.param((), id="too-few"),
        pytest.param((object(),), id="not-serializable"),
    ],
)
async def test_input_that_does_not_match_the_annotation(
    client: tapeflow.Client, args: tuple[object, ...]
) -> None:
    with pytest.raises(tapeflow.PayloadError):
        await client.start_workflow(place, *args, id="bad-input")
    await _assert_nothing_written(client.backend, "bad-input")


async def test_event_payload_that_cannot_be_serialized(client: tapeflow.Client) -> None:
    await client.start_workflow(greet, "ann", id="greet-1")
    with pytest.raises(tapeflow.PayloadError):
        await client.send_event("greet-1", "first", object())


@pytest.mark.parametrize("bad_id", ["", "x" * 256, "tab\there", "nul\x00"])
async def test_ids_that_are_empty_too_long_or_hold_control_characters(
    client: tapeflow.Client, bad_id: str
) -> None:
    with pytest.raises(tapeflow.InvalidArgument):
        await client.start_workflow(place, Order(1, "x"), id=bad_id)
    with pytest.raises(tapeflow.InvalidArgument):
        await client.send_event(bad_id, "first", 1)
    with pytest.raises(tapeflow.InvalidArgument):
        client.get_handle(bad_id)


async def test_start_at_must_be_timezone_aware(client: tapeflow.Client) -> None:
    with pytest.raises(tapeflow.InvalidArgument, match="tz-aware"):
        await client.start_workflow(place, Order(1, "x"), id="naive", start_at=datetime(2030, 1, 1))
    await _assert_nothing_written(client.backend, "naive")


async def test_unknown_workflow_ids(client: tapeflow.Client) -> None:
    with pytest.raises(tapeflow.WorkflowNotFound):
        await client.send_event("nobody", "first", 1)
    with pytest.raises(tapeflow.WorkflowNotFound):
        await client.get_handle("nobody").result(timeout=5)
    with pytest.raises(tapeflow.WorkflowNotFound):
        await tapeflow.WorkflowDebugger(client.backend).query_vars(greet, "nobody")
    await _assert_nothing_written(client.backend, "nobody")


async def test_event_for_a_finished_workflow(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[greet]):
        handle = await client.start_workflow(greet, "ann", id="greet-done")
        await client.send_event(handle.id, "first", "hello")
        assert await handle.result(timeout=10) == "ann/hello"
    history = await client.backend.load_history(handle.id)
    with pytest.raises(tapeflow.WorkflowAlreadyCompleted):
        await client.send_event(handle.id, "first", "late")
    assert await client.backend.load_history(handle.id) == history


TRICKY_IDS = [
    'quote\'s "double"',
    "100%",
    "under_score",
    "%_%",
    "'; DROP TABLE workflows; --",
    "back\\slash",
    "ünïcødé ✓ 🚀",
    "עברית right-to-left",
    "x" * 255,
]


async def test_tricky_ids_round_trip_exactly(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[greet]):
        handles = [
            await client.start_workflow(greet, workflow_id, id=workflow_id)
            for workflow_id in TRICKY_IDS
        ]
        for handle in handles:
            await client.send_event(handle.id, "first", handle.id)
        for handle in handles:
            assert await handle.result(timeout=10) == f"{handle.id}/{handle.id}"
    for workflow_id in TRICKY_IDS:
        record = await client.describe(workflow_id)
        assert record.id == workflow_id
        assert record.status is tapeflow.WorkflowStatus.COMPLETED
    # LIKE-style metacharacters must not match other ids
    with pytest.raises(tapeflow.WorkflowNotFound):
        await client.describe("100_")
    with pytest.raises(tapeflow.WorkflowNotFound):
        await client.describe("%")


async def test_query_vars_before_any_worker_ran_it(client: tapeflow.Client) -> None:
    await client.start_workflow(greet, "ann", id="not-run-yet")
    assert await tapeflow.WorkflowDebugger(client.backend).query_vars(greet, "not-run-yet") == {}


async def test_start_at_in_the_past_runs_at_once(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[place], activities=[echo]):
        handle = await client.start_workflow(
            place, Order(7, "cup"), id="past", start_at=datetime(2001, 1, 1, tzinfo=UTC)
        )
        assert await handle.result(timeout=10) == "7:cup"
