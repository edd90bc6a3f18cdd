"""A worker evicting a cached instance (its cache is full) ends the instance's coroutines
then and there: the ``finally`` they wait in does nothing, and the garbage collector finds
nothing to run later. The workflow goes on from its history, and tidies up once, for real."""

from __future__ import annotations

import gc
import logging
import sys
from typing import Any

import pytest

import tapeflow
from tapeflow import activity, workflow
from tapeflow._engine.instance import WorkflowInstance
from tapeflow.history import ActivityScheduled
from tests.conftest import WorkerFactory

noted: list[str] = []


@activity.defn
def note(name: str) -> str:
    noted.append(name)
    return name


@workflow.defn
async def naps_then_tidies(name: str) -> str:
    try:
        await workflow.sleep(0.5)
        return name
    finally:
        workflow.logger.warning("tidying up %s", name)
        await workflow.execute_activity(note, name)


async def test_an_instance_evicted_from_a_full_cache_does_nothing_more(
    client: tapeflow.Client,
    worker: WorkerFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    evicted: list[str] = []
    close = WorkflowInstance.close

    def spied(instance: WorkflowInstance) -> None:
        if not instance.finished:
            evicted.append(instance.workflow_id)
        close(instance)

    monkeypatch.setattr(WorkflowInstance, "close", spied)
    noted.clear()
    names = ["ann", "bob"]
    with caplog.at_level(logging.WARNING):
        async with worker(workflows=[naps_then_tidies], activities=[note], workflow_cache_size=1):
            handles = [
                await client.start_workflow(naps_then_tidies, name, id=f"evicted-{name}")
                for name in names
            ]
            assert [await handle.result(timeout=10) for handle in handles] == names
        gc.collect()

    assert evicted, "a cache of one holding two sleeping workflows evicts one"
    assert sorted(noted) == names
    for handle in handles:
        history = await client.backend.load_history(handle.id)
        assert [e.name for e in history if isinstance(e, ActivityScheduled)] == ["note"]
    assert sorted(r.getMessage() for r in caplog.records) == [f"tidying up {n}" for n in names]
    assert unraisable == []
