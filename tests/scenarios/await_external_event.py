"""The await-external-event, and how external events are kept and handed out.

``wait_event`` returns the oldest event of its name not yet returned, however long ago it
arrived; ``on_event`` callbacks see every event of their name in history order, those
that came before the callback was registered included.
"""

from __future__ import annotations

from dataclasses import dataclass

from tapeflow import activity, workflow


@dataclass(frozen=True)
class Greeting:
    sender: str
    text: str


@activity.defn
def answer(greeting: Greeting) -> str:
    return f"{greeting.sender} said {greeting.text!r}"


@workflow.defn
async def await_external_event() -> str:
    greeting: Greeting = await workflow.wait_event("greeting", type=Greeting)
    return await workflow.execute_activity(answer, greeting)


@workflow.defn
async def collect_after_go(count: int) -> list[str]:
    """Waits for "go", then takes ``count`` "item" events."""
    await workflow.wait_event("go")
    return [await workflow.wait_event("item", type=str) for _ in range(count)]


@workflow.defn
async def late_listener() -> list[int]:
    """Registers its "item" callback only after "go", and stops at "done"."""
    await workflow.wait_event("go")
    seen: list[int] = []
    workflow.on_event("item", seen.append, type=int)
    await workflow.wait_event("done")
    return seen
