"""Workflow-to-workflow events: ``workflow.send_event`` is recorded in the sender's history
and delivered exactly once, however often the sender replays; a target that does not exist
or has ended is reported inside the sender, where the workflow can catch it."""

from __future__ import annotations

import pytest

import tapeflow
import tapeflow.testing
from tapeflow import workflow
from tapeflow.history import EventReceived, HistoryEvent
from tests.conformance._waiting import history, history_has
from tests.conftest import WorkerFactory


@workflow.defn
async def collects_greetings() -> list[str]:
    """Every "greeting" it is sent, until the client says "stop"."""
    greetings: list[str] = []
    workflow.on_event("greeting", greetings.append, type=str)
    await workflow.wait_event("stop")
    return greetings


@workflow.defn
async def greets(target: str, text: str) -> str:
    await workflow.send_event(target, "greeting", text)
    for _ in range(3):  # more tasks: with the cache off, each replays the send
        await workflow.sleep(0.01)
    return "sent"


@workflow.defn
async def greets_if_it_can(target: str) -> str:
    try:
        await workflow.send_event(target, "greeting", "hi")
    except tapeflow.WorkflowNotFound:
        return "no such workflow"
    except tapeflow.WorkflowAlreadyCompleted:
        return "already completed"
    return "sent"


@workflow.defn
async def ends_at_once() -> str:
    return "done"


@workflow.defn
async def player(other: str, rounds: int, serves: bool) -> list[int]:
    """Ping-pong: the ball is a count, each hit sends it on one higher. The server sends
    the odd counts and receives the even ones; each player receives ``rounds`` balls."""
    received: list[int] = []
    if serves:
        await workflow.send_event(other, "ball", 1)
    while len(received) < rounds:
        ball = await workflow.wait_event("ball", type=int)
        received.append(ball)
        if ball < 2 * rounds:
            await workflow.send_event(other, "ball", ball + 1)
    return received


WORKFLOWS = [collects_greetings, greets, greets_if_it_can, ends_at_once, player]


def _received(events: list[HistoryEvent], name: str) -> list[object]:
    return [e.payload for e in events if isinstance(e, EventReceived) and e.name == name]


async def test_a_workflow_sends_an_event_to_another_that_waits_for_it(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=WORKFLOWS):
        receiver = await client.start_workflow(collects_greetings, id="receiver")
        sender = await client.start_workflow(greets, "receiver", "hello", id="sender")
        assert await sender.result(timeout=10) == "sent"
        await history_has(
            client, "receiver", lambda e: isinstance(e, EventReceived) and e.name == "greeting"
        )
        await receiver.send_event("stop")
        assert await receiver.result(timeout=10) == ["hello"]
    assert _received(await history(client, "receiver"), "greeting") == ["hello"]
    sent = await history(client, "sender")
    assert tapeflow.testing.replay(greets, sent, workflow_id="sender").finished


@pytest.mark.parametrize("target", ["unknown", "ended"])
async def test_an_unknown_or_ended_target_is_reported_inside_the_sender(
    client: tapeflow.Client, worker: WorkerFactory, target: str
) -> None:
    async with worker(workflows=WORKFLOWS):
        if target == "ended":
            ended = await client.start_workflow(ends_at_once, id="ended")
            assert await ended.result(timeout=10) == "done"
        sender = await client.start_workflow(greets_if_it_can, target, id="sender")
        expected = "no such workflow" if target == "unknown" else "already completed"
        assert await sender.result(timeout=10) == expected
    assert (await sender.describe()).status is tapeflow.WorkflowStatus.COMPLETED
    if target == "ended":
        assert _received(await history(client, "ended"), "greeting") == []
    else:
        with pytest.raises(tapeflow.WorkflowNotFound):
            await client.describe("unknown")


async def test_two_workflows_play_fifty_rounds_of_ping_pong(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    rounds = 50
    async with worker(workflows=WORKFLOWS):
        pong = await client.start_workflow(player, "ping", rounds, False, id="pong")
        ping = await client.start_workflow(player, "pong", rounds, True, id="ping")
        assert await ping.result(timeout=60) == list(range(2, 2 * rounds + 1, 2))
        assert await pong.result(timeout=60) == list(range(1, 2 * rounds, 2))
    for workflow_id, first in (("ping", 2), ("pong", 1)):
        events = await history(client, workflow_id)
        balls = _received(events, "ball")
        assert len(balls) == rounds, workflow_id  # each received exactly once
        assert balls == list(range(first, 2 * rounds + 1, 2))
        assert tapeflow.testing.replay(player, events, workflow_id=workflow_id).finished
