"""Child workflows, events for other workflows and continue-as-new, in the pure engine and
in the plans their decisions make: what is decided when, and what is written for it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

import tapeflow
from tapeflow import workflow
from tapeflow.backends.base import ParentLink, WorkflowStatus
from tapeflow.backends.plan import plan_commit
from tapeflow.history import (
    ChildWorkflowCancelRequested,
    ChildWorkflowClosed,
    ChildWorkflowScheduled,
    ChildWorkflowStarted,
    ChildWorkflowStartFailed,
    EventDelivered,
    EventDeliveryFailed,
    EventReceived,
    EventSent,
    Failure,
    TimerFired,
    TimerStarted,
    WorkflowCancelRequested,
    WorkflowContinuedAsNew,
    WorkflowExecutionCancelled,
    WorkflowExecutionCompleted,
    WorkflowTaskStarted,
    decode_event,
)
from tests.engine.conftest import RunFactory
from tests.engine.harness import T0, WORKFLOW_ID


@workflow.defn
async def child(n: int) -> int:
    return n


@workflow.defn
async def two_children() -> list[Any]:
    first = await workflow.execute_child_workflow(child, 1)
    try:
        await workflow.execute_child_workflow(child, 2, id="taken")
    except tapeflow.ChildWorkflowError as err:
        return [first, err.type, err.workflow_id]
    return [first]


def test_a_child_is_scheduled_started_and_its_result_returned(run: RunFactory) -> None:
    live = run(two_children)
    [scheduled] = live.start()
    assert scheduled == ChildWorkflowScheduled(
        seq=1, workflow_id=f"{WORKFLOW_ID}/1", name="child", args=[1]
    )
    started = ChildWorkflowStarted(seq=1, workflow_id=scheduled.workflow_id, run_id="r")
    assert live.later(1, started) == []  # started, not yet closed
    closed = ChildWorkflowClosed(
        seq=1, workflow_id="wf-1/1", run_id="r", status="completed", result=1
    )
    [second] = live.later(1, closed)
    assert isinstance(second, ChildWorkflowScheduled)
    assert second.workflow_id == "taken"
    taken = Failure("WorkflowAlreadyExists", "exists already")
    [end] = live.later(1, ChildWorkflowStartFailed(seq=2, workflow_id="taken", failure=taken))
    assert end == WorkflowExecutionCompleted(result=[1, "WorkflowAlreadyExists", "taken"])
    live.replayed().close()


def test_replay_reads_a_derived_child_id_back_from_history(run: RunFactory) -> None:
    """Derived ids depend on the run id, which a replay outside any run does not have."""
    live = run(two_children)
    live.instance.run_id = "0123456789abcdef"
    [scheduled] = live.start()
    assert isinstance(scheduled, ChildWorkflowScheduled)
    assert scheduled.workflow_id == f"{WORKFLOW_ID}/01234567/1"
    live.replayed().close()  # run_id "": the recorded id comes back, no divergence


@workflow.defn
async def gives_up_on_its_child() -> str:
    try:
        async with asyncio.timeout(5):
            await workflow.execute_child_workflow(child, 1, id="slow")
    except TimeoutError:
        return "gave up"
    return "finished"


def test_a_child_abandoned_before_its_start_is_seen_is_cancelled_once_it_is(
    run: RunFactory,
) -> None:
    """Its id may have been taken by another workflow: only a start seen makes it ours."""
    live = run(gives_up_on_its_child)
    timer, scheduled = live.start()
    assert isinstance(timer, TimerStarted)
    assert isinstance(scheduled, ChildWorkflowScheduled)
    [end] = live.later(10, TimerFired(seq=timer.seq))
    assert end == WorkflowExecutionCompleted(result="gave up")
    assert not any(isinstance(d, ChildWorkflowCancelRequested) for d in live.history)


@workflow.defn
async def cancels_a_started_child() -> str:
    handle = await workflow.start_child_workflow(child, 1, id="kid")
    try:
        async with asyncio.timeout(5):
            await handle.result()
    except TimeoutError:
        return "gave up"
    return "finished"


def test_cancelling_the_wait_for_a_started_child_asks_it_to_cancel(run: RunFactory) -> None:
    live = run(cancels_a_started_child)
    live.start()
    [timer] = live.later(1, ChildWorkflowStarted(seq=1, workflow_id="kid", run_id="r"))
    assert isinstance(timer, TimerStarted)
    asked, end = live.later(10, TimerFired(seq=timer.seq))
    assert asked == ChildWorkflowCancelRequested(
        seq=1, workflow_id="kid", reason="its parent workflow stopped waiting for it"
    )
    assert end == WorkflowExecutionCompleted(result="gave up")
    live.replayed().close()


def test_a_child_cancelled_in_the_task_that_starts_it_is_never_written() -> None:
    scheduled = ChildWorkflowScheduled(seq=1, workflow_id="kid", name="child", args=[1])
    cancel = ChildWorkflowCancelRequested(seq=1, workflow_id="kid", reason="no")
    run_ref = _RunRef()
    plan = plan_commit([WorkflowTaskStarted(at=T0), scheduled, cancel], (), run_ref)
    assert plan.workflows == ()
    assert plan.inbox == ()


@workflow.defn
async def signals(target: str) -> str:
    await workflow.send_event(target, "ping", {"n": 1})
    try:
        await workflow.send_event("nobody", "ping", None)
    except tapeflow.WorkflowNotFound:
        return "nobody there"
    return "delivered"


def test_an_event_sent_waits_for_its_receipt(run: RunFactory) -> None:
    live = run(signals)
    [sent] = live.start("other")
    assert sent == EventSent(seq=1, workflow_id="other", name="ping", payload={"n": 1})
    [second] = live.later(1, EventDelivered(seq=1))
    assert isinstance(second, EventSent)
    missing = Failure("WorkflowNotFound", "no workflow with id 'nobody'")
    [end] = live.later(1, EventDeliveryFailed(seq=2, failure=missing))
    assert end == WorkflowExecutionCompleted(result="nobody there")
    live.replayed().close()


def test_an_event_sent_is_a_row_for_its_target_with_a_receipt() -> None:
    sent = EventSent(seq=4, workflow_id="other", name="ping", payload=[1])
    [row] = plan_commit([WorkflowTaskStarted(at=T0), sent], (), _RunRef()).inbox
    assert row.workflow_id == "other"
    assert decode_event(row.event) == EventReceived(name="ping", payload=[1])
    assert row.receipt is not None
    assert decode_event(row.receipt.delivered) == EventDelivered(seq=4)
    failed = decode_event(row.receipt.missing)
    assert isinstance(failed, EventDeliveryFailed)
    assert failed.failure.type == "WorkflowNotFound"


@workflow.defn
async def counts_on(total: int) -> int:
    seen = await workflow.wait_event("add", type=int)
    if seen == 0:
        return total
    workflow.continue_as_new(total + seen)


def test_continue_as_new_carries_the_events_no_wait_returned(run: RunFactory) -> None:
    live = run(counts_on)
    assert live.start(10) == []
    events = [EventReceived("add", 5), EventReceived("add", 7), EventReceived("other", "x")]
    [continued] = live.later(1, *events)
    assert isinstance(continued, WorkflowContinuedAsNew)
    assert continued.args == [15]
    assert continued.carried == [EventReceived("add", 7), EventReceived("other", "x")]
    assert continued.version == "1"
    live.replayed().close()


@workflow.defn
async def continues_from_a_callback() -> None:
    workflow.on_event("again", lambda _: workflow.continue_as_new())
    await workflow.wait_event("never")


def test_continue_as_new_from_a_callback_ends_the_run(run: RunFactory) -> None:
    live = run(continues_from_a_callback)
    live.start()
    [continued] = live.later(1, EventReceived("again", None), EventReceived("again", None))
    assert isinstance(continued, WorkflowContinuedAsNew)
    assert continued.carried == []  # a callback saw them both


@workflow.defn
async def cancelled_twice() -> str:
    try:
        await workflow.wait_event("never")
    except asyncio.CancelledError:
        await workflow.sleep(1)  # cleanup; a second request must not cancel it again
        raise
    return "no"


def test_a_second_cancel_request_is_ignored(run: RunFactory) -> None:
    live = run(cancelled_twice)
    live.start()
    [timer] = live.later(1, WorkflowCancelRequested(reason="first"))
    assert isinstance(timer, TimerStarted)
    assert live.later(0.5, WorkflowCancelRequested(reason="second")) == []
    [end] = live.later(1, TimerFired(seq=timer.seq))
    assert end == WorkflowExecutionCancelled(reason="first")


class _RunRef:
    workflow_id = "parent"
    run_id = "parent-run"
    workflow_name = "parent"
    workflow_queue = "default"
    workflow_priority = 5


def test_a_childs_ending_reports_to_its_parents_run_and_a_continuation_does_not() -> None:
    parent = ParentLink("parent", "parent-run", 3, None)
    run_ref = _RunRef()
    ended = plan_commit([WorkflowExecutionCompleted(result={"ok": 1})], (), run_ref, parent)
    [row] = ended.inbox
    assert row.run_id == "parent-run"
    closed = decode_event(row.event)
    assert closed == ChildWorkflowClosed(
        seq=3, workflow_id="parent", run_id="parent-run", status="completed", result={"ok": 1}
    )
    continued = WorkflowContinuedAsNew(args=[2], run_id="next", carried=[])
    plan = plan_commit([continued], (), run_ref, parent)
    assert plan.inbox == ()
    assert plan.ending is not None
    assert plan.ending.status is WorkflowStatus.CONTINUED_AS_NEW
    [following] = plan.workflows
    assert (following.id, following.run_id, following.parent, following.id_reuse) == (
        "parent",
        "next",
        parent,
        "allow",
    )


@pytest.mark.parametrize(
    ("policy", "kind"),
    [("terminate", "termination_requested"), ("cancel", "workflow_cancel_requested")],
)
def test_a_childs_close_policy_is_an_event_kept_with_it(policy: str, kind: str) -> None:
    scheduled = ChildWorkflowScheduled(
        seq=2,
        workflow_id="kid",
        name="child",
        args=[],
        parent_close_policy=policy,  # type: ignore[arg-type]
    )
    [new] = plan_commit([WorkflowTaskStarted(at=T0), scheduled], (), _RunRef()).workflows
    assert new.parent is not None
    assert new.parent.on_close is not None
    assert json.loads(new.parent.on_close)["kind"] == kind
    abandoned = ChildWorkflowScheduled(
        seq=2, workflow_id="kid", name="child", args=[], parent_close_policy="abandon"
    )
    [new] = plan_commit([WorkflowTaskStarted(at=T0), abandoned], (), _RunRef()).workflows
    assert new.parent is not None
    assert new.parent.on_close is None


@workflow.defn
async def bad_policy() -> str:
    try:
        await workflow.start_child_workflow(child, 1, parent_close_policy="orphan")  # type: ignore[call-overload]
    except tapeflow.InvalidArgument as err:
        return str(err)
    return "started"


def test_a_bad_parent_close_policy_is_refused_before_anything_is_decided(
    run: RunFactory,
) -> None:
    [end] = run(bad_policy).start()
    assert isinstance(end, WorkflowExecutionCompleted)
    assert "parent_close_policy must be one of 'terminate', 'cancel', 'abandon'" in end.result
