"""start_at in the future: the workflow stays pending, with no history, until it is due;
then it runs, and its info().started_at is the time it was due."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import tapeflow
from tapeflow import workflow
from tapeflow.history import EventReceived, WorkflowExecutionStarted, WorkflowTaskStarted
from tests.conftest import WorkerFactory
from tests.scenarios.start_at import report_start

DELAY = timedelta(seconds=1)
MARGIN = timedelta(milliseconds=250)
"""Checks of "still pending" stop this long before the start time, for clock skew."""


async def test_a_workflow_starting_later_stays_pending_until_its_time(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    debugger = tapeflow.WorkflowDebugger(client.backend)
    async with worker(workflows=[report_start]):
        start_at = datetime.now(UTC) + DELAY
        handle = await client.start_workflow(report_start, id="later", start_at=start_at)

        checks = 0
        while datetime.now(UTC) < start_at - MARGIN:
            record = await handle.describe()
            assert record.status == tapeflow.WorkflowStatus.PENDING
            assert record.history_length == 0
            assert record.start_at == start_at
            assert await debugger.history("later") == []
            assert await debugger.query_vars(report_start, "later") == {}
            checks += 1
            await asyncio.sleep(0.05)
        assert checks > 0

        report = await handle.result(timeout=10)

    assert report.started_at == start_at
    assert report.first_ran_at >= start_at
    record = await handle.describe()
    assert record.status == tapeflow.WorkflowStatus.COMPLETED
    assert record.history_length > 0
    assert await debugger.query_vars(report_start, "later") == {"ran": True}


async def test_a_workflow_started_now_has_started_at_its_creation(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[report_start]):
        before = datetime.now(UTC)
        handle = await client.start_workflow(report_start, id="now")
        report = await handle.result(timeout=10)
    record = await handle.describe()
    assert report.started_at == record.start_at
    assert before - MARGIN <= report.started_at <= report.first_ran_at


async def test_a_start_time_in_the_past_runs_at_once_with_that_started_at(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    start_at = datetime(2020, 2, 29, 12, 30, 15, 123456, tzinfo=UTC)
    async with worker(workflows=[report_start]):
        handle = await client.start_workflow(report_start, id="past", start_at=start_at)
        report = await handle.result(timeout=10)
    assert report.started_at == start_at
    assert report.first_ran_at > start_at


@workflow.defn
async def greet_when_told() -> str:
    return f"{await workflow.wait_event('name')} at {workflow.now().isoformat()}"


async def test_an_event_sent_before_the_start_time_waits_for_it(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[greet_when_told]):
        start_at = datetime.now(UTC) + DELAY
        handle = await client.start_workflow(greet_when_told, id="early", start_at=start_at)
        await client.send_event("early", "name", "ada")
        while datetime.now(UTC) < start_at - MARGIN:
            assert (await handle.describe()).status == tapeflow.WorkflowStatus.PENDING
            await asyncio.sleep(0.05)
        greeting = await handle.result(timeout=10)
    name, _, ran_at = greeting.partition(" at ")
    assert name == "ada"
    assert datetime.fromisoformat(ran_at) >= start_at
    events = await tapeflow.WorkflowDebugger(client.backend).history("early")
    assert [type(e) for e in events[:3]] == [
        WorkflowTaskStarted,
        WorkflowExecutionStarted,
        EventReceived,
    ]
