"""Cancel and terminate: a cancel is recorded once and raises CancelledError where the
workflow waits, its cleanup still runs activities; a terminate ends the run with no code
run and tells its running activities; neither is ever lost in a race with the end."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import timedelta

import pytest

import tapeflow
import tapeflow.testing
from tapeflow import activity, workflow
from tapeflow.history import (
    ActivityCancelled,
    ActivityScheduled,
    ExecutionTimeoutReached,
    HistoryEvent,
    WorkflowCancelRequested,
    WorkflowExecutionTerminated,
    WorkflowExecutionTimedOut,
)
from tests.conformance._waiting import eventually, has_run, history, history_has
from tests.conftest import WorkerFactory

LEASE = timedelta(seconds=1.5)
"""Short, so that a running attempt hears of its cancellation within half a second."""

told: list[str] = []
"""What the activities below saw: ``"<name> cancelled"`` when told to stop."""
running: list[str] = []
"""The labels ``slow_async`` attempts began with: an attempt can be told only once it runs."""


@activity.defn
async def slow_async(label: str) -> str:
    running.append(label)
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        told.append(f"{label} cancelled")
        raise
    return label


@activity.defn
def slow_sync(label: str) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            activity.heartbeat()
        except tapeflow.ActivityCancelled:
            assert activity.is_cancelled()
            told.append(f"{label} cancelled")
            raise
        time.sleep(0.02)
    return label


@activity.defn
def refund(label: str) -> str:
    return f"refunded {label}"


@activity.defn
def quick(n: int) -> int:
    return n


async def _waits_on(what: str) -> None:
    match what:
        case "activity":
            await workflow.execute_activity(slow_async, "charge")
        case "timer":
            await workflow.sleep(3600)
        case "event":
            await workflow.wait_event("shipped")
        case "gather":
            await asyncio.gather(
                workflow.execute_activity(slow_async, "a"),
                workflow.execute_activity(slow_async, "b"),
            )


@workflow.defn
async def order(what: str) -> str:
    try:
        await _waits_on(what)
    except asyncio.CancelledError:
        await workflow.execute_activity(refund, what)
        raise
    return "done"


@workflow.defn
async def shrugs_off() -> str:
    try:
        await workflow.sleep(3600)
    except asyncio.CancelledError:
        return await workflow.execute_activity(refund, "anyway")
    return "slept"


@workflow.defn
async def cancelled_in_cleanup() -> str:
    try:
        await workflow.sleep(3600)
    finally:
        await workflow.execute_activity(slow_async, "cleanup")
    return "never"


@workflow.defn
async def gives_up_on_charge() -> str:
    try:
        async with asyncio.timeout(0.5):
            await workflow.execute_activity(slow_async, "charge")
    except TimeoutError:
        return "gave up"
    return "charged"


@workflow.defn
async def holds_a_sync_attempt() -> str:
    return await workflow.execute_activity(slow_sync, "held")


@workflow.defn
async def one_quick_step(n: int) -> int:
    return await workflow.execute_activity(quick, n)


ACTIVITIES = [slow_async, slow_sync, refund, quick]


def _count(events: list[HistoryEvent], kind: type) -> int:
    return sum(1 for event in events if isinstance(event, kind))


@pytest.fixture(autouse=True)
def _fresh_told() -> None:
    told.clear()
    running.clear()


@pytest.mark.parametrize("what", ["activity", "timer", "event", "gather"])
async def test_a_cancel_raises_where_the_workflow_waits_and_its_cleanup_runs(
    client: tapeflow.Client, worker: WorkerFactory, what: str
) -> None:
    async with worker(workflows=[order], activities=ACTIVITIES, lease_duration=LEASE):
        handle = await client.start_workflow(order, what, id=f"order-{what}")
        if what in ("activity", "gather"):
            await history_has(client, handle.id, lambda e: isinstance(e, ActivityScheduled))
        else:
            await has_run(client, handle.id)
        await handle.cancel(reason="customer asked")
        await handle.cancel(reason="asked again")  # a no-op
        with pytest.raises(tapeflow.WorkflowCancelled) as raised:
            await handle.result(timeout=10)
        assert isinstance(raised.value, tapeflow.WorkflowFailed)
        assert (raised.value.type, raised.value.message) == ("CancelledError", "customer asked")
        if what in ("activity", "gather"):  # the running attempts were told
            expected = (
                {"charge cancelled"} if what == "activity" else {"a cancelled", "b cancelled"}
            )
            await eventually(lambda: _async_true(set(told) == expected), "attempts are told")
    record = await handle.describe()
    assert record.status is tapeflow.WorkflowStatus.CANCELLED
    assert (record.reason, record.requested_by) == ("customer asked", "client")
    events = await history(client, handle.id)
    assert _count(events, WorkflowCancelRequested) == 1
    refunds = [e for e in events if isinstance(e, ActivityScheduled) and e.name == "refund"]
    assert len(refunds) == 1
    if what in ("activity", "gather"):
        assert _count(events, ActivityCancelled) == (1 if what == "activity" else 2)
    assert tapeflow.testing.replay(order, events).finished  # the same decisions again


@pytest.mark.parametrize("what", ["activity", "timer"])
async def test_a_cancel_before_the_first_task_still_lets_the_cleanup_run(
    client: tapeflow.Client, worker: WorkerFactory, what: str
) -> None:
    """The cancel and the start reach the workflow in one task (no worker was up, or the
    one that claimed the first task died): its code still runs to its first await, and the
    cancel raises there, so its cleanup runs like that of a workflow cancelled later."""
    handle = await client.start_workflow(order, what, id=f"early-{what}")
    await handle.cancel(reason="changed my mind")
    async with worker(workflows=[order], activities=ACTIVITIES, lease_duration=LEASE):
        with pytest.raises(tapeflow.WorkflowCancelled):
            await handle.result(timeout=10)
    events = await history(client, handle.id)
    refunds = [e for e in events if isinstance(e, ActivityScheduled) and e.name == "refund"]
    assert len(refunds) == 1
    assert _count(events, WorkflowCancelRequested) == 1


async def _async_true(value: bool) -> bool:
    return value


async def test_a_workflow_that_catches_the_cancel_completes(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[shrugs_off], activities=ACTIVITIES):
        handle = await client.start_workflow(shrugs_off, id="shrugs")
        await has_run(client, handle.id)
        await handle.cancel()
        assert await handle.result(timeout=10) == "refunded anyway"
    assert (await handle.describe()).status is tapeflow.WorkflowStatus.COMPLETED


async def test_a_cleanup_that_waits_can_itself_be_terminated(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(
        workflows=[cancelled_in_cleanup], activities=ACTIVITIES, lease_duration=LEASE
    ):
        handle = await client.start_workflow(cancelled_in_cleanup, id="cleanup")
        await has_run(client, handle.id)
        await handle.cancel(reason="stop")
        await history_has(client, handle.id, lambda e: isinstance(e, ActivityScheduled))
        # Scheduled is not started: a terminate before its attempt runs has no one to tell.
        await eventually(lambda: _async_true("cleanup" in running), "the cleanup runs")
        await handle.terminate(reason="cleanup hangs")
        with pytest.raises(tapeflow.WorkflowTerminated) as raised:
            await handle.result(timeout=10)
        assert (raised.value.type, raised.value.message) == ("Terminated", "cleanup hangs")
        await eventually(lambda: _async_true(told == ["cleanup cancelled"]), "cleanup told")
    record = await handle.describe()
    assert record.status is tapeflow.WorkflowStatus.TERMINATED
    assert record.reason == "cleanup hangs"


async def test_terminate_tells_a_running_sync_attempt_and_writes_nothing_more(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(
        workflows=[holds_a_sync_attempt], activities=ACTIVITIES, lease_duration=LEASE
    ):
        handle = await client.start_workflow(holds_a_sync_attempt, id="held")
        await history_has(client, handle.id, lambda e: isinstance(e, ActivityScheduled))
        await asyncio.sleep(0.2)  # the attempt runs
        await handle.terminate(reason="poison input")
        with pytest.raises(tapeflow.WorkflowTerminated):
            await handle.result(timeout=10)
        await eventually(lambda: _async_true(told == ["held cancelled"]), "the attempt is told")
        length = (await handle.describe()).history_length
        await asyncio.sleep(2 * LEASE.total_seconds())
        assert (await handle.describe()).history_length == length
    events = await history(client, handle.id)
    assert isinstance(events[-1], WorkflowExecutionTerminated)
    assert tapeflow.testing.replay(holds_a_sync_attempt, events).finished
    with pytest.raises(tapeflow.WorkflowAlreadyCompleted) as raised:
        await handle.terminate()
    assert raised.value.status == "terminated"
    with pytest.raises(tapeflow.WorkflowAlreadyCompleted):
        await handle.cancel()


async def test_an_activity_cancelled_by_asyncio_timeout_is_told_and_not_retried(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[gives_up_on_charge], activities=ACTIVITIES, lease_duration=LEASE):
        handle = await client.start_workflow(gives_up_on_charge, id="gives-up")
        assert await handle.result(timeout=10) == "gave up"
        await eventually(lambda: _async_true(told == ["charge cancelled"]), "the attempt is told")
    events = await history(client, handle.id)
    assert _count(events, ActivityCancelled) == 1
    assert tapeflow.testing.replay(gives_up_on_charge, events).finished


async def test_cancel_and_terminate_of_unknown_or_closed_workflows_are_refused(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    unknown = client.get_handle("no-such-workflow")
    with pytest.raises(tapeflow.WorkflowNotFound):
        await unknown.cancel()
    with pytest.raises(tapeflow.WorkflowNotFound):
        await unknown.terminate()
    async with worker(workflows=[one_quick_step], activities=ACTIVITIES):
        handle = await client.start_workflow(one_quick_step, 1, id="done-already")
        assert await handle.result(timeout=10) == 1
    with pytest.raises(tapeflow.WorkflowAlreadyCompleted) as raised:
        await handle.cancel(reason="too late")
    assert raised.value.status == "completed"
    with pytest.raises(tapeflow.InvalidArgument):
        await handle.cancel(reason="\0")
    assert (await handle.describe()).reason is None


async def test_a_cancel_racing_the_end_is_either_recorded_or_refused(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    """Each workflow ends either cancelled (and its cancel returned) or completed (and its
    cancel raised WorkflowAlreadyCompleted): never both, never neither."""
    count = 30
    answers: dict[str, str] = {}

    async def cancel_soon(handle: tapeflow.WorkflowHandle[int], delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            await handle.cancel(reason="race")
        except tapeflow.WorkflowAlreadyCompleted:
            answers[handle.id] = "refused"
        else:
            answers[handle.id] = "recorded"

    async with worker(workflows=[one_quick_step], activities=ACTIVITIES):
        handles = [
            await client.start_workflow(one_quick_step, n, id=f"race-{n}") for n in range(count)
        ]
        await asyncio.gather(*(cancel_soon(h, (n % 10) * 0.01) for n, h in enumerate(handles)))
        for handle in handles:
            with contextlib.suppress(tapeflow.WorkflowCancelled):
                await handle.result(timeout=10)
    for handle in handles:
        status = (await handle.describe()).status
        expected = "recorded" if status is tapeflow.WorkflowStatus.CANCELLED else "refused"
        assert status in (tapeflow.WorkflowStatus.CANCELLED, tapeflow.WorkflowStatus.COMPLETED)
        assert answers[handle.id] == expected, handle.id
        events = await history(client, handle.id)
        assert _count(events, WorkflowCancelRequested) == (1 if expected == "recorded" else 0)


@workflow.defn
async def waits_for_shipping() -> str:
    try:
        return str(await workflow.wait_event("shipped"))
    finally:  # a timeout runs no code: if it did, this would schedule an activity
        await workflow.execute_activity(refund, "timed out")


async def test_an_execution_timeout_ends_the_run_with_no_code_run(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[waits_for_shipping, one_quick_step], activities=ACTIVITIES):
        late = await client.start_workflow(
            waits_for_shipping, id="late", execution_timeout=timedelta(seconds=1)
        )
        quick_one = await client.start_workflow(
            one_quick_step, 7, id="in-time", execution_timeout=timedelta(minutes=5)
        )
        assert await quick_one.result(timeout=10) == 7
        with pytest.raises(tapeflow.WorkflowTimedOut) as raised:
            await late.result(timeout=10)
    assert raised.value.type == "TimeoutError"
    assert "execution_timeout" in raised.value.message
    record = await late.describe()
    assert record.status is tapeflow.WorkflowStatus.TIMED_OUT
    assert record.requested_by == "timeout"
    assert record.completed_at is not None
    assert record.completed_at - record.start_at >= timedelta(seconds=1)
    events = await history(client, late.id)
    assert isinstance(events[-1], WorkflowExecutionTimedOut)
    assert not any(isinstance(e, ExecutionTimeoutReached) for e in events)
    assert not any(isinstance(e, ActivityScheduled) for e in events)
    assert tapeflow.testing.replay(waits_for_shipping, events).finished
    with pytest.raises(tapeflow.WorkflowAlreadyCompleted):
        await late.send_event("shipped", 1)


async def test_an_execution_timeout_must_be_a_positive_timedelta(
    client: tapeflow.Client,
) -> None:
    for bad in (timedelta(0), timedelta(seconds=-1), 5, timedelta(days=10**6)):
        with pytest.raises(tapeflow.InvalidArgument):
            await client.start_workflow(one_quick_step, 1, execution_timeout=bad)  # type: ignore[arg-type]
