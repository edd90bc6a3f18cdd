"""A plan's JSON document carries every part of the plan: a part left out would be a write
that a backend storing the document never makes."""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import UTC, datetime

from tapeflow.backends.base import NewWorkflow, ParentLink, WorkflowStatus
from tapeflow.backends.plan import (
    CommitPlan,
    Ending,
    NewActivity,
    NewInboxEvent,
    Receipt,
    UpdateAnswer,
)

AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

FULL = CommitPlan(
    history=('{"kind": "workflow_task_started", "at": "2026-12-01T12:00:00Z"}',),
    consumed=(7,),
    inbox=(
        NewInboxEvent(
            '{"kind": "timer_fired", "seq": 2}', AT, 2, "other", "run-9", Receipt("d", "m", "c")
        ),
    ),
    activities=(
        NewActivity(
            1,
            "charge",
            "[1]",
            '{"maximum_attempts": 3}',
            None,
            "payments",
            2,
            '{"traceparent": "t"}',
        ),
    ),
    cancelled_activities=(4,),
    cancelled_timers=(5,),
    workflows=(
        NewWorkflow(
            "child",
            "flow",
            "v1",
            [1],
            AT,
            run_id="run-2",
            id_reuse="allow",
            events=("e",),
            parent=ParentLink("parent", "run-1", 3, "closing"),
            receipt=("made", "taken"),
            queue="children",
            priority=1,
            trace_context={"traceparent": "t"},
        ),
    ),
    ending=Ending(WorkflowStatus.TERMINATED, None, "{}", False, "asked", "client"),
    updates=(UpdateAnswer("u-1", '{"kind": "update_rejected"}'),),
)


def test_every_part_of_a_plan_is_in_its_document() -> None:
    document = json.loads(json.dumps(FULL.as_json()))
    assert set(document) == {f.name for f in fields(CommitPlan)}
    for part, kind in (
        ("inbox", NewInboxEvent),
        ("activities", NewActivity),
        ("workflows", NewWorkflow),
        ("updates", UpdateAnswer),
    ):
        assert set(document[part][0]) == {f.name for f in fields(kind)}, part
    assert set(document["ending"]) == {f.name for f in fields(Ending)}


def test_the_document_holds_the_plans_values() -> None:
    document = FULL.as_json()
    assert document["inbox"] == [
        {
            "event": '{"kind": "timer_fired", "seq": 2}',
            "visible_at": AT.isoformat(),
            "timer_seq": 2,
            "workflow_id": "other",
            "run_id": "run-9",
            "receipt": {"delivered": "d", "missing": "m", "closed": "c"},
        }
    ]
    assert document["workflows"] == [
        {
            "id": "child",
            "name": "flow",
            "version": "v1",
            "args": "[1]",
            "start_at": AT.isoformat(),
            "run_id": "run-2",
            "execution_timeout": None,
            "id_reuse": "allow",
            "events": ["e"],
            "parent": {"workflow_id": "parent", "run_id": "run-1", "seq": 3, "on_close": "closing"},
            "receipt": ["made", "taken"],
            "queue": "children",
            "priority": 1,
            "trace_context": {"traceparent": "t"},
        }
    ]
    assert document["activities"] == [
        {
            "seq": 1,
            "name": "charge",
            "args": "[1]",
            "retry": '{"maximum_attempts": 3}',
            "timeouts": None,
            "queue": "payments",
            "priority": 2,
            "trace_context": '{"traceparent": "t"}',
        }
    ]
    assert document["ending"] == {
        "status": "terminated",
        "result": None,
        "failure": "{}",
        "by_code": False,
        "reason": "asked",
        "requested_by": "client",
    }
    assert document["updates"] == [{"update_id": "u-1", "outcome": '{"kind": "update_rejected"}'}]
    assert CommitPlan().as_json()["ending"] is None
