"""wait_event + activity, and external events are never dropped: one sent before the
workflow waits is kept, several are handed out oldest first, and a callback registered late
sees the earlier ones too, in order."""

from __future__ import annotations

from collections.abc import Callable

import tapeflow
from tapeflow.history import EventReceived, HistoryEvent
from tests.conformance._waiting import has_run, history_has
from tests.conftest import WorkerFactory
from tests.scenarios.await_external_event import (
    Greeting,
    answer,
    await_external_event,
    collect_after_go,
    late_listener,
)


def received(name: str) -> Callable[[HistoryEvent], bool]:
    def found(e: HistoryEvent) -> bool:
        return isinstance(e, EventReceived) and e.name == name

    return found


async def test_the_workflow_waits_for_the_event_then_calls_the_activity_with_it(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[await_external_event], activities=[answer]):
        handle = await client.start_workflow(await_external_event, id="await-event")
        await has_run(client, "await-event")
        assert (await handle.describe()).status == tapeflow.WorkflowStatus.RUNNING
        await client.send_event("await-event", "greeting", {"sender": "ana", "text": "hi"})
        assert await handle.result(timeout=10) == "ana said 'hi'"


async def test_a_typed_payload_sent_as_the_type_itself(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[await_external_event], activities=[answer]):
        handle = await client.start_workflow(await_external_event, id="await-typed")
        await handle.send_event("greeting", Greeting(sender="bo", text="hello"))
        assert await handle.result(timeout=10) == "bo said 'hello'"


async def test_events_sent_before_any_worker_ran_the_workflow_are_kept_in_order(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    handle = await client.start_workflow(collect_after_go, 3, id="early")
    for item in ("a", "b", "c"):
        await client.send_event("early", "item", item)
    await client.send_event("early", "go")
    async with worker(workflows=[collect_after_go]):
        assert await handle.result(timeout=10) == ["a", "b", "c"]


async def test_events_that_arrive_while_the_workflow_waits_for_another_are_kept(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[collect_after_go]):
        handle = await client.start_workflow(collect_after_go, 3, id="kept")
        await has_run(client, "kept")  # now waiting for "go"
        for count, item in enumerate(("a", "b", "c"), start=1):
            await client.send_event("kept", "item", item)
            await history_has(client, "kept", received("item"), count=count)
        assert (await handle.describe()).status == tapeflow.WorkflowStatus.RUNNING
        await client.send_event("kept", "go")
        assert await handle.result(timeout=10) == ["a", "b", "c"]


async def test_a_callback_registered_late_sees_every_event_in_order(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[late_listener]):
        handle = await client.start_workflow(late_listener, id="late")
        await client.send_event("late", "item", 1)
        await client.send_event("late", "item", 2)
        await history_has(client, "late", received("item"), count=2)
        await client.send_event("late", "go")
        await history_has(client, "late", received("go"))
        await client.send_event("late", "item", 3)
        await client.send_event("late", "done")
        assert await handle.result(timeout=10) == [1, 2, 3]
