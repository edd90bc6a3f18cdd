"""Golden histories: recorded end-to-end runs that today's engine must still replay.

Each ``histories/*.json`` file is the history of a finished workflow, written by
``python -m tests.replay.record``; ``histories/manifest.json`` says which workflow function
wrote it (``module:function``) and the file's stem is the workflow id. Replaying a golden
must raise no NonDeterminismError and must end with the same terminal event as recorded.
A failure here means an engine change broke old histories (or the workflow code changed:
record a new golden under a new name instead of changing an old one).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tapeflow import NonDeterminismError
from tapeflow._definition import Definition, definition_of
from tapeflow._engine.instance import WorkflowInstance
from tapeflow._engine.replay import replay_new, split_activations
from tapeflow.history import (
    ActivityScheduled,
    Decision,
    HistoryEvent,
    TimerStarted,
    WorkflowExecutionCompleted,
    WorkflowExecutionFailed,
    WorkflowExecutionStarted,
    decode_events,
    is_terminal,
)

HISTORIES = Path(__file__).parent / "histories"
MANIFEST: dict[str, str] = json.loads((HISTORIES / "manifest.json").read_text())


def load(file_name: str) -> tuple[Definition, str, list[HistoryEvent]]:
    """The workflow definition, workflow id and history of one golden file."""
    module_name, _, qualname = MANIFEST[file_name].partition(":")
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    history = decode_events((HISTORIES / file_name).read_text(encoding="utf-8"))
    return definition_of(target, "workflow"), Path(file_name).stem, history


def verify(definition: Definition, workflow_id: str, history: list[HistoryEvent]) -> None:
    """Replay ``history`` as a worker would, then check the terminal event it re-decides."""
    replay_new(definition, workflow_id, history).close()  # raises NonDeterminismError
    recorded = history[-1]
    assert is_terminal(recorded), f"golden does not end the workflow: {recorded}"
    instance = WorkflowInstance(definition, workflow_id)
    try:
        last: list[Decision] = []
        for part in split_activations(history):
            last = instance.activate(part.activation)
        assert instance.finished
    finally:
        instance.close()
    decided = last[-1]
    assert type(decided) is type(recorded), f"decided {decided.kind}, recorded {recorded.kind}"
    if isinstance(recorded, WorkflowExecutionCompleted):
        assert isinstance(decided, WorkflowExecutionCompleted)
        assert decided.result == recorded.result
    else:
        assert isinstance(recorded, WorkflowExecutionFailed)
        assert isinstance(decided, WorkflowExecutionFailed)
        assert (decided.failure.type, decided.failure.message) == (
            recorded.failure.type,
            recorded.failure.message,
        )


def test_there_are_golden_histories() -> None:
    assert len(MANIFEST) >= 8


def test_the_manifest_lists_exactly_the_golden_files() -> None:
    on_disk = {p.name for p in HISTORIES.glob("*.json")} - {"manifest.json"}
    assert on_disk == set(MANIFEST)


@pytest.mark.parametrize("file_name", sorted(MANIFEST))
def test_golden_history_replays(file_name: str) -> None:
    definition, workflow_id, history = load(file_name)
    started = next(e for e in history if isinstance(e, WorkflowExecutionStarted))
    assert started.name == definition.name
    verify(definition, workflow_id, history)


def test_vars_come_back_from_a_golden_history() -> None:
    definition, workflow_id, history = load("order_pipeline.json")
    instance = replay_new(definition, workflow_id, history)
    try:
        assert instance.vars["stage"] == "done"
        end = history[-1]
        assert isinstance(end, WorkflowExecutionCompleted)
        assert instance.vars["lines"] == end.result["lines"]
    finally:
        instance.close()


# -- the check catches a corrupted golden -----------------------------------------------------


def corrupt(
    history: list[HistoryEvent], kind: type[Any], change: Callable[[Any], HistoryEvent | None]
) -> tuple[list[HistoryEvent], int]:
    """A copy of ``history`` with its first ``kind`` event changed (None: removed); also
    that event's 1-based position."""
    copy = list(history)
    index = next(i for i, e in enumerate(copy) if isinstance(e, kind))
    changed = change(copy[index])
    if changed is None:
        del copy[index]
    else:
        copy[index] = changed
    return copy, index + 1


def test_a_golden_with_other_activity_arguments_is_caught() -> None:
    definition, workflow_id, history = load("order_pipeline.json")
    broken, position = corrupt(
        history,
        ActivityScheduled,
        lambda e: dataclasses.replace(e, args=[{"id": "o-18", "items": []}]),
    )
    with pytest.raises(NonDeterminismError, match=f"#{position} is activity_scheduled"):
        verify(definition, workflow_id, broken)


def test_a_golden_with_another_activity_name_is_caught() -> None:
    definition, workflow_id, history = load("saga_compensated.json")
    broken, position = corrupt(
        history, ActivityScheduled, lambda e: dataclasses.replace(e, name="steal_money")
    )
    with pytest.raises(NonDeterminismError, match=f"#{position} is activity_scheduled"):
        verify(definition, workflow_id, broken)


def test_a_golden_with_another_timer_is_caught() -> None:
    definition, workflow_id, history = load("timers_and_randomness.json")
    broken, position = corrupt(
        history,
        TimerStarted,
        lambda e: dataclasses.replace(e, fire_at=e.fire_at + timedelta(milliseconds=1)),
    )
    with pytest.raises(NonDeterminismError, match=f"#{position} is timer_started"):
        verify(definition, workflow_id, broken)


def test_a_golden_missing_a_decision_is_caught() -> None:
    definition, workflow_id, history = load("fan_out_sum.json")
    broken, _ = corrupt(history, ActivityScheduled, lambda e: None)
    with pytest.raises(NonDeterminismError):
        verify(definition, workflow_id, broken)


def test_a_golden_with_another_result_is_caught() -> None:
    definition, workflow_id, history = load("fan_out_sum.json")
    broken, _ = corrupt(
        history, WorkflowExecutionCompleted, lambda e: dataclasses.replace(e, result=-1)
    )
    with pytest.raises(AssertionError):
        verify(definition, workflow_id, broken)


def test_a_golden_that_ended_otherwise_is_caught() -> None:
    definition, workflow_id, history = load("gives_up.json")
    broken, _ = corrupt(
        history, WorkflowExecutionFailed, lambda e: WorkflowExecutionCompleted(result=None)
    )
    with pytest.raises(NonDeterminismError, match="workflow_completed"):
        verify(definition, workflow_id, broken)
