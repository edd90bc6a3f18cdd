"""Golden histories across a patch: what CI replays before each step of a code change.

``patched_checkout_before.json`` was recorded by the checkout as first deployed,
``patched_checkout.json`` by the checkout with ``workflow.patched("discount")``. Each step
of the change replays what may still be running when it deploys: the patch, the histories
from before it; the deprecation, the histories of the patch. Each step also refuses what
it must not meet, naming the patch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tapeflow import NonDeterminismError, testing
from tapeflow._definition import definition_of
from tapeflow.history import HistoryEvent, MarkerRecorded, WorkflowExecutionCompleted
from tests.replay import workflows as wf
from tests.replay.test_golden import HISTORIES, load, verify


def golden(stem: str) -> tuple[str, list[HistoryEvent]]:
    _, workflow_id, history = load(f"{stem}.json")
    return workflow_id, history


def test_the_patched_golden_has_the_marker_and_the_one_before_has_none() -> None:
    _, before = golden("patched_checkout_before")
    _, after = golden("patched_checkout")
    assert not [e for e in before if isinstance(e, MarkerRecorded)]
    assert [e for e in after if isinstance(e, MarkerRecorded)] == [
        MarkerRecorded(seq=3, name="patch", details={"id": "discount"})
    ]


@pytest.mark.parametrize(
    ("stem", "code", "total"),
    [
        ("patched_checkout_before", wf.patched_checkout, 57),  # the old branch: no discount
        ("patched_checkout", wf.checkout_patch_deprecated, 52),  # the marker matched
    ],
    ids=["patch-replays-history-from-before", "deprecation-replays-history-of-patch"],
)
def test_each_step_replays_the_histories_it_meets(
    stem: str, code: Callable[..., Any], total: int
) -> None:
    workflow_id, history = golden(stem)
    verify(definition_of(code, "workflow"), workflow_id, history)  # same result re-decided
    end = history[-1]
    assert isinstance(end, WorkflowExecutionCompleted)
    assert end.result["total"] == total


@pytest.mark.parametrize(
    ("stem", "code", "named"),
    [
        ("patched_checkout_before", wf.checkout_patch_deprecated, "deprecated patch 'discount'"),
        ("patched_checkout", wf.checkout_before_patch, "of patch 'discount'"),
    ],
    ids=["deprecated-too-early", "rolled-back"],
)
def test_a_step_too_far_fails_naming_the_patch(
    stem: str, code: Callable[..., Any], named: str
) -> None:
    path = HISTORIES / f"{stem}.json"
    with pytest.raises(NonDeterminismError, match=named):
        testing.replay(code, testing.load_history(path), workflow_id=path.stem)
