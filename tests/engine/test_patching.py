"""Patching: workflow code changed under running workflows, each history keeping its branch.

One workflow, ``checkout``, in the versions a team deploys one after another: v1 charges
tax with ``tax_v1``; v2 patches it to ``tax_v2`` behind ``workflow.patched("tax-v2")``;
v3 deprecates the patch once no history needs the old branch; v4 has no trace of it.
Histories are recorded live with one version and replayed, as a worker without the
instance in its cache would, with the next. Positions are 1-based: #1 workflow_task_started,
#2 workflow_started, #3 the first decision.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from tapeflow import NonDeterminismError, activity, workflow
from tapeflow._engine.replay import replay_new
from tapeflow.history import (
    ActivityCompleted,
    ActivityScheduled,
    EventReceived,
    HistoryEvent,
    MarkerRecorded,
    WorkflowExecutionCompleted,
    WorkflowExecutionFailed,
)
from tests.engine.conftest import RunFactory
from tests.engine.harness import WORKFLOW_ID, at, definition, terminal

TAX_V2 = MarkerRecorded(seq=1, name="patch", details={"id": "tax-v2"})


@activity.defn
def tax_v1(amount: int) -> int:
    return amount // 10


@activity.defn
def tax_v2(amount: int) -> int:
    return amount // 5


@activity.defn
def ship(amount: int) -> str:
    return f"shipped {amount}"


@workflow.defn(name="checkout")
async def checkout_v1(amount: int) -> str:
    tax = await workflow.execute_activity(tax_v1, amount)
    await workflow.wait_event("paid")
    return await workflow.execute_activity(ship, amount + tax)


@workflow.defn(name="checkout")
async def checkout_v2(amount: int) -> str:
    if workflow.patched("tax-v2"):
        tax = await workflow.execute_activity(tax_v2, amount)
    else:
        tax = await workflow.execute_activity(tax_v1, amount)
    await workflow.wait_event("paid")
    return await workflow.execute_activity(ship, amount + tax)


@workflow.defn(name="checkout")
async def checkout_v3(amount: int) -> str:
    workflow.deprecate_patch("tax-v2")
    tax = await workflow.execute_activity(tax_v2, amount)
    await workflow.wait_event("paid")
    return await workflow.execute_activity(ship, amount + tax)


@workflow.defn(name="checkout")
async def checkout_v4(amount: int) -> str:
    tax = await workflow.execute_activity(tax_v2, amount)
    await workflow.wait_event("paid")
    return await workflow.execute_activity(ship, amount + tax)


def waiting(run: RunFactory, version: Callable[..., Any]) -> list[HistoryEvent]:
    """A checkout of 100 recorded with ``version``, its tax charged, waiting to be paid."""
    live = run(version)
    [*_, charge] = live.start(100)
    assert isinstance(charge, ActivityScheduled)
    tax = {"tax_v1": tax_v1, "tax_v2": tax_v2}[charge.name](*charge.args)
    live.step(at(1), ActivityCompleted(seq=charge.seq, result=tax, attempt=1))
    return live.history


def replay_fails(version: Callable[..., Any], history: list[HistoryEvent]) -> str:
    with pytest.raises(NonDeterminismError) as caught:
        replay_new(definition(version), WORKFLOW_ID, history).close()
    return str(caught.value)


# -- the new branch for new runs, the old one for old histories ---------------------------------


def test_a_new_run_takes_the_new_branch_and_records_the_marker_first(run: RunFactory) -> None:
    assert run(checkout_v2).start(100) == [
        TAX_V2,
        ActivityScheduled(seq=2, name="tax_v2", args=[100]),
    ]


def test_a_history_from_before_the_patch_replays_down_the_old_branch_and_goes_on(
    run: RunFactory,
) -> None:
    picked_up = run(checkout_v2, history=waiting(run, checkout_v1))
    [ship_it] = picked_up.later(5, EventReceived(name="paid", payload=None))
    assert ship_it == ActivityScheduled(seq=2, name="ship", args=[110])  # 100 + tax_v1's 10
    [done] = picked_up.later(1, ActivityCompleted(seq=2, result="shipped 110", attempt=1))
    assert done == WorkflowExecutionCompleted(result="shipped 110")
    assert not [e for e in picked_up.history if isinstance(e, MarkerRecorded)]
    picked_up.replayed().close()  # the whole run, old part and new, replays on v2


def test_a_history_with_the_marker_replays_down_the_new_branch(run: RunFactory) -> None:
    history = waiting(run, checkout_v2)
    assert TAX_V2 in history
    picked_up = run(checkout_v2, history=history)
    [ship_it] = picked_up.later(5, EventReceived(name="paid", payload=None))
    assert ship_it == ActivityScheduled(seq=3, name="ship", args=[120])  # 100 + tax_v2's 20


@workflow.defn(name="checkout")
async def checkout_v2_decided_late(amount: int) -> str:
    """The patch's first call is after the wait: past the end of a waiting history."""
    tax = await workflow.execute_activity(tax_v1, amount)
    await workflow.wait_event("paid")
    if workflow.patched("express"):
        return await workflow.execute_activity(ship, amount + tax + 1)
    return await workflow.execute_activity(ship, amount + tax)


def test_past_the_end_of_history_a_patch_is_new_execution(run: RunFactory) -> None:
    picked_up = run(checkout_v2_decided_late, history=waiting(run, checkout_v1))
    decisions = picked_up.later(5, EventReceived(name="paid", payload=None))
    assert decisions == [
        MarkerRecorded(seq=2, name="patch", details={"id": "express"}),
        ActivityScheduled(seq=3, name="ship", args=[111]),
    ]
    picked_up.replayed().close()


@workflow.defn(name="paced")
async def paced_v1() -> str:
    await workflow.wait_event("start")
    await workflow.wait_event("finish")
    return "done"


@workflow.defn(name="paced")
async def paced_v2() -> str:
    await workflow.wait_event("start")
    branch = "new" if workflow.patched("label") else "old"
    await workflow.wait_event("finish")
    return f"done {branch}"


def test_a_replayed_task_that_decided_nothing_is_still_history_without_the_marker(
    run: RunFactory,
) -> None:
    old = run(paced_v1)
    old.start()
    assert old.later(1, EventReceived(name="start", payload=None)) == []  # the patch's point
    picked_up = run(paced_v2, history=old.history)
    [done] = picked_up.later(1, EventReceived(name="finish", payload=None))
    assert done == WorkflowExecutionCompleted(result="done old")


# -- stable within a run ------------------------------------------------------------------------


@workflow.defn(name="asks_twice")
async def asks_twice() -> list[bool]:
    first = workflow.patched("x")
    await workflow.wait_event("again")
    return [first, workflow.patched("x"), workflow.patched("y")]


@workflow.defn(name="asks_twice")
async def asked_nothing() -> list[bool]:
    await workflow.wait_event("again")
    return []


def test_a_patch_is_decided_once_per_run(run: RunFactory) -> None:
    new = run(asks_twice)
    assert new.start() == [MarkerRecorded(seq=1, name="patch", details={"id": "x"})]
    [y, done] = new.later(1, EventReceived(name="again", payload=None))
    assert y == MarkerRecorded(seq=2, name="patch", details={"id": "y"})  # none more for x
    assert done == WorkflowExecutionCompleted(result=[True, True, True])

    old = run(asked_nothing)
    old.start()
    picked_up = run(asks_twice, history=old.history)
    [y, done] = picked_up.later(1, EventReceived(name="again", payload=None))
    assert y == MarkerRecorded(seq=1, name="patch", details={"id": "y"})  # first seen: new
    assert done == WorkflowExecutionCompleted(result=[False, False, True])  # x: as replayed


# -- deprecate_patch ------------------------------------------------------------------------------


@pytest.mark.parametrize("recorded_with", [checkout_v2, checkout_v3], ids=["marker", "none"])
def test_a_deprecated_patch_replays_histories_with_and_without_its_marker(
    run: RunFactory, recorded_with: Callable[..., Any]
) -> None:
    picked_up = run(checkout_v3, history=waiting(run, recorded_with))
    [ship_it] = picked_up.later(5, EventReceived(name="paid", payload=None))
    assert isinstance(ship_it, ActivityScheduled)
    assert ship_it.args == [120]  # 100 + tax_v2's 20


def test_a_deprecated_patch_records_nothing(run: RunFactory) -> None:
    assert run(checkout_v3).start(100) == [ActivityScheduled(seq=1, name="tax_v2", args=[100])]


def test_once_deprecated_a_history_from_before_the_patch_fails_naming_it(
    run: RunFactory,
) -> None:
    message = replay_fails(checkout_v3, waiting(run, checkout_v1))
    assert "history event #3 is activity_scheduled seq 1 'tax_v1'" in message
    assert "deprecated patch 'tax-v2' at seq 1" in message


# -- mismatches name the patch --------------------------------------------------------------------


@pytest.mark.parametrize(
    "replayed_with", [checkout_v1, checkout_v4], ids=["rolled-back", "patch-removed"]
)
def test_a_marker_the_code_does_not_match_fails_the_replay_naming_the_patch(
    run: RunFactory, replayed_with: Callable[..., Any]
) -> None:
    message = replay_fails(replayed_with, waiting(run, checkout_v2))
    assert "history event #3 is marker_recorded seq 1 of patch 'tax-v2'" in message
    assert "workflow.patched('tax-v2') or workflow.deprecate_patch('tax-v2')" in message


@workflow.defn(name="checkout")
async def checkout_renamed(amount: int) -> str:
    if workflow.patched("tax-2024"):
        tax = await workflow.execute_activity(tax_v2, amount)
    else:
        tax = await workflow.execute_activity(tax_v1, amount)
    await workflow.wait_event("paid")
    return await workflow.execute_activity(ship, amount + tax)


def test_another_patch_where_history_has_one_names_both(run: RunFactory) -> None:
    message = replay_fails(checkout_renamed, waiting(run, checkout_v2))
    assert "marker_recorded seq 1 of patch 'tax-v2'" in message
    assert "workflow.patched('tax-2024') was False at seq 1" in message


@workflow.defn(name="checkout")
async def checkout_wrong_old_branch(amount: int) -> str:
    if workflow.patched("tax-v2"):
        tax = await workflow.execute_activity(tax_v2, amount)
    else:
        tax = await workflow.execute_activity(tax_v2, amount // 2)
    await workflow.wait_event("paid")
    return await workflow.execute_activity(ship, amount + tax)


def test_an_old_branch_unlike_the_old_code_fails_naming_the_patch(run: RunFactory) -> None:
    message = replay_fails(checkout_wrong_old_branch, waiting(run, checkout_v1))
    assert "history event #3 is activity_scheduled seq 1 'tax_v1'" in message
    assert "'tax_v2' with args [50]" in message
    assert "workflow.patched('tax-v2') was False at seq 1" in message


@workflow.defn(name="checkout")
async def checkout_patched_later(amount: int) -> str:
    """The patch's call moved after a command of its own: history has it earlier."""
    await workflow.execute_activity(ship, 0)
    if workflow.patched("tax-v2"):
        tax = await workflow.execute_activity(tax_v2, amount)
    else:
        tax = await workflow.execute_activity(tax_v1, amount)
    await workflow.wait_event("paid")
    return await workflow.execute_activity(ship, amount + tax)


def test_a_patch_marker_at_another_point_fails_naming_the_patch(run: RunFactory) -> None:
    message = replay_fails(checkout_patched_later, waiting(run, checkout_v2))
    assert "history event #3 is marker_recorded seq 1 of patch 'tax-v2'" in message
    assert "'ship' with args [0]" in message


def test_a_patch_replayed_after_the_mismatch_is_not_blamed(run: RunFactory) -> None:
    message = replay_fails(checkout_patched_later, waiting(run, checkout_v1))
    assert "history event #3 is activity_scheduled seq 1 'tax_v1'" in message
    assert "was False" not in message  # its call came after the point that differs


@workflow.defn(name="paced")
async def paced_v3() -> str:
    await workflow.wait_event("start")
    workflow.patched("label")
    await workflow.wait_event("finish")
    await workflow.sleep(1)
    return "done"


def test_a_patch_of_an_earlier_task_is_not_blamed(run: RunFactory) -> None:
    old = run(paced_v1)
    old.start()
    old.later(1, EventReceived(name="start", payload=None))
    old.later(1, EventReceived(name="finish", payload=None))
    message = replay_fails(paced_v3, old.history)
    assert "timer_started" in message
    assert "label" not in message  # decided in an earlier task, which history agreed with


# -- input ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["", "   ", 7, None, "a\nb", "x" * 256])
def test_a_patch_id_must_be_a_name(run: RunFactory, bad: object) -> None:
    @workflow.defn(name="misuses")
    async def misuses() -> list[str]:
        errors = []
        for call in (workflow.patched, workflow.deprecate_patch):
            try:
                call(bad)  # type: ignore[arg-type]
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
        return errors

    [done] = run(misuses).start()
    assert isinstance(done, WorkflowExecutionCompleted)
    assert len(done.result) == 2
    for error in done.result:
        assert re.match(r"InvalidArgument: patch id must be a string of 1 to 255 characters", error)


def test_an_invalid_patch_id_fails_the_workflow_not_the_replay(run: RunFactory) -> None:
    @workflow.defn(name="misuses")
    async def misuses() -> bool:
        return workflow.patched("")

    decisions = run(misuses).start()
    end = terminal(decisions)
    assert isinstance(end, WorkflowExecutionFailed)
    assert end.failure.type == "InvalidArgument"
    assert decisions == [end]  # nothing recorded for it
