"""``workflow.logger`` writes each record once, however often the workflow is replayed."""

from __future__ import annotations

import logging

import pytest

from tapeflow import activity, workflow
from tapeflow._engine.instance import Activation
from tapeflow._engine.replay import replay_new, split_activations
from tapeflow.history import ActivityScheduled
from tests.engine.conftest import RunFactory
from tests.engine.harness import WORKFLOW_ID, complete, definition


@activity.defn
def pack(item: str) -> str:
    return f"packed {item}"


@workflow.defn
async def packs_and_logs(items: list[str]) -> int:
    for item in items:
        workflow.logger.info("packing %s", item)
        await workflow.execute_activity(pack, item)
    workflow.logger.warning("packed %d items", len(items))
    return len(items)


def test_a_worker_without_a_cache_logs_each_record_once(
    run: RunFactory, caplog: pytest.LogCaptureFixture
) -> None:
    wf = run(packs_and_logs)
    decisions = wf.start(["book", "lamp", "mug"])
    for step in range(3):
        scheduled = decisions[0]
        assert isinstance(scheduled, ActivityScheduled)
        decisions = wf.later(1, complete(scheduled, f"packed {step}"))
    history = wf.history
    caplog.clear()

    # Each task as a worker without a cache runs it: replay what came before, then hand in
    # the task's new events. Replays log nothing; each task logs what it did anew.
    caplog.set_level(logging.INFO, logger="tapeflow.workflow")
    for task in split_activations(history):
        before = history[: task.position - 1]
        instance = replay_new(definition(packs_and_logs), WORKFLOW_ID, before, "run-1")
        instance.activate(Activation(task.activation.at, task.activation.events))
        instance.close()
    assert [r.getMessage() for r in caplog.records] == [
        "packing book",
        "packing lamp",
        "packing mug",
        "packed 3 items",
    ]
    record = caplog.records[-1]
    assert record.levelno == logging.WARNING
    assert (record.workflow_id, record.run, record.workflow_name) == (  # type: ignore[attr-defined]
        WORKFLOW_ID,
        "run-1",
        "packs_and_logs",
    )


def test_outside_a_workflow_it_logs_as_its_plain_logger(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="tapeflow.workflow"):
        workflow.logger.info("from a helper")
    assert [r.getMessage() for r in caplog.records] == ["from a helper"]
    assert not hasattr(caplog.records[0], "workflow_id")
