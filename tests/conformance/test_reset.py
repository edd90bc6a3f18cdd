"""``handle.reset(event=N)``: the id's next run goes on from the first N events of its
latest run, on the code deployed now, with what the old run had going at N going again."""

from __future__ import annotations

import pytest

import tapeflow
from tapeflow import activity, workflow
from tapeflow.history import (
    ActivityScheduled,
    EventReceived,
    TimerStarted,
    WorkflowExecutionFailed,
    WorkflowReset,
)
from tests.conformance._stored import stored
from tests.conformance._waiting import eventually, history, history_has, task_error_of
from tests.conftest import WorkerFactory

RUNS = "SELECT run_number FROM workflows WHERE id = {} ORDER BY run_number"
calls: list[str] = []


@activity.defn
def measure(item: str) -> int:
    calls.append(f"measure {item}")
    return len(item)


@activity.defn
def pack(item: str) -> str:
    return f"packed {item}"


@activity.defn
def pack_twice(item: str) -> str:
    return f"packed {item} twice"


@workflow.defn(name="flow")
async def flow_with_a_bug(item: str) -> str:
    size = await workflow.execute_activity(measure, item)
    raise ValueError(f"cannot ship {size}")


@workflow.defn(name="flow")
async def flow_fixed(item: str) -> str:
    size = await workflow.execute_activity(measure, item)
    return f"{item}:{size}"


@workflow.defn(name="parcel")
async def parcel(item: str) -> str:
    await workflow.execute_activity(measure, item)
    await workflow.wait_event("go")
    return await workflow.execute_activity(pack, item)


@workflow.defn(name="parcel")
async def parcel_changed(item: str) -> str:
    """A deploy that changed the step after the event: old histories past it diverge."""
    await workflow.execute_activity(measure, item)
    await workflow.wait_event("go")
    return await workflow.execute_activity(pack_twice, item)


@workflow.defn
async def nap(seconds: float) -> str:
    await workflow.sleep(seconds)
    return "rested"


async def test_a_failed_workflow_reset_before_its_bug_completes_on_the_fixed_code(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    calls.clear()
    async with worker(workflows=[flow_with_a_bug], activities=[measure]):
        handle = await client.start_workflow(flow_with_a_bug, "book", id="flow-1")
        with pytest.raises(tapeflow.WorkflowFailed):
            await handle.result(timeout=10)
    failed = await handle.describe()
    old = await history(client, handle.id)
    assert isinstance(old[2], ActivityScheduled)
    assert isinstance(old[-1], WorkflowExecutionFailed)

    reset = await handle.reset(event=3, reason="deployed the fix")

    async with worker(workflows=[flow_fixed], activities=[measure]):
        assert await reset.result(timeout=10) == "book:4"
    record = await handle.describe()
    assert (record.run_id, record.previous_run_id) == (reset.run_id, failed.run_id)
    assert record.status is tapeflow.WorkflowStatus.COMPLETED
    new = await history(client, handle.id)
    assert new[:3] == old[:3]
    assert WorkflowReset(failed.run_id, 3, "deployed the fix") in new
    assert calls == ["measure book", "measure book"]  # pending at 3: scheduled again
    old_run = await client.backend.get_workflow(handle.id, failed.run_id)
    assert old_run.status is tapeflow.WorkflowStatus.FAILED  # a closed run is left as it was


async def test_a_non_deterministic_workflow_reset_before_it_diverged_gets_its_event_again(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[parcel], activities=[measure]):
        handle = await client.start_workflow(parcel, "lamp", id="parcel-1")
        await eventually(lambda: _length_at_least(handle, 5), "the workflow waits", 10)
        await client.send_event(handle.id, "go")
        await history_has(
            client, handle.id, lambda e: isinstance(e, ActivityScheduled) and e.name == "pack"
        )
    async with worker(
        workflows=[parcel_changed], activities=[measure, pack, pack_twice], workflow_cache_size=0
    ):
        assert "NonDeterminismError" in await task_error_of(client, handle.id)
        before = await handle.describe()
        reset = await handle.reset(event=5, reason="skip the old pack")
        assert await reset.result(timeout=10) == "packed lamp twice"
    old_run = await client.backend.get_workflow(handle.id, before.run_id)
    assert (old_run.status, old_run.reason, old_run.requested_by) == (
        tapeflow.WorkflowStatus.TERMINATED,
        "skip the old pack",
        "reset",
    )
    new = await history(client, handle.id)
    assert [e for e in new[5:] if isinstance(e, EventReceived)] == [EventReceived("go", None)]


async def test_a_reset_to_the_middle_of_a_task_names_the_nearest_ends_and_writes_nothing(
    client: tapeflow.Client, worker: WorkerFactory, backend_url: str
) -> None:
    async with worker(workflows=[flow_with_a_bug], activities=[measure]):
        handle = await client.start_workflow(flow_with_a_bug, "pen", id="flow-2")
        with pytest.raises(tapeflow.WorkflowFailed):
            await handle.result(timeout=10)
    before = await handle.describe()
    for event, message in (
        (4, "event 4 is not one; the nearest that are: 3"),
        (6, "the nearest that are: 3"),  # the failure's end: nothing to go on from
        (1, "the nearest that are: 3"),
    ):
        with pytest.raises(tapeflow.InvalidArgument, match=message):
            await handle.reset(event=event)
    with pytest.raises(tapeflow.InvalidArgument, match="not an event number"):
        await handle.reset(event=3.0)  # type: ignore[arg-type]
    assert await handle.describe() == before
    assert stored(backend_url, RUNS, handle.id) == [(1,)]


async def test_a_running_workflow_is_terminated_and_its_waiting_event_carried(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[parcel], activities=[measure, pack]):
        handle = await client.start_workflow(parcel, "desk", id="parcel-2")
        await eventually(lambda: _length_at_least(handle, 5), "the workflow waits", 10)
    await client.send_event(handle.id, "go")  # no worker runs it: in the inbox, not history
    before = await handle.describe()
    reset = await handle.reset(event=5, reason="moved to a new run")
    old_run = await client.backend.get_workflow(handle.id, before.run_id)
    assert (old_run.status, old_run.requested_by) == (tapeflow.WorkflowStatus.TERMINATED, "reset")
    assert (await handle.describe()).status is tapeflow.WorkflowStatus.RUNNING
    async with worker(workflows=[parcel], activities=[measure, pack]):
        assert await reset.result(timeout=10) == "packed desk"


async def test_a_timer_pending_at_the_reset_waits_again_in_the_new_run(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[nap]):
        handle = await client.start_workflow(nap, 0.5, id="nap-1")
        await history_has(client, handle.id, lambda e: isinstance(e, TimerStarted))
    reset = await handle.reset(event=3)  # the first task's end: the timer just started
    async with worker(workflows=[nap]):
        assert await reset.result(timeout=10) == "rested"


async def test_a_reset_of_an_unknown_workflow_raises_not_found(client: tapeflow.Client) -> None:
    with pytest.raises(tapeflow.WorkflowNotFound):
        await client.get_handle("nobody").reset(event=3)


async def _length_at_least(handle: tapeflow.WorkflowHandle[str], length: int) -> bool:
    return (await handle.describe()).history_length >= length
