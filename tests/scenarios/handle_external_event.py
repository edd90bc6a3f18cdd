"""The handle-external-event: an event callback captures a message, a durable 3 s
timer runs out, then an activity is called with what the callback captured."""

from __future__ import annotations

from datetime import timedelta

from tapeflow import activity, workflow

WAIT = timedelta(seconds=3)


@activity.defn
def process_message(message: str) -> str:
    return f"processed: {message}"


@workflow.defn
async def handle_external_event() -> str:
    captured: list[str] = []
    workflow.on_event("message", captured.append, type=str)
    await workflow.sleep(WAIT)
    return await workflow.execute_activity(process_message, ", ".join(captured) or "nothing")
