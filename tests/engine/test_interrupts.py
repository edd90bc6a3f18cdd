"""BaseExceptions outside Exception (SystemExit, KeyboardInterrupt, a user's own) from
workflow code fail the task as WorkflowInterrupted, wherever in the workflow they start;
nothing is decided, and the original is kept as the cause."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tapeflow import WorkflowInterrupted, workflow
from tapeflow.history import EventReceived, TimerFired
from tests.engine.conftest import RunFactory
from tests.engine.harness import at


class Meltdown(BaseException):
    pass


POISONS: dict[str, type[BaseException]] = {
    "SystemExit": SystemExit,
    "KeyboardInterrupt": KeyboardInterrupt,
    "Meltdown": Meltdown,
}


@workflow.defn
async def raises_after_a_timer(poison: str) -> None:
    await workflow.sleep(1)
    raise POISONS[poison]("from main")


@workflow.defn
async def raises_in_a_gathered_task(poison: str) -> None:
    async def child() -> None:
        await workflow.sleep(1)
        raise POISONS[poison]("from a child task")

    await asyncio.gather(child(), workflow.sleep(5))


@workflow.defn
async def raises_in_a_callback(poison: str) -> None:
    def on_poke(payload: Any) -> None:
        raise POISONS[poison]("from an on_event callback")

    workflow.on_event("poke", on_poke)
    await workflow.wait_event("never")


@pytest.mark.parametrize("poison", sorted(POISONS))
@pytest.mark.parametrize(
    ("function", "where", "event"),
    [
        (raises_after_a_timer, "from main", TimerFired(seq=1)),
        (raises_in_a_gathered_task, "from a child task", TimerFired(seq=1)),
        (raises_in_a_callback, "from an on_event callback", EventReceived("poke", None)),
    ],
    ids=["main", "gathered", "callback"],
)
def test_a_base_exception_fails_the_task_not_the_workflow(
    run: RunFactory, function: Any, where: str, event: Any, poison: str
) -> None:
    wf = run(function)
    wf.start(poison)
    with pytest.raises(WorkflowInterrupted) as interrupted:
        wf.step(at(1), event)
    assert str(interrupted.value) == f"workflow code raised {poison}: {where}"
    assert type(interrupted.value.__cause__) is POISONS[poison]
    assert not wf.instance.finished
    assert wf.instance.commands.take_decisions() == []
