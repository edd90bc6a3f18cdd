"""What the new decisions write: the plan is the whole of a decision's effect on storage."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from tapeflow.backends.base import WorkflowStatus, WorkflowTask
from tapeflow.backends.plan import commit_topics, plan_commit
from tapeflow.backends.wakeups import update_topic
from tapeflow.history import (
    ActivityCancelled,
    ActivityScheduled,
    Failure,
    UpdateAccepted,
    UpdateCompleted,
    UpdateRejected,
    WorkflowExecutionCancelled,
    WorkflowExecutionTerminated,
    WorkflowExecutionTimedOut,
    WorkflowTaskStarted,
    decode_outcome,
)

AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_an_activity_scheduled_and_cancelled_at_once_is_never_written() -> None:
    plan = plan_commit(
        [
            WorkflowTaskStarted(at=AT),
            ActivityScheduled(seq=1, name="a", args=[]),
            ActivityScheduled(seq=2, name="b", args=[]),
            ActivityCancelled(seq=1),
            ActivityCancelled(seq=7),
        ]
    )
    assert [a.seq for a in plan.activities] == [2]
    assert plan.cancelled_activities == (1, 7)
    assert len(plan.history) == 5  # the tape keeps both decisions


def test_timeouts_travel_with_the_activity_and_the_deadline_counts_from_the_task() -> None:
    plan = plan_commit(
        [
            WorkflowTaskStarted(at=AT),
            ActivityScheduled(
                seq=1,
                name="a",
                args=[],
                start_to_close_timeout=30.0,
                schedule_to_close_timeout=600.0,
                heartbeat_timeout=5.0,
            ),
            ActivityScheduled(seq=2, name="b", args=[]),
        ]
    )
    first, second = plan.activities
    assert first.timeouts is not None
    assert second.timeouts is None
    assert json.loads(first.timeouts) == {
        "start_to_close": 30.0,
        "heartbeat": 5.0,
        "schedule_to_close": 600.0,
        "schedule_deadline": (AT + timedelta(minutes=10)).isoformat(),
    }


def test_an_ending_decided_by_code_checks_the_inbox_an_imposed_one_does_not() -> None:
    cancelled = plan_commit([WorkflowExecutionCancelled(reason="asked")]).ending
    terminated = plan_commit([WorkflowExecutionTerminated(reason="poison")]).ending
    timed_out = plan_commit([WorkflowExecutionTimedOut(timeout=2.5)]).ending
    assert cancelled is not None
    assert terminated is not None
    assert timed_out is not None
    assert (cancelled.status, cancelled.by_code, cancelled.requested_by) == (
        WorkflowStatus.CANCELLED,
        True,
        None,  # set when the cancel was asked
    )
    assert (terminated.status, terminated.by_code, terminated.requested_by) == (
        WorkflowStatus.TERMINATED,
        False,
        "client",
    )
    assert (timed_out.status, timed_out.by_code, timed_out.requested_by) == (
        WorkflowStatus.TIMED_OUT,
        False,
        "timeout",
    )
    for ending, kind in ((cancelled, "CancelledError"), (terminated, "Terminated")):
        assert ending.failure is not None
        assert json.loads(ending.failure)["type"] == kind
    assert timed_out.failure is not None
    assert json.loads(timed_out.failure)["type"] == "TimeoutError"
    assert timed_out.reason == "the workflow ran past its execution_timeout of 2.5s"


def test_update_answers_come_from_completions_and_rejections_and_wake_their_callers() -> None:
    completed = UpdateCompleted(update_id="u-1", name="add", result=1)
    rejected = UpdateRejected(update_id="u-2", name="add", failure=Failure("ValueError", "no"))
    plan = plan_commit(
        [WorkflowTaskStarted(at=AT), UpdateAccepted("u-1", "add", ["a"]), completed],
        consumed=[4, 5],
        rejected=[rejected],
    )
    assert [(a.update_id, decode_outcome(a.outcome)) for a in plan.updates] == [
        ("u-2", rejected),
        ("u-1", completed),
    ]
    assert len(plan.history) == 3  # the rejection is in no history
    run = run_of("wf-1")
    assert update_topic("wf-1") in commit_topics(run, plan)
    assert update_topic("wf-1") not in commit_topics(run, plan_commit([WorkflowTaskStarted(AT)]))


def run_of(workflow_id: str) -> WorkflowTask:
    return WorkflowTask(workflow_id, "run-1", "flow", 0, [], 0, AT)
