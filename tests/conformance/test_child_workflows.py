"""Child workflows: a child is a workflow of its own (its own id, history and handle), its
typed result or its failure returns to the parent, a parent's cancelled wait cancels it,
and the parent's close policy decides what becomes of a child still open when it ends."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal, cast

import pytest

import tapeflow
import tapeflow.testing
from tapeflow import workflow
from tapeflow.history import EventReceived, WorkflowExecutionStarted
from tests.conformance._waiting import eventually, history
from tests.conftest import WorkerFactory

Policy = Literal["terminate", "cancel", "abandon"]


@dataclass(frozen=True)
class Quote:
    item: str
    cents: int


# -- children ----------------------------------------------------------------------------------


@workflow.defn
async def quote(item: str) -> Quote:
    return Quote(item=item, cents=100 * len(item))


@workflow.defn
async def rejects(item: str) -> Quote:
    raise ValueError(f"no price for {item}")


@workflow.defn
async def echo_number(n: int) -> int:
    return n


@workflow.defn
async def awaits_approval(request: str) -> str:
    approved = await workflow.wait_event("approved", type=bool)
    return f"{request}: {'approved' if approved else 'rejected'}"


@workflow.defn
async def waits_forever() -> str:
    await workflow.wait_event("never")
    return "woke"


@workflow.defn
async def waits_for_go() -> str:
    """Notes a cancellation it sees (and lets it out); ``"went"`` once sent "go"."""
    try:
        await workflow.wait_event("go")
    except asyncio.CancelledError:
        workflow.set_var("saw", "CancelledError")
        raise
    return "went"


CHILDREN = [quote, rejects, echo_number, awaits_approval, waits_forever, waits_for_go]


# -- parents -----------------------------------------------------------------------------------


@workflow.defn
async def checkout(item: str) -> Quote:
    child_id = f"{workflow.info().workflow_id}-quote"
    priced = await workflow.execute_child_workflow(quote, item, id=child_id)
    assert isinstance(priced, Quote)  # decoded as the child's annotated type
    return priced


@workflow.defn
async def checkout_or_explain(item: str) -> list[str]:
    try:
        await workflow.execute_child_workflow(rejects, item, id=f"rejects-{item}")
    except tapeflow.ChildWorkflowError as exc:
        return [exc.workflow_id, exc.type, exc.message]
    return ["no error"]


@workflow.defn
async def sum_of_children(count: int) -> int:
    results = await asyncio.gather(
        *(workflow.execute_child_workflow(echo_number, n) for n in range(count))
    )
    return sum(results)


@workflow.defn
async def asks_for_approval(request: str) -> list[str]:
    child = await workflow.start_child_workflow(
        awaits_approval, request, id=f"{workflow.info().workflow_id}-approval"
    )
    await child.send_event("approved", True)
    return [child.id, await child.result()]


@workflow.defn
async def starts_two_children() -> list[str]:
    """Children with derived ids: their ids and run ids, as the parent learnt them."""
    first = await workflow.start_child_workflow(quote, "ab")
    second = await workflow.start_child_workflow(quote, "abc")
    await workflow.sleep(0.05)  # a later task: with the cache off, the ids come from a replay
    await first.result()
    await second.result()  # both ended before the parent does: no close policy applies
    return [first.id, first.run_id, second.id, second.run_id]


@workflow.defn
async def claims_an_id(child_id: str, how: str) -> list[str]:
    try:
        if how == "start":
            await workflow.start_child_workflow(quote, "x", id=child_id)
        else:
            await workflow.execute_child_workflow(quote, "x", id=child_id)
    except tapeflow.ChildWorkflowError as exc:
        return [exc.workflow_id, exc.type]
    return ["started"]


@workflow.defn
async def awaits_child(child_id: str, timeout_seconds: float | None) -> list[str]:
    timeout = None if timeout_seconds is None else timedelta(seconds=timeout_seconds)
    try:
        await workflow.execute_child_workflow(waits_forever, id=child_id, execution_timeout=timeout)
    except tapeflow.ChildWorkflowError as exc:
        return [exc.workflow_id, exc.type, exc.message]
    return ["completed"]


@workflow.defn
async def gives_up_on_child(child_id: str, how: str) -> str:
    """Waits for the child in a task of its own (``execute_child_workflow``, or the
    ``result()`` of a started child), cancels that task, and goes on. The child is
    abandoned at the parent's end, so only the cancelled wait can have cancelled it."""
    waiting: asyncio.Future[str]
    if how == "execute":
        waiting = asyncio.ensure_future(
            workflow.execute_child_workflow(
                waits_forever, id=child_id, parent_close_policy="abandon"
            )
        )
    else:
        child = await workflow.start_child_workflow(
            waits_forever, id=child_id, parent_close_policy="abandon"
        )
        waiting = asyncio.ensure_future(child.result())
    await workflow.sleep(0.05)  # a later task: the child has started
    waiting.cancel()
    try:
        await waiting
    except asyncio.CancelledError:
        return "CancelledError"
    except tapeflow.ChildWorkflowError as exc:  # if the wait reports the child's end instead
        return exc.type
    return "the child completed"


@workflow.defn
async def waits_on_child(child_id: str, policy: Policy) -> str:
    return await workflow.execute_child_workflow(
        waits_forever, id=child_id, parent_close_policy=policy
    )


@workflow.defn
async def leaves_a_child(child_id: str, policy: str) -> str:
    """Starts a child that waits for "go", and ends: under ``policy``, or the default."""
    if policy == "default":
        child = await workflow.start_child_workflow(waits_for_go, id=child_id)
    else:
        child = await workflow.start_child_workflow(
            waits_for_go, id=child_id, parent_close_policy=cast(Policy, policy)
        )
    return child.id


PARENTS = [
    checkout,
    checkout_or_explain,
    sum_of_children,
    asks_for_approval,
    starts_two_children,
    claims_an_id,
    awaits_child,
    gives_up_on_child,
    waits_on_child,
    leaves_a_child,
]
WORKFLOWS = [*CHILDREN, *PARENTS]


async def _has_run(client: tapeflow.Client, workflow_id: str) -> None:
    """Wait until the workflow exists (a parent starts it) and a worker ran its first task."""

    async def check() -> bool:
        try:
            return (await client.describe(workflow_id)).history_length > 0
        except tapeflow.WorkflowNotFound:
            return False

    await eventually(check, f"{workflow_id!r} exists and has run its first task")


# -- results and failures ----------------------------------------------------------------------


async def test_a_child_returns_its_typed_result_to_the_parent(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=WORKFLOWS):
        handle = await client.start_workflow(checkout, "apple", id="checkout")
        assert await handle.result(timeout=10) == Quote(item="apple", cents=500)
        child = client.get_handle("checkout-quote", result_type=Quote)
        assert await child.result(timeout=10) == Quote(item="apple", cents=500)
    record = await child.describe()
    assert record.status is tapeflow.WorkflowStatus.COMPLETED
    assert record.name == "quote"
    assert record.parent_id == "checkout"
    assert (await handle.describe()).parent_id is None
    child_history = await history(client, "checkout-quote")  # a history of its own
    [started] = [e for e in child_history if isinstance(e, WorkflowExecutionStarted)]
    assert (started.name, started.args) == ("quote", ["apple"])
    parent_history = await history(client, "checkout")
    assert tapeflow.testing.replay(checkout, parent_history, workflow_id="checkout").finished


async def test_a_failed_child_raises_child_workflow_error_in_the_parent(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=WORKFLOWS):
        handle = await client.start_workflow(checkout_or_explain, "pear", id="explains")
        explained = await handle.result(timeout=10)
        assert explained == ["rejects-pear", "ValueError", "no price for pear"]
        with pytest.raises(tapeflow.WorkflowFailed) as raised:
            await client.get_handle("rejects-pear").result(timeout=10)
    assert (raised.value.type, raised.value.message) == ("ValueError", "no price for pear")
    assert (await client.describe("rejects-pear")).status is tapeflow.WorkflowStatus.FAILED
    assert (await handle.describe()).status is tapeflow.WorkflowStatus.COMPLETED


@pytest.mark.parametrize("how", ["cancel", "terminate", "timeout"])
async def test_a_child_cancelled_terminated_or_timed_out_raises_child_workflow_error(
    client: tapeflow.Client, worker: WorkerFactory, how: str
) -> None:
    child_id = f"child-{how}"
    async with worker(workflows=WORKFLOWS):
        handle = await client.start_workflow(
            awaits_child, child_id, 1.0 if how == "timeout" else None, id=f"parent-{how}"
        )
        await _has_run(client, child_id)
        if how == "cancel":
            await client.get_handle(child_id).cancel(reason="ops said so")
        elif how == "terminate":
            await client.get_handle(child_id).terminate(reason="ops said so")
        workflow_id, kind, message = await handle.result(timeout=10)
    assert workflow_id == child_id
    expected = {
        "cancel": ("CancelledError", tapeflow.WorkflowStatus.CANCELLED),
        "terminate": ("Terminated", tapeflow.WorkflowStatus.TERMINATED),
        "timeout": ("TimeoutError", tapeflow.WorkflowStatus.TIMED_OUT),
    }[how]
    assert kind == expected[0]
    if how != "timeout":
        assert message == "ops said so"
    assert (await client.describe(child_id)).status is expected[1]


async def test_a_hundred_children_at_once_then_the_sum_of_their_results(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=WORKFLOWS):
        handle = await client.start_workflow(sum_of_children, 100, id="fan-out-children")
        assert await handle.result(timeout=30) == sum(range(100)) == 4950


async def test_start_child_then_send_it_an_event_and_await_its_result(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=WORKFLOWS):
        handle = await client.start_workflow(asks_for_approval, "leave", id="asks")
        assert await handle.result(timeout=10) == ["asks-approval", "leave: approved"]
    received = [e for e in await history(client, "asks-approval") if isinstance(e, EventReceived)]
    assert [(e.name, e.payload) for e in received] == [("approved", True)]
    assert (await client.describe("asks-approval")).parent_id == "asks"


async def test_children_with_derived_ids_are_workflows_of_their_own(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    """A child started without an id gets one derived from its parent's id and its place:
    stable across replays (the ids the parent returns are those of the children that ran),
    distinct between siblings and between parents."""
    async with worker(workflows=WORKFLOWS):
        parents = [
            await client.start_workflow(starts_two_children, id=f"parent-{n}") for n in (1, 2)
        ]
        learnt = {parent.id: await parent.result(timeout=10) for parent in parents}
    child_ids = [ids[i] for ids in learnt.values() for i in (0, 2)]
    assert len(set(child_ids)) == 4
    for parent_id, (first_id, first_run, second_id, second_run) in learnt.items():
        for child_id, run_id, item in ((first_id, first_run, "ab"), (second_id, second_run, "abc")):
            child = client.get_handle(child_id, result_type=Quote)
            assert await child.result(timeout=10) == Quote(item=item, cents=100 * len(item))
            record = await child.describe()
            assert (record.parent_id, record.run_id, record.name) == (parent_id, run_id, "quote")


@pytest.mark.parametrize("how", ["start", "execute"])
@pytest.mark.parametrize("holder", ["running", "completed"])
async def test_a_child_whose_id_is_taken_raises_workflow_already_exists(
    client: tapeflow.Client, worker: WorkerFactory, how: str, holder: str
) -> None:
    async with worker(workflows=WORKFLOWS):
        if holder == "running":
            await client.start_workflow(waits_for_go, id="taken")
        else:
            ended = await client.start_workflow(echo_number, 7, id="taken")
            assert await ended.result(timeout=10) == 7
        taken = client.get_handle("taken")
        handle = await client.start_workflow(claims_an_id, "taken", how, id="claims")
        assert await handle.result(timeout=10) == ["taken", "WorkflowAlreadyExists"]
        record = await taken.describe()  # the workflow holding the id is left as it was
        assert record.parent_id is None
        assert record.name == ("waits_for_go" if holder == "running" else "echo_number")
        if holder == "running":
            assert not record.status.finished
            await taken.send_event("go")
            assert await taken.result(timeout=10) == "went"


# -- cancellation through the parent -----------------------------------------------------------


@pytest.mark.parametrize("how", ["execute", "result"])
async def test_cancelling_the_parents_wait_for_a_child_cancels_the_child(
    client: tapeflow.Client, worker: WorkerFactory, how: str
) -> None:
    async with worker(workflows=WORKFLOWS):
        handle = await client.start_workflow(gives_up_on_child, "given-up", how, id="gives-up")
        assert await handle.result(timeout=10) == "CancelledError"
        with pytest.raises(tapeflow.WorkflowCancelled):
            await client.get_handle("given-up").result(timeout=10)
    assert (await client.describe("given-up")).status is tapeflow.WorkflowStatus.CANCELLED
    assert (await handle.describe()).status is tapeflow.WorkflowStatus.COMPLETED


async def test_cancelling_the_parent_cancels_the_child_it_awaits(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    """The child is abandoned at the parent's end, so what cancels it is the parent's
    cancelled ``execute_child_workflow``, not the close policy."""
    async with worker(workflows=WORKFLOWS):
        handle = await client.start_workflow(waits_on_child, "awaited", "abandon", id="awaits")
        await _has_run(client, "awaited")
        await handle.cancel(reason="no longer needed")
        with pytest.raises(tapeflow.WorkflowCancelled):
            await handle.result(timeout=10)
        with pytest.raises(tapeflow.WorkflowCancelled):
            await client.get_handle("awaited").result(timeout=10)
    assert (await client.describe("awaited")).status is tapeflow.WorkflowStatus.CANCELLED


async def test_cancelling_the_parent_ends_its_child_under_the_default_policy(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    """Under the default policy the child's cancel races its termination at the parent's
    end: either may win, but the child does not go on."""
    async with worker(workflows=WORKFLOWS):
        handle = await client.start_workflow(waits_on_child, "awaited", "terminate", id="awaits")
        await _has_run(client, "awaited")
        await handle.cancel(reason="no longer needed")
        with pytest.raises(tapeflow.WorkflowCancelled):
            await handle.result(timeout=10)
        with pytest.raises(tapeflow.WorkflowFailed):  # WorkflowCancelled or WorkflowTerminated
            await client.get_handle("awaited").result(timeout=10)
    assert (await client.describe("awaited")).status in (
        tapeflow.WorkflowStatus.CANCELLED,
        tapeflow.WorkflowStatus.TERMINATED,
    )


# -- parent close policies ---------------------------------------------------------------------

ENDS_AS = {
    "default": tapeflow.WorkflowStatus.TERMINATED,
    "terminate": tapeflow.WorkflowStatus.TERMINATED,
    "cancel": tapeflow.WorkflowStatus.CANCELLED,
    "abandon": tapeflow.WorkflowStatus.COMPLETED,
}


@pytest.mark.parametrize("policy", ["default", "terminate", "cancel", "abandon"])
async def test_the_parent_close_policy_decides_what_becomes_of_an_open_child(
    client: tapeflow.Client, worker: WorkerFactory, policy: str
) -> None:
    """The parent ends while its child waits: ``terminate`` (the default) ends the child as
    terminated, ``cancel`` raises CancelledError where it waits, ``abandon`` lets it go on."""
    child_id = f"left-{policy}"
    async with worker(workflows=WORKFLOWS):
        handle = await client.start_workflow(leaves_a_child, child_id, policy, id="leaves")
        assert await handle.result(timeout=10) == child_id
        child = client.get_handle(child_id, result_type=str)
        match policy:
            case "default" | "terminate":
                with pytest.raises(tapeflow.WorkflowTerminated):
                    await child.result(timeout=10)
            case "cancel":  # it saw CancelledError where it waited, and let it out
                with pytest.raises(tapeflow.WorkflowCancelled):
                    await child.result(timeout=10)
            case "abandon":  # it goes on, and completes when sent its event
                await _has_run(client, child_id)
                await child.send_event("go")
                assert await child.result(timeout=10) == "went"
    record = await child.describe()
    assert record.parent_id == "leaves"
    assert record.status is ENDS_AS[policy]
    saw = await tapeflow.WorkflowDebugger(client.backend).query_vars(waits_for_go, child_id)
    assert saw.get("saw") == ("CancelledError" if policy == "cancel" else None)
