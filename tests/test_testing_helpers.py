"""tapeflow.testing: save a real history, replay it against current and changed code."""

from __future__ import annotations

from pathlib import Path

import pytest

import tapeflow
from tapeflow import activity, testing, workflow
from tests.conftest import WorkerFactory


@activity.defn
def greet(name: str) -> str:
    return f"hello {name}"


@workflow.defn(name="greeter")
async def greeter(name: str) -> str:
    workflow.set_var("name", name)
    return await workflow.execute_activity(greet, name)


@workflow.defn(name="greeter")
async def greeter_changed(name: str) -> str:
    return await workflow.execute_activity(greet, name.upper())


async def test_save_then_replay_a_history(
    client: tapeflow.Client, worker: WorkerFactory, tmp_path: Path
) -> None:
    async with worker(workflows=[greeter], activities=[greet]):
        handle = await client.start_workflow(greeter, "ann", id="greet-ann")
        assert await handle.result(timeout=10) == "hello ann"
    path = tmp_path / "greet-ann.json"
    await testing.save_history(client.backend, handle.id, path)
    history = testing.load_history(path)

    replayed = testing.replay(greeter, history)
    assert replayed == testing.Replayed(vars={"name": "ann"}, finished=True)
    with pytest.raises(tapeflow.NonDeterminismError, match="history event #3"):
        testing.replay(greeter_changed, history)
