"""on_event + timer + activity: a message sent while the workflow sleeps is captured by its
callback and used once the 3 s durable timer has fired."""

from __future__ import annotations

from datetime import timedelta

import tapeflow
from tapeflow.history import (
    ActivityScheduled,
    EventReceived,
    HistoryEvent,
    TimerFired,
    TimerStarted,
    WorkflowTaskStarted,
)
from tests.conformance._waiting import has_run, history
from tests.conftest import WorkerFactory
from tests.scenarios.handle_external_event import (
    handle_external_event,
    process_message,
)


def index_of(events: list[HistoryEvent], kind: type) -> int:
    return next(i for i, event in enumerate(events) if isinstance(event, kind))


async def test_callback_captures_the_message_used_after_the_timer(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[handle_external_event], activities=[process_message]):
        handle = await client.start_workflow(handle_external_event, id="on-event")
        await has_run(client, "on-event")  # callback registered, timer started
        await client.send_event("on-event", "message", "hello")
        assert await handle.result(timeout=10) == "processed: hello"

    events = await history(client, "on-event")
    assert isinstance(events[0], WorkflowTaskStarted)
    timer = events[index_of(events, TimerStarted)]
    assert isinstance(timer, TimerStarted)
    assert abs(timer.fire_at - (events[0].at + timedelta(seconds=3))) < timedelta(milliseconds=1)
    received = index_of(events, EventReceived)
    fired = index_of(events, TimerFired)
    scheduled = index_of(events, ActivityScheduled)
    assert received < fired < scheduled, "the event came before the timer fired"
    assert events[received] == EventReceived(name="message", payload="hello")
    task_of_firing = max(i for i in range(fired) if isinstance(events[i], WorkflowTaskStarted))
    task_time = events[task_of_firing]
    assert isinstance(task_time, WorkflowTaskStarted)
    assert task_time.at >= timer.fire_at, "the timer fired no earlier than due"
