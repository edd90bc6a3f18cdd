"""PostgreSQL: starts that arrive together share one statement, commits and outcomes that
arrive together share one batch function, each refused or kept on its own, and wake-ups go
out after the commit; a start refused, a commit refused or a wake-up lost never loses or
half-writes a workflow."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

import tapeflow
from tapeflow import _waiting, activity, workflow
from tapeflow._worker import poller
from tapeflow.backends.base import Take, TaskKind, WorkflowTask
from tapeflow.backends.plan import CommitPlan, NewActivity, NewInboxEvent, plan_commit
from tapeflow.backends.postgres import backend as postgres_backend
from tapeflow.backends.wakeups import work_topic
from tapeflow.errors import LeaseLost, TapeflowError, UnseenEvents
from tapeflow.history import (
    ActivityCompleted,
    ActivityScheduled,
    EventReceived,
    HistoryEvent,
    WorkflowExecutionCompleted,
    WorkflowTaskStarted,
    encode_event,
)
from tests.conftest import POSTGRES_URL

LEASE = timedelta(seconds=30)


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
    monkeypatch.setattr(_waiting, "FALLBACK_POLL_SECONDS", 0.2)
    async with (
        tapeflow.connect(postgres_url) as worker_side,
        tapeflow.connect(postgres_url) as client_side,
    ):
        client = tapeflow.Client(client_side)
        async with tapeflow.Worker(worker_side, workflows=[plus_one], activities=[add_one]):
            handles = await asyncio.gather(*(client.start_workflow(plus_one, n) for n in range(10)))
            results = [await h.result(timeout=30) for h in handles]
    assert results == [n + 1 for n in range(10)]


def _plan(task: WorkflowTask, *decisions: HistoryEvent) -> CommitPlan:
    """The plan of a task that saw its whole inbox and decided ``decisions``."""
    events = [WorkflowTaskStarted(at=task.claimed_at), *(i.event for i in task.inbox), *decisions]
    return plan_commit(events, [i.id for i in task.inbox])


async def _claim_all(backend: tapeflow.Backend, count: int) -> dict[str, WorkflowTask]:
    tasks = await backend.claim_workflow_tasks(["plus_one"], "me", LEASE, count)
    assert len(tasks) == count
    return {task.workflow_id: task for task in tasks}


def _count_batches(
    monkeypatch: pytest.MonkeyPatch, backend: tapeflow.Backend, function: str
) -> list[int]:
    """The sizes of the batches the backend sends to ``function``, as they go."""
    assert isinstance(backend, postgres_backend.PostgresBackend)
    sizes: list[int] = []
    send = backend._in_run_order

    async def counted(writes: list[Any], query: str) -> list[dict[str, Any]]:
        if query == function:
            sizes.append(len(writes))
        return await send(writes, query)

    monkeypatch.setattr(backend, "_in_run_order", counted)
    return sizes


async def _settled(*calls: Awaitable[object]) -> list[object]:
    return await asyncio.gather(*calls, return_exceptions=True)


async def test_a_batch_keeps_its_good_commits_and_refuses_each_bad_one_as_typed(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One round trip carries good commits and refused ones: a lease lost, a history that
    moved on, an ending past an unseen event, a row the database rejects. Each refusal
    raises its own error and writes nothing; the good commits are kept."""
    async with tapeflow.connect(postgres_url) as backend:
        client = tapeflow.Client(backend)
        names = ["good-1", "lost", "moved", "unseen", "broken", "good-2"]
        for name in names:
            await client.start_workflow(plus_one, 1, id=name)
        tasks = await _claim_all(backend, len(names))
        await client.send_event("unseen", "late", None)  # came while its task ran
        scheduling = ActivityScheduled(seq=1, name="add_one", args=[1])
        bad_row = NewActivity(seq=1, name="add_one", args="{not json", retry=None)
        commits: dict[str, Callable[[], Awaitable[object]]] = {
            "good-1": lambda: backend.commit_workflow_task(
                tasks["good-1"], _plan(tasks["good-1"], scheduling)
            ),
            "lost": lambda: backend.commit_workflow_task(
                dataclasses.replace(tasks["lost"], lease_token=tasks["lost"].lease_token + 1),
                _plan(tasks["lost"], scheduling),
            ),
            "moved": lambda: backend.commit_workflow_task(
                dataclasses.replace(tasks["moved"], history_length=7),
                _plan(tasks["moved"], scheduling),
            ),
            "unseen": lambda: backend.commit_workflow_task(
                tasks["unseen"], _plan(tasks["unseen"], WorkflowExecutionCompleted(result=0))
            ),
            "broken": lambda: backend.commit_workflow_task(
                tasks["broken"],
                dataclasses.replace(_plan(tasks["broken"]), activities=(bad_row,)),
            ),
            "good-2": lambda: backend.commit_workflow_task(
                tasks["good-2"], _plan(tasks["good-2"], WorkflowExecutionCompleted(result=2))
            ),
        }
        sizes = _count_batches(monkeypatch, backend, "commit_workflow_tasks")
        outcomes = dict(zip(names, await _settled(*(commits[n]() for n in names)), strict=True))
        assert sizes == [len(names)]  # one batch held them all
        assert outcomes["good-1"] is None
        assert outcomes["good-2"] is None
        assert isinstance(outcomes["lost"], LeaseLost)
        assert isinstance(outcomes["moved"], LeaseLost)
        assert "moved on" in str(outcomes["moved"])
        assert isinstance(outcomes["unseen"], UnseenEvents)
        assert type(outcomes["broken"]) is TapeflowError
        assert "invalid input syntax for type json" in str(outcomes["broken"])

        for name in ("lost", "moved", "unseen", "broken"):  # nothing written
            record = await client.describe(name)
            assert (record.status, record.history_length) == ("pending", 0), name
        assert (await client.describe("good-1")).status == "running"
        assert (await client.describe("good-2")).result == 2
        [activity_task] = await backend.claim_activity_tasks(["add_one"], "me", LEASE, 10)
        assert activity_task.workflow_id == "good-1"
        # "unseen" still holds its late event and its start, and runs again with both
        for name in ("lost", "moved", "unseen", "broken"):
            await backend.abandon_workflow_task(tasks[name], None, timedelta(0))
        again = await _claim_all(backend, 4)
        assert [i.event.kind for i in again["unseen"].inbox] == [
            "workflow_started",
            "event_received",
        ]


async def test_the_batch_function_answers_with_refusal_codes(postgres_url: str) -> None:
    """The JSON outcomes themselves: "refused" is null or one of a fixed set of codes (a
    failure with the database's error), and a kept commit says what its wake-ups need."""
    schema = postgres_url.rpartition("schema=")[2]
    async with tapeflow.connect(postgres_url) as backend:
        client = tapeflow.Client(backend)
        names = ("kept", "lost", "moved", "unseen", "broken")
        for name in names:
            await client.start_workflow(plus_one, 1, id=name)
        tasks = await _claim_all(backend, len(names))
        await client.start_workflow(plus_one, 5, id="other")
        await client.send_event("unseen", "late", None)
        signal = encode_event(EventReceived(name="hi", payload=1))
        plans = {name: _plan(task) for name, task in tasks.items()}
        plans["kept"] = dataclasses.replace(
            plans["kept"],
            inbox=(NewInboxEvent(signal, workflow_id="other"),),
            activities=(
                NewActivity(seq=1, name="add_one", args="[1]", retry=None),
                NewActivity(seq=2, name="add_one", args="[2]", retry=None),
            ),
        )
        plans["unseen"] = _plan(tasks["unseen"], WorkflowExecutionCompleted(result=0))
        plans["broken"] = dataclasses.replace(
            plans["broken"], activities=(NewActivity(1, "add_one", "{not json", None),)
        )
        items: list[dict[str, Any]] = [
            {
                "run_id": task.run_id,
                "token": task.lease_token + (name == "lost"),
                "history_length": task.history_length + (name == "moved"),
                "plan": plans[name].as_json(),
                "take": {"owner": "me", "lease": "30 seconds", "activities": [2]},
            }
            for name, task in sorted(tasks.items(), key=lambda item: item[1].run_id)
        ]
        async with await psycopg.AsyncConnection.connect(
            POSTGRES_URL, options=f"-c search_path={schema}"
        ) as conn:
            cursor = await conn.execute(
                "SELECT commit_workflow_tasks(%s::jsonb)", [json.dumps(items)]
            )
            row = await cursor.fetchone()
        assert row is not None
        by_run = {task.run_id: name for name, task in tasks.items()}
        outcomes = {by_run[item["run_id"]]: o for item, o in zip(items, row[0], strict=True)}
        assert outcomes["lost"] == {"refused": "lease_lost"}
        assert outcomes["moved"] == {"refused": "history_moved"}
        assert outcomes["unseen"] == {"refused": "unseen_events"}
        assert outcomes["broken"]["refused"] == "failed"
        assert "invalid input syntax for type json" in outcomes["broken"]["error"]
        kept = outcomes["kept"]
        assert kept["refused"] is None
        assert [seq for _, seq in kept["leased"]] == [2]
        assert kept["woken"] == ["plus_one"]  # "other" got the event
        assert kept["wake"] is False  # its inbox is empty: nothing came while it ran
        assert {code.value for code in postgres_backend.Refusal} == {
            "lease_lost",
            "gone",  # an activity outcome's alone
            "history_moved",
            "unseen_events",
            "failed",
        }


async def test_a_batch_of_outcomes_keeps_the_good_ones_past_a_lost_lease(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with tapeflow.connect(postgres_url) as backend:
        assert isinstance(backend, postgres_backend.PostgresBackend)
        client = tapeflow.Client(backend)
        for index in range(3):
            await client.start_workflow(plus_one, index, id=f"wf-{index}")
        tasks = await _claim_all(backend, 3)
        taken = {
            name: await backend.commit_and_take(
                task,
                _plan(task, ActivityScheduled(seq=1, name="add_one", args=[1])),
                Take("me", LEASE, frozenset({1})),
            )
            for name, task in tasks.items()
        }
        lost = dataclasses.replace(taken["wf-1"][0], lease_token=5)
        outcome = ActivityCompleted(seq=1, result=2, attempt=1)
        sizes = _count_batches(monkeypatch, backend, "complete_activity_tasks")
        done = await _settled(
            backend.complete_activity_task(taken["wf-0"][0], outcome),
            backend.complete_activity_task(lost, outcome),
            backend.complete_and_continue(taken["wf-2"][0], outcome, Take("me", LEASE)),
        )
        assert sizes == [3]
        assert done[0] is None
        assert isinstance(done[1], LeaseLost)
        continued = done[2]
        assert isinstance(continued, tapeflow.backends.base.Continued)
        assert continued.resumed is not None  # its task was free: leased to "me"
        assert [i.event for i in continued.resumed.inbox] == [outcome]
        [claimed] = await backend.claim_workflow_tasks(["plus_one"], "me", LEASE, 10)
        assert claimed.workflow_id == "wf-0"  # wf-1's outcome was never written


async def test_an_outcome_waits_for_a_commit_in_flight_of_its_run(postgres_url: str) -> None:
    """A commit looks at the inbox to decide whether to wake the run's pollers; an
    outcome recorded meanwhile must wait for it, or its own wake-up would find the task
    still held, claim nothing, and be lost."""
    schema = postgres_url.rpartition("schema=")[2]
    async with tapeflow.connect(postgres_url) as backend:
        assert isinstance(backend, postgres_backend.PostgresBackend)
        await tapeflow.Client(backend).start_workflow(plus_one, 1, id="racing")
        [task] = await backend.claim_workflow_tasks(["plus_one"], "me", LEASE, 1)
        plan = _plan(task, ActivityScheduled(seq=1, name="add_one", args=[1]))
        [taken] = await backend.commit_and_take(task, plan, Take("me", LEASE, frozenset({1})))
        outcome = ActivityCompleted(seq=1, result=2, attempt=1)
        async with await psycopg.AsyncConnection.connect(POSTGRES_URL) as conn:
            async with conn.transaction():  # a commit of the run's task, in flight
                await conn.execute(
                    sql.SQL(
                        "SELECT FROM {}.workflow_tasks WHERE run_id = %s FOR NO KEY UPDATE"
                    ).format(sql.Identifier(schema)),
                    [task.run_id],
                )
                completing = asyncio.create_task(backend.complete_activity_task(taken, outcome))
                await asyncio.sleep(0.3)
                assert not completing.done()
            await asyncio.wait_for(completing, 5)
        [after] = await backend.claim_workflow_tasks(["plus_one"], "me", LEASE, 1)
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


async def test_a_batch_undone_by_a_deadlock_is_sent_again(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows of other runs (a parent, an event's target) lock in no order a sort can fix:
    the database undoes one of two deadlocked batches whole, and it goes out again."""
    async with tapeflow.connect(postgres_url) as backend:
        assert isinstance(backend, postgres_backend.PostgresBackend)
        run_batch = backend._run_batch
        failures = [psycopg.errors.DeadlockDetected("deadlock detected")] * 2

        async def deadlocking(*args: Any) -> Any:
            if failures:
                raise tapeflow.BackendUnavailable("undone") from failures.pop()
            return await run_batch(*args)

        monkeypatch.setattr(backend, "_run_batch", deadlocking)
        await tapeflow.Client(backend).start_workflow(plus_one, 41, id="undone")
        [task] = await backend.claim_workflow_tasks(["plus_one"], "w", LEASE, 1)
        events = [WorkflowTaskStarted(at=task.claimed_at), *(i.event for i in task.inbox)]
        done = WorkflowExecutionCompleted(result=42)
        consumed = [i.id for i in task.inbox]
        await backend.commit_workflow_task(task, plan_commit([*events, done], consumed, task))
        assert failures == []
        assert (await backend.get_workflow("undone")).result == 42


async def test_a_batch_that_keeps_deadlocking_fails_as_unavailable(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with tapeflow.connect(postgres_url) as backend:
        assert isinstance(backend, postgres_backend.PostgresBackend)
        sent: list[int] = []

        async def deadlocking(*args: Any) -> Any:
            sent.append(1)
            raise tapeflow.BackendUnavailable("undone") from psycopg.errors.DeadlockDetected()

        monkeypatch.setattr(backend, "_run_batch", deadlocking)
        await tapeflow.Client(backend).start_workflow(plus_one, 1, id="stuck")
        [task] = await backend.claim_workflow_tasks(["plus_one"], "w", LEASE, 1)
        with pytest.raises(tapeflow.BackendUnavailable):
            await backend.commit_workflow_task(task, CommitPlan())
        assert len(sent) == postgres_backend.DEADLOCK_RETRIES
