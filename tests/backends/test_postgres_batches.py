"""PostgreSQL: starts that arrive together share one statement, and wake-ups go out after
the commit; a start refused or a wake-up lost never loses or half-writes a workflow."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import psycopg
import pytest
from psycopg import sql

import tapeflow
from tapeflow import activity, workflow
from tapeflow._worker import poller
from tapeflow.backends.base import EagerActivities, TaskKind
from tapeflow.backends.postgres import backend as postgres_backend
from tapeflow.backends.wakeups import work_topic
from tapeflow.history import ActivityCompleted, ActivityScheduled, WorkflowTaskStarted
from tests.conftest import POSTGRES_URL


@activity.defn
async def add_one(number: int) -> int:
    return number + 1


@workflow.defn
async def plus_one(number: int) -> int:
    return await workflow.execute_activity(add_one, number)


async def test_concurrent_starts_share_statements_and_refuse_taken_ids(postgres_url: str) -> None:
    async with tapeflow.connect(postgres_url) as backend:
        client = tapeflow.Client(backend)
        await client.start_workflow(plus_one, 0, id="taken")
        starts = [client.start_workflow(plus_one, n, id=f"wf-{n}") for n in range(40)]
        starts += [client.start_workflow(plus_one, 1, id="wf-7")]  # the same id, same batch
        starts += [client.start_workflow(plus_one, 2, id="taken")]
        outcomes = await asyncio.gather(*starts, return_exceptions=True)
        refused = [o for o in outcomes if isinstance(o, tapeflow.WorkflowAlreadyExists)]
        assert len(refused) == 2, outcomes
        assert all(isinstance(o, tapeflow.WorkflowHandle) for o in outcomes[:40])
        async with tapeflow.Worker(backend, workflows=[plus_one], activities=[add_one]):
            results = [await h.result(timeout=30) for h in outcomes[:40]]  # type: ignore[union-attr]
        assert results == [n + 1 for n in range(40)]  # the first start of wf-7 won
        record = await client.describe("taken")
        assert record.args == [0]


async def test_lost_wake_ups_lose_no_work(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every NOTIFY fails: the commits still hold, and pollers and result waiters find the
    work at their fallback poll."""
    monkeypatch.setitem(postgres_backend._Q, "notify", "SELECT 1/0")
    monkeypatch.setattr(poller, "FALLBACK_POLL_SECONDS", 0.2)
    monkeypatch.setattr(tapeflow.client, "FALLBACK_POLL_SECONDS", 0.2)
    async with (
        tapeflow.connect(postgres_url) as worker_side,
        tapeflow.connect(postgres_url) as client_side,
    ):
        client = tapeflow.Client(client_side)
        async with tapeflow.Worker(worker_side, workflows=[plus_one], activities=[add_one]):
            handles = await asyncio.gather(*(client.start_workflow(plus_one, n) for n in range(10)))
            results = [await h.result(timeout=30) for h in handles]
    assert results == [n + 1 for n in range(10)]


async def test_an_outcome_waits_for_a_commit_in_flight_of_its_workflow(postgres_url: str) -> None:
    """A commit looks at the inbox to decide whether to wake the workflow's pollers; an
    outcome recorded meanwhile must wait for it, or its own wake-up would find the task
    still held, claim nothing, and be lost."""
    lease = timedelta(seconds=30)
    schema = postgres_url.rpartition("schema=")[2]
    async with tapeflow.connect(postgres_url) as backend:
        await tapeflow.Client(backend).start_workflow(plus_one, 1, id="racing")
        [task] = await backend.claim_workflow_tasks(["plus_one"], "me", lease, 1)
        events = [
            WorkflowTaskStarted(at=task.claimed_at),
            *(item.event for item in task.inbox),
            ActivityScheduled(seq=1, name="add_one", args=[1]),
        ]
        [taken] = await backend.commit_workflow_task(
            task, [i.id for i in task.inbox], events, EagerActivities(frozenset({1}), "me", lease)
        )
        outcome = ActivityCompleted(seq=1, result=2, attempt=1)
        async with await psycopg.AsyncConnection.connect(POSTGRES_URL) as conn:
            async with conn.transaction():  # a commit of the workflow's task, in flight
                await conn.execute(
                    sql.SQL(
                        "SELECT FROM {}.workflow_tasks WHERE workflow_id = 'racing' "
                        "FOR NO KEY UPDATE"
                    ).format(sql.Identifier(schema))
                )
                completing = asyncio.create_task(backend.complete_activity_task(taken, outcome))
                await asyncio.sleep(0.3)
                assert not completing.done()
            assert await asyncio.wait_for(completing, 5) is None
        [after] = await backend.claim_workflow_tasks(["plus_one"], "me", lease, 1)
        assert [i.event for i in after.inbox] == [outcome]


async def test_wake_ups_reach_other_processes_while_the_sender_is_not_listening(
    postgres_url: str,
) -> None:
    async with tapeflow.connect(postgres_url) as sender, tapeflow.connect(postgres_url) as other:
        assert isinstance(sender, postgres_backend.PostgresBackend)
        for _ in range(100):  # both listening
            if sender.wakes_other_processes and other.wakes_other_processes:
                break
            await asyncio.sleep(0.05)
        sender._listening = False  # its own listening connection is down, say
        with other.watch([work_topic(TaskKind.WORKFLOW, "plus_one")]) as watch:
            await tapeflow.Client(sender).start_workflow(plus_one, 1)
            assert await watch.wait(5), "the other process was not woken"
