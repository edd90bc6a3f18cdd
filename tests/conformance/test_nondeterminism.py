"""Workflow code that no longer matches its history is caught, and nothing is lost:
the task fails visibly, history stays as it was, and fixing the code lets it finish."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import tapeflow
from tapeflow import activity, workflow
from tests.conftest import WorkerFactory


@activity.defn
def reserve(item: str) -> str:
    return f"reserved {item}"


@activity.defn
def reserve_elsewhere(item: str) -> str:
    return f"reserved {item} elsewhere"


@activity.defn
def charge(item: str) -> str:
    return f"charged {item}"


@workflow.defn(name="checkout")
async def checkout(item: str) -> list[str]:
    done = [await workflow.execute_activity(reserve, item)]
    await workflow.wait_event("go")
    done.append(await workflow.execute_activity(charge, item))
    return done


@workflow.defn(name="checkout")
async def checkout_changed(item: str) -> list[str]:
    """A deploy that renamed the first step: old histories cannot replay through it."""
    done = [await workflow.execute_activity(reserve_elsewhere, item)]
    await workflow.wait_event("go")
    done.append(await workflow.execute_activity(charge, item))
    return done


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_changed_code_fails_the_task_not_the_workflow_and_recovers(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    activities = [reserve, reserve_elsewhere, charge]
    async with worker(workflows=[checkout], activities=activities):
        handle = await client.start_workflow(checkout, "book", id="checkout-1")

        async def waiting_for_event() -> bool:
            return (await handle.describe()).history_length >= 5

        await _until(waiting_for_event)
    before = await client.backend.load_history(handle.id)

    # Every worker starts cold here (a new process after a deploy): it must replay.
    async with worker(workflows=[checkout_changed], activities=activities, workflow_cache_size=0):
        await client.send_event(handle.id, "go")

        async def task_failed() -> bool:
            return (await handle.describe()).task_error is not None

        await _until(task_failed)
        record = await handle.describe()
    assert record.status is tapeflow.WorkflowStatus.RUNNING
    assert record.task_error is not None
    assert "NonDeterminismError" in record.task_error
    assert "history event #3" in record.task_error
    assert "'reserve'" in record.task_error
    assert "'reserve_elsewhere'" in record.task_error
    assert await client.backend.load_history(handle.id) == before

    async with worker(workflows=[checkout], activities=activities):
        assert await handle.result(timeout=20) == ["reserved book", "charged book"]
    assert (await handle.describe()).task_error is None


@workflow.defn
async def reads_a_socket() -> None:
    await asyncio.open_connection("127.0.0.1", 9)


async def test_real_io_in_a_workflow_fails_its_task_with_a_clear_error(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[reads_a_socket]):
        handle = await client.start_workflow(reads_a_socket, id="io-in-workflow")

        async def task_failed() -> bool:
            return (await handle.describe()).task_error is not None

        await _until(task_failed)
    record = await handle.describe()
    assert record.status is tapeflow.WorkflowStatus.PENDING
    assert record.task_error is not None
    assert "WorkflowSandboxError" in record.task_error
    assert "activity" in record.task_error  # the message says where I/O belongs
    assert await client.backend.load_history(handle.id) == []


@workflow.defn(name="packing")
async def packing(items: list[str]) -> list[str]:
    packed: list[str] = []
    for item in items:
        workflow.set_var("packing", item)
        packed.append(await workflow.execute_activity(reserve, item))
        workflow.set_var("packed", packed)
    await workflow.wait_event("ship")
    return packed


@workflow.defn(name="packing")
async def packing_changed(items: list[str]) -> list[str]:
    """A deploy that changed the second step: its history replays through the first only."""
    packed: list[str] = []
    for index, item in enumerate(items):
        workflow.set_var("packing", item)
        step = reserve_elsewhere if index == 1 else reserve
        packed.append(await workflow.execute_activity(step, item))
        workflow.set_var("packed", packed)
    await workflow.wait_event("ship")
    return packed


async def test_the_debugger_shows_a_diverged_workflow_as_of_its_last_consistent_task(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[packing], activities=[reserve]):
        handle = await client.start_workflow(packing, ["book", "lamp"], id="packing-1")

        async def waiting_to_ship() -> bool:
            return (await handle.describe()).history_length >= 8

        await _until(waiting_to_ship)
    debugger = tapeflow.WorkflowDebugger(client.backend)

    whole = await debugger.query_vars(packing, handle.id)
    assert whole == {"packing": "lamp", "packed": ["reserved book", "reserved lamp"]}
    assert (whole.as_of, whole.diverged) == (8, None)

    # Tasks: #1-#3 start and schedule 'book'; #4-#6 schedule 'lamp', where the new code
    # schedules reserve_elsewhere instead. The variables are those left by the first task.
    stuck = await debugger.query_vars(packing_changed, handle.id)
    assert stuck == {"packing": "book"}
    assert stuck.as_of == 3
    assert isinstance(stuck.diverged, tapeflow.NonDeterminismError)
    assert "history event #6" in str(stuck.diverged)
    assert "diverged=" in repr(stuck)  # printing it shows it is not the whole story
