"""Finding workflows: lists filtered by status, name, id prefix, start time and the
variables each commit stores, paged by a cursor that neither repeats nor skips while
workflows start; counts by the same filters; a run's typed history."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import tapeflow
from tapeflow import workflow
from tapeflow.history import (
    EventReceived,
    WorkflowExecutionCompleted,
    WorkflowExecutionStarted,
    WorkflowTaskStarted,
)
from tests.conformance._waiting import has_run
from tests.conftest import WorkerFactory

Status = tapeflow.WorkflowStatus


@workflow.defn
async def invoice(amount: int, pay: bool) -> int:
    workflow.set_var("amount", amount)
    workflow.set_var("paid", 0)
    if not pay:
        raise ValueError(f"invoice of {amount} refused")
    workflow.set_var("paid", amount)
    return amount


@workflow.defn
async def stepwise() -> str:
    workflow.set_var("step", "waiting")
    workflow.set_var('an "odd".key', 1)
    await workflow.wait_event("go")
    workflow.set_var("step", "done")
    workflow.set_var("detail", {"steps": [1, 2]})
    return "done"


@workflow.defn
async def counting() -> int:
    workflow.set_var("set", True)
    for _ in range(3):
        await workflow.wait_event("tick")
    return 3


async def _all(client: tapeflow.Client, limit: int = 1000, **filters: Any) -> list[str]:
    """The ids every page of the list gives, in order."""
    ids: list[str] = []
    cursor = None
    while True:
        page = await client.list_workflows(limit=limit, cursor=cursor, **filters)
        ids += [summary.id for summary in page.workflows]
        if (cursor := page.next_cursor) is None:
            return ids


async def _invoices(client: tapeflow.Client, worker: WorkerFactory) -> None:
    """invoice-1..4 paid, invoice-5 refused (failed), refund-1 pending (no worker runs
    it), invoice-6 terminated, started in that order."""
    async with worker(workflows=[invoice]):
        for n in range(1, 6):
            handle = await client.start_workflow(invoice, n * 10, n != 5, id=f"invoice-{n}")
            with contextlib.suppress(tapeflow.WorkflowFailed):
                await handle.result(timeout=10)
    await client.start_workflow("refund", id="refund-1")
    stopped = await client.start_workflow("invoice", 60, True, id="invoice-6")
    await stopped.terminate("wrong amount")


async def test_each_filter_and_their_combinations_find_the_latest_runs(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    await _invoices(client, worker)
    newest_first = ["invoice-6", "refund-1", *(f"invoice-{n}" for n in range(5, 0, -1))]
    assert await _all(client) == newest_first
    assert await _all(client, status="completed") == [f"invoice-{n}" for n in (4, 3, 2, 1)]
    assert await _all(client, status=[Status.FAILED, "terminated"]) == ["invoice-6", "invoice-5"]
    assert await _all(client, status=Status.PENDING) == ["refund-1"]
    assert await _all(client, name="refund") == ["refund-1"]
    assert await _all(client, id_prefix="invoice-") == [i for i in newest_first if i != "refund-1"]
    assert await _all(client, id_prefix="ref") == ["refund-1"]
    assert await _all(client, id_prefix="invoice-1") == ["invoice-1"]
    assert await _all(client, id_prefix="z") == []
    assert await _all(client, vars={"paid": 0}) == ["invoice-5"]
    assert await _all(client, vars={"paid": 20.0, "amount": 20}) == ["invoice-2"]
    assert await _all(client, vars={"paid": "20"}) == []  # a JSON value: no string is 20
    assert await _all(client, vars={"missing": None}) == []
    assert await _all(client, status="completed", name="invoice", vars={"paid": 30}) == [
        "invoice-3"
    ]

    listed = (await client.list_workflows()).workflows
    by_id = {summary.id: summary for summary in listed}
    third = by_id["invoice-3"].created_at
    assert await _all(client, started_after=third, id_prefix="invoice-") == [
        "invoice-6",
        "invoice-5",
        "invoice-4",
        "invoice-3",
    ]
    assert await _all(client, started_before=third) == ["invoice-2", "invoice-1"]
    assert await _all(
        client, started_after=third, started_before=by_id["invoice-5"].created_at
    ) == [
        "invoice-4",
        "invoice-3",
    ]

    paid = by_id["invoice-4"]
    assert (paid.name, paid.status, paid.vars) == (
        "invoice",
        Status.COMPLETED,
        {"amount": 40, "paid": 40},
    )
    assert paid.completed_at is not None
    assert paid.completed_at >= paid.created_at
    assert paid.task_error is None
    assert (by_id["refund-1"].vars, by_id["refund-1"].completed_at) == ({}, None)
    assert by_id["invoice-6"].status is Status.TERMINATED


async def test_counts_match_the_lists_and_group_by_status(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    await _invoices(client, worker)
    assert await client.count_workflows() == 7
    assert await client.count_workflows(group_by_status=True) == {
        Status.COMPLETED: 4,
        Status.FAILED: 1,
        Status.PENDING: 1,
        Status.TERMINATED: 1,
    }
    for filters in (
        {"status": ["completed", "failed"]},
        {"name": "invoice", "vars": {"paid": 0}},
        {"id_prefix": "invoice-"},
        {"status": "running"},
    ):
        assert await client.count_workflows(**filters) == len(await _all(client, **filters))
    assert await client.count_workflows(status="running", group_by_status=True) == {}


async def test_paging_is_stable_and_complete_while_workflows_start(
    client: tapeflow.Client,
) -> None:
    existing = [f"job-{n:02}" for n in range(23)]
    for workflow_id in existing:
        await client.start_workflow("job", id=workflow_id)
    seen: list[str] = []
    page = await client.list_workflows(limit=5)
    started = 0
    while True:
        seen += [summary.id for summary in page.workflows]
        await client.start_workflow("job", id=f"late-{started}")  # newer: before the cursor
        started += 1
        if page.next_cursor is None:
            break
        page = await client.list_workflows(limit=5, cursor=page.next_cursor)
    assert seen == existing[::-1]
    assert started == 5  # 5 + 5 + 5 + 5 + 3, the last page with no cursor
    exactly = await client.list_workflows(limit=3, id_prefix="late-", cursor=None)
    assert len(exactly.workflows) == 3
    assert exactly.next_cursor is not None
    rest = await client.list_workflows(limit=2, id_prefix="late-", cursor=exactly.next_cursor)
    assert [s.id for s in rest.workflows] == ["late-1", "late-0"]
    assert rest.next_cursor is None


async def test_a_list_shows_the_latest_run_of_an_id_unless_all_runs_are_asked_for(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[invoice]):
        first = await client.start_workflow(invoice, 1, False, id="again")
        with pytest.raises(tapeflow.WorkflowFailed):
            await first.result(timeout=10)
        second = await client.start_workflow(invoice, 2, True, id="again", id_reuse="allow")
        assert await second.result(timeout=10) == 2
    (latest,) = (await client.list_workflows()).workflows
    assert (latest.run_id, latest.status, latest.vars["paid"]) == (
        second.run_id,
        Status.COMPLETED,
        2,
    )
    runs = (await client.list_workflows(all_runs=True)).workflows
    assert [(s.run_id, s.status) for s in runs] == [
        (second.run_id, Status.COMPLETED),
        (first.run_id, Status.FAILED),
    ]
    assert await client.count_workflows(status="failed") == 0
    assert await client.count_workflows(status="failed", all_runs=True) == 1

    history = await second.history()
    assert isinstance(history[0], WorkflowTaskStarted)
    assert isinstance(history[1], WorkflowExecutionStarted)
    assert history[1].args == [2, True]
    assert isinstance(history[-1], WorkflowExecutionCompleted)
    assert history[-1].result == 2
    assert first.run_id is not None
    earlier = await second.history(run_id=first.run_id)
    assert isinstance(earlier[1], WorkflowExecutionStarted)
    assert earlier[1].args == [1, False]
    with pytest.raises(tapeflow.WorkflowNotFound):
        await client.get_handle("nobody").history()


async def test_vars_are_stored_with_each_task_and_shown_by_describe(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[stepwise]):
        handle = await client.start_workflow(stepwise, id="stepwise")
        await has_run(client, "stepwise")
        assert (await handle.describe()).vars == {"step": "waiting", 'an "odd".key': 1}
        assert await _all(client, vars={"step": "waiting", 'an "odd".key': True}) == []
        assert await _all(client, vars={"step": "waiting", 'an "odd".key': 1}) == ["stepwise"]
        await handle.send_event("go")
        assert await handle.result(timeout=10) == "done"
    record = await handle.describe()
    assert record.vars == {"step": "done", 'an "odd".key': 1, "detail": {"steps": [1, 2]}}
    assert await _all(client, vars={"step": "waiting"}) == []
    assert await _all(client, vars={"step": "done"}, status="completed") == ["stepwise"]
    events = await handle.history()
    assert [e for e in events if isinstance(e, EventReceived)] == [
        EventReceived(name="go", payload=None)
    ]


async def test_a_task_that_sets_no_vars_keeps_the_stored_ones(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[counting]):
        handle = await client.start_workflow(counting, id="counting")
        await has_run(client, "counting")
        for _ in range(3):
            await handle.send_event("tick")
        assert await handle.result(timeout=10) == 3
    assert (await handle.describe()).vars == {"set": True}


async def test_bad_list_arguments_are_refused_clearly(client: tapeflow.Client) -> None:
    await client.start_workflow("job", id="job")
    naive = datetime(2026, 1, 1)
    for bad, says in (
        ({"limit": -1}, "limit"),
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": True}, "limit"),
        ({"cursor": "not a cursor"}, "cursor"),
        ({"cursor": "W10"}, "cursor"),  # valid base64 of '[]'
        ({"cursor": 7}, "cursor"),
        ({"status": "finished"}, "status"),
        ({"status": []}, "status"),
        ({"status": ["completed", "nope"]}, "status"),
        ({"vars": {"a": [1]}}, "vars"),
        ({"vars": {"a": float("nan")}}, "vars"),
        ({"vars": [("a", 1)]}, "vars"),
        ({"started_after": naive}, "started_after"),
        ({"started_before": "yesterday"}, "started_before"),
        ({"name": ""}, "name"),
        ({"all_runs": "yes"}, "all_runs"),
    ):
        with pytest.raises(tapeflow.InvalidArgument, match=says):
            await client.list_workflows(**bad)
    with pytest.raises(tapeflow.InvalidArgument, match="status"):
        await client.count_workflows(status="unknown")
    with pytest.raises(tapeflow.InvalidArgument, match="group_by_status"):
        await client.count_workflows(group_by_status=1)  # type: ignore[call-overload]
    with pytest.raises(tapeflow.InvalidArgument, match="run_id"):
        await client.get_handle("job").history(run_id="")
    future = datetime.now(UTC) + timedelta(days=1)
    assert (await client.list_workflows(started_after=future)).workflows == []


async def test_an_id_prefix_is_matched_exactly_whatever_its_characters(
    client: tapeflow.Client,
) -> None:
    ids = ["a%b", "a_b", "aXb", "ab", "a", "b", "é-1", "é", "\U0010ffff-x", "\U0010ffff"]
    for workflow_id in ids:
        await client.start_workflow("job", id=workflow_id)
    for prefix in ("a", "a%", "a_", "é", "\U0010ffff", "\U0010ffff-"):
        expected = sorted(i for i in ids if i.startswith(prefix))
        assert sorted(await _all(client, id_prefix=prefix)) == expected, prefix
