"""Hostile input: each case gets a typed, clear error, changes nothing else, loses nothing
and leaves nothing stuck. Next to every hostile workflow, bystanders run and must finish.

Complements ``test_bad_input.py`` (which covers the client's basic refusals) with what a
worker meets: names nobody registered, undecodable or planted rows, changed code, blocking
code, oversized payloads and messages, races on one id, odd timers and odd names.
"""

from __future__ import annotations

import asyncio
import json
import math
import pickle
import sqlite3
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pydantic import TypeAdapter

import tapeflow
from tapeflow import activity, workflow
from tapeflow.backends.postgres import PostgresBackend
from tapeflow.backends.sqlite import SQLiteBackend
from tapeflow.history import (
    ActivityFailed,
    ActivityScheduled,
    EventReceived,
    HistoryEvent,
    TimerStarted,
    WorkflowExecutionStarted,
)
from tests.conformance._bystanders import bystanders_finish, start_bystanders
from tests.conformance._waiting import eventually, task_error_of
from tests.conftest import WorkerFactory
from tests.scenarios.hostile import (
    BAD_ACTIVITY_NAMES,
    BLOCK_SECONDS,
    CONTROL_NAMES,
    MIB,
    OVER_LIMIT,
    RELEASE,
    STEPS,
    UNDER_LIMIT,
    Booby,
    Caught,
    Draws,
    big_argument_then_big_result,
    calls_activity_named,
    calls_missing_activity,
    catches_big_result,
    catches_huge_activity_error,
    catches_opaque_result,
    double,
    draws_twice,
    echo_text,
    fails_with_huge_message,
    first_event_length,
    halves,
    late_activity,
    late_registered,
    named_activity,
    named_workflow,
    odd_timers,
    passes_opaque_argument,
    passes_wrong_argument_by_name,
    pipeline,
    pipeline_inserted,
    pipeline_random,
    pipeline_removed,
    pipeline_reordered,
    raises_huge_message,
    record_draws,
    returns_opaque,
    returns_over_limit,
    returns_unsupported_type,
    returns_wrong_type,
    sleeps_nan,
    sleeps_negative,
    spins_in_the_loop,
    steady,
    takes_int,
    waits_for_go,
    waits_for_typed_events,
    waits_in_the_loop,
    wants_a_point,
)

Status = tapeflow.WorkflowStatus
BOUND = 64 * 1024
"""A recorded error message or traceback must stay under this many characters."""

OF_WORKFLOW = "run_id IN (SELECT run_id FROM workflows WHERE id = ?)"
"""Rows of every run of the workflow named by the parameter."""


# -- helpers -----------------------------------------------------------------------------------


async def raw(backend: tapeflow.Backend, query: str, *params: object) -> list[tuple[Any, ...]]:
    """Run SQL on the backend's own tables behind its back (``?`` placeholders)."""
    if isinstance(backend, SQLiteBackend):
        path = backend.path

        def run() -> list[tuple[Any, ...]]:
            conn = sqlite3.connect(path, timeout=30, isolation_level=None)
            try:
                return conn.execute(query, params).fetchall()
            finally:
                conn.close()

        return await asyncio.to_thread(run)
    assert isinstance(backend, PostgresBackend), f"no raw access to {backend!r}"
    async with await psycopg.AsyncConnection.connect(
        backend.conninfo, autocommit=True, options=f"-c search_path={backend.schema}"
    ) as conn:
        cursor = await conn.execute(query.replace("?", "%s"), params)
        return await cursor.fetchall() if cursor.description else []


def malformed(backend: tapeflow.Backend) -> str:
    """What a damaged row holds: cut-off text where the column takes any text (SQLite); JSON
    of no known shape where the column only takes JSON (PostgreSQL's ``json``)."""
    if isinstance(backend, SQLiteBackend):
        return '{"kind": "event_received", "name": "go", "pay'
    return '{"kind": "no_such_kind", "payload": [1, 2, 3]}'


def planted(backend: tapeflow.Backend, data: bytes) -> bytes | str:
    """Bytes as a row can hold them: raw (SQLite), or as one JSON string (PostgreSQL)."""
    if isinstance(backend, SQLiteBackend):
        return data
    return json.dumps(data.decode("latin-1"))


async def inbox_rows(backend: tapeflow.Backend, workflow_id: str) -> int:
    ((count,),) = await raw(backend, f"SELECT count(*) FROM inbox WHERE {OF_WORKFLOW}", workflow_id)
    return int(count)


async def waits_after(client: tapeflow.Client, workflow_id: str, length: int) -> None:
    async def check() -> bool:
        return (await client.describe(workflow_id)).history_length >= length

    await eventually(check, f"{workflow_id!r} has {length} history events")


def kinds(history: list[HistoryEvent]) -> list[str]:
    return [event.kind for event in history]


# -- names nobody registered -------------------------------------------------------------------


async def test_unknown_workflow_stays_pending_visibly_until_registered(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    unknown = await client.start_workflow("no_such_workflow", 7, id="unknown")
    async with worker(workflows=[steady], activities=[double]):
        bystanders = await start_bystanders(client, "unknown")
        await bystanders_finish(bystanders)
        record = await unknown.describe()
    assert (record.status, record.history_length, record.task_error) == (Status.PENDING, 0, None)
    assert record.name == "no_such_workflow"
    assert await client.backend.load_history(unknown.id) == []
    assert await inbox_rows(client.backend, unknown.id) == 1  # its start, kept

    async with worker(workflows=[late_registered]):
        assert await unknown.result(timeout=10) == "finally ran with 7"


async def test_activity_registered_nowhere_waits_visibly_until_registered(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[calls_missing_activity, steady], activities=[double]):
        waiting = await client.start_workflow(calls_missing_activity, 5, id="missing-activity")
        bystanders = await start_bystanders(client, "missing")
        await bystanders_finish(bystanders)
        await waits_after(client, waiting.id, 3)
        record = await waiting.describe()
        history = await client.backend.load_history(waiting.id)
    assert (record.status, record.task_error) == (Status.RUNNING, None)
    assert kinds(history) == ["workflow_task_started", "workflow_started", "activity_scheduled"]
    scheduled = history[-1]
    assert isinstance(scheduled, ActivityScheduled)
    assert (scheduled.name, scheduled.args) == ("missing_activity", [5])

    async with worker(workflows=[calls_missing_activity], activities=[late_activity]):
        assert await waiting.result(timeout=10) == "missing_activity ran with 5"


# -- values that do not match their annotations or cannot be stored ----------------------------


async def test_values_that_do_not_match_their_annotations_fail_with_payload_error(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    workflows = [
        returns_wrong_type,
        catches_opaque_result,
        passes_opaque_argument,
        passes_wrong_argument_by_name,
        wants_a_point,
        waits_for_typed_events,
        steady,
    ]
    activities = [returns_opaque, takes_int, double]
    async with worker(workflows=workflows, activities=activities):
        wrong_return = await client.start_workflow(returns_wrong_type, id="wrong-return")
        opaque_result = await client.start_workflow(
            catches_opaque_result, "returns_opaque", id="opaque-result"
        )
        opaque_arg = await client.start_workflow(passes_opaque_argument, id="opaque-argument")
        by_name = await client.start_workflow(passes_wrong_argument_by_name, id="by-name")
        # By name the client cannot check the arguments; the workflow's decoding refuses them.
        bad_point = await client.start_workflow("wants_a_point", {"x": "one"}, id="bad-point")
        typed_events = await client.start_workflow(waits_for_typed_events, id="typed-events")
        await client.send_event(typed_events.id, "point", "not a point")
        await client.send_event(typed_events.id, "point", {"x": 1, "y": 2})
        bystanders = await start_bystanders(client, "annotations")

        with pytest.raises(tapeflow.WorkflowFailed) as returned:
            await wrong_return.result(timeout=10)
        assert returned.value.type == "PayloadError"
        assert "returns_wrong_type" in returned.value.message

        caught = await opaque_result.result(timeout=10)
        assert (caught.type, caught.attempt) == ("PayloadError", 1)  # final: never retried
        assert "returns_opaque" in caught.message

        with pytest.raises(tapeflow.WorkflowFailed) as encoded:
            await opaque_arg.result(timeout=10)
        assert encoded.value.type == "PayloadError"
        assert "takes_int" in encoded.value.message

        refused = await by_name.result(timeout=10)
        assert (refused.type, refused.attempt) == ("PayloadError", 1)
        assert "takes_int" in refused.message

        with pytest.raises(tapeflow.WorkflowFailed) as decoded:
            await bad_point.result(timeout=10)
        assert decoded.value.type == "PayloadError"
        assert "point" in decoded.value.message

        assert await typed_events.result(timeout=10) == ["refused: PayloadError", "point 1,2"]
        await bystanders_finish(bystanders)
    history = await client.backend.load_history(opaque_arg.id)
    assert "activity_scheduled" not in kinds(history)  # refused before it was recorded


def test_an_activity_annotated_with_an_unknown_type_is_refused_when_registered(
    backend: tapeflow.Backend,
) -> None:
    """A type tapeflow cannot store is caught when the worker is built, not on every retry."""
    with pytest.raises(tapeflow.PayloadError, match="Opaque"):
        tapeflow.Worker(backend, activities=[returns_unsupported_type, double])


UNSERIALIZABLE: list[Any] = [
    pytest.param(math.nan, id="nan"),
    pytest.param(math.inf, id="inf"),
    pytest.param(-math.inf, id="-inf"),
    pytest.param("lone surrogate \ud800", id="lone-surrogate"),
    pytest.param(b"\x80 not utf-8", id="bad-bytes"),
    pytest.param("deep", id="deeply-nested"),
]


def _hostile_value(value: Any) -> Any:
    if value == "deep":
        nested: Any = []
        for _ in range(100_000):
            nested = [nested]
        return nested
    return value


@pytest.mark.parametrize("value", UNSERIALIZABLE)
async def test_values_json_cannot_hold_are_refused_before_any_write(
    client: tapeflow.Client, value: Any
) -> None:
    value = _hostile_value(value)
    with pytest.raises(tapeflow.PayloadError):
        await client.start_workflow("waits_for_go", value, id="unstorable")
    if isinstance(value, float):
        with pytest.raises(tapeflow.PayloadError):
            await client.start_workflow(halves, value, id="unstorable")
    with pytest.raises(tapeflow.WorkflowNotFound):
        await client.describe("unstorable")

    target = await client.start_workflow(waits_for_go, "ok", id="target")
    with pytest.raises(tapeflow.PayloadError):
        await client.send_event(target.id, "go", value)
    assert await inbox_rows(client.backend, target.id) == 1  # only its start


# -- malformed and planted rows ------------------------------------------------------------------


async def test_a_malformed_inbox_row_fails_only_its_workflow(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    """Its data cannot be read, so no task of it can run: the workflow fails, once, naming
    the row, instead of failing its task over and over."""
    backend = client.backend
    workflows, activities = [waits_for_go, steady], [double]
    async with worker(workflows=workflows, activities=activities):
        victim = await client.start_workflow(waits_for_go, "victim", id="victim")
        await waits_after(client, victim.id, 2)
    before = await backend.load_history(victim.id)
    await client.send_event(victim.id, "go", "ahead")
    await raw(
        backend, f"UPDATE inbox SET event = ? WHERE {OF_WORKFLOW}", malformed(backend), victim.id
    )

    async with worker(workflows=workflows, activities=activities):
        bystanders = await start_bystanders(client, "inbox")
        with pytest.raises(tapeflow.WorkflowFailed) as failed:
            await victim.result(timeout=10)
        await bystanders_finish(bystanders)
    assert failed.value.type == "PayloadError"
    assert "inbox event" in failed.value.message, failed.value.message
    record = await victim.describe()
    assert (record.status, record.task_error) == (Status.FAILED, None)  # no task failed
    after = await backend.load_history(victim.id)
    assert after[: len(before)] == before
    assert [e.kind for e in after[len(before) :]] == ["workflow_task_started", "workflow_failed"]
    assert await inbox_rows(backend, victim.id) == 0


async def test_a_malformed_history_row_fails_only_its_workflow(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    """A worker with nothing cached must read the damaged history to go on: the workflow
    fails, once; the event it was sent meanwhile is recorded before its end, not lost."""
    backend = client.backend
    workflows, activities = [waits_for_go, steady], [double]
    async with worker(workflows=workflows, activities=activities):
        victim = await client.start_workflow(waits_for_go, "victim", id="victim")
        await waits_after(client, victim.id, 2)
    query = f"SELECT seq, CAST(event AS TEXT) FROM history WHERE {OF_WORKFLOW} ORDER BY seq"
    rows = await raw(backend, query, victim.id)
    assert len(rows) == 2
    update = f"UPDATE history SET event = ? WHERE {OF_WORKFLOW} AND seq = 2"
    await raw(backend, update, malformed(backend), victim.id)
    damaged = await raw(backend, query, victim.id)

    async with worker(workflows=workflows, activities=activities):
        await client.send_event(victim.id, "go", "ahead")
        bystanders = await start_bystanders(client, "history")
        with pytest.raises(tapeflow.WorkflowFailed) as failed:
            await victim.result(timeout=10)
        await bystanders_finish(bystanders)
    assert failed.value.type == "PayloadError"
    assert "history event #2" in failed.value.message, failed.value.message
    record = await victim.describe()
    assert (record.status, record.task_error) == (Status.FAILED, None)
    now = await raw(backend, query, victim.id)
    assert now[:2] == damaged  # nothing written over it
    events = [TypeAdapter(Any).validate_json(text) for _, text in now[2:]]
    assert [e["kind"] for e in events] == [
        "workflow_task_started",
        "event_received",
        "workflow_failed",
    ]
    assert events[1]["payload"] == "ahead"  # recorded, not lost
    assert await inbox_rows(backend, victim.id) == 0


async def test_a_malformed_activity_task_row_fails_only_that_activity(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    backend = client.backend
    async with worker(workflows=[steady]):  # no activities: the task stays in its table
        victim = await client.start_workflow(steady, 21, id="victim")
        await waits_after(client, victim.id, 3)
    update = f"UPDATE activity_tasks SET args = ? WHERE {OF_WORKFLOW}"
    await raw(backend, update, malformed(backend), victim.id)

    async with worker(workflows=[steady], activities=[double]):
        bystanders = await start_bystanders(client, "activity-row")
        await bystanders_finish(bystanders)
        with pytest.raises(tapeflow.WorkflowFailed) as failed:
            await victim.result(timeout=8)
    assert failed.value.type == "ActivityError"
    assert "PayloadError" in failed.value.message
    assert "1 attempt" in failed.value.message  # final at once: retrying cannot help


async def test_pickle_bytes_planted_in_rows_are_never_unpickled(
    client: tapeflow.Client, worker: WorkerFactory, tmp_path: Path
) -> None:
    backend = client.backend
    marker = tmp_path / "unpickled"
    bomb = pickle.dumps(Booby(str(marker)))
    pickle.loads(bomb)
    assert marker.exists()
    marker.unlink()

    workflows, activities = [waits_for_go, steady], [double]
    async with worker(workflows=workflows, activities=activities):
        in_history = await client.start_workflow(waits_for_go, "h", id="pickle-in-history")
        await waits_after(client, in_history.id, 2)
    in_inbox = await client.start_workflow(waits_for_go, "i", id="pickle-in-inbox")
    await raw(
        backend,
        f"UPDATE inbox SET event = ? WHERE {OF_WORKFLOW}",
        planted(backend, bomb),
        in_inbox.id,
    )
    await raw(
        backend,
        f"UPDATE history SET event = ? WHERE {OF_WORKFLOW} AND seq = 2",
        planted(backend, bomb),
        in_history.id,
    )

    async with worker(workflows=workflows, activities=activities):
        await client.send_event(in_history.id, "go", "ahead")
        bystanders = await start_bystanders(client, "pickle")
        await bystanders_finish(bystanders)
        failures = []
        for victim in (in_inbox, in_history):
            with pytest.raises(tapeflow.WorkflowFailed) as failed:
                await victim.result(timeout=10)
            failures.append(failed.value)
    assert not marker.exists(), "a planted pickle was unpickled"
    assert [f.type for f in failures] == ["PayloadError", "PayloadError"]
    assert "inbox event" in failures[0].message
    assert "history event #2" in failures[1].message


# -- code that changed between worker generations ------------------------------------------------


@pytest.mark.parametrize(
    ("changed", "position", "names"),
    [
        pytest.param(pipeline_reordered, 3, ["'step_a'", "'step_b'"], id="reordered"),
        pytest.param(pipeline_removed, 6, ["'step_b'", "did not decide"], id="removed"),
        pytest.param(pipeline_inserted, 6, ["'step_b'", "'step_x'"], id="inserted"),
        pytest.param(pipeline_random, 3, ["'step_a'"], id="random-into-arguments"),
    ],
)
async def test_changed_code_is_caught_on_replay_and_history_is_kept(
    client: tapeflow.Client,
    worker: WorkerFactory,
    changed: Any,
    position: int,
    names: list[str],
) -> None:
    first, options = pipeline, {}
    if changed is pipeline_random:  # it only gets this far on a worker that never replays it
        first, options = pipeline_random, {"workflow_cache_size": 1000}
    async with worker(workflows=[first], activities=STEPS, **options):
        handle = await client.start_workflow(first, "pen", id="pipeline-1")
        await waits_after(client, handle.id, 8)  # two steps done, waiting for "go"
    before = await client.backend.load_history(handle.id)

    async with worker(
        workflows=[changed, steady], activities=[*STEPS, double], workflow_cache_size=0
    ):
        await client.send_event(handle.id, "go")
        bystanders = await start_bystanders(client, "changed")
        error = await task_error_of(client, handle.id)
        await bystanders_finish(bystanders)
        record = await handle.describe()
    assert error.startswith("NonDeterminismError"), error
    assert f"history event #{position}" in error, error
    for name in names:
        assert name in error, error
    assert record.status is Status.RUNNING
    assert await client.backend.load_history(handle.id) == before
    assert await inbox_rows(client.backend, handle.id) == 1  # "go" is kept for the fixed code

    if changed is pipeline_reordered:  # the original code picks up where it stopped
        async with worker(workflows=[pipeline], activities=STEPS):
            assert await handle.result(timeout=10) == ["a:pen", "b:pen", "c:pen"]


async def test_workflow_now_and_random_replay_identically(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[draws_twice], activities=[record_draws]):
        handle = await client.start_workflow(draws_twice, id="draws")
        await waits_after(client, handle.id, 5)
    # A cold worker replays the first activation: the same draws, or the recorded
    # activity arguments would not match.
    async with worker(workflows=[draws_twice], activities=[record_draws], workflow_cache_size=0):
        await client.send_event(handle.id, "go")
        first, second = await handle.result(timeout=10)
    history = await client.backend.load_history(handle.id)
    recorded = [e.args[0] for e in history if isinstance(e, ActivityScheduled)]
    assert [TypeAdapter(Draws).validate_python(r) for r in recorded] == [first, second]
    assert first.now.tzinfo is not None
    assert first.now <= second.now  # the time of each task, not a frozen or a wall clock
    assert first.number != second.number
    assert first.uuid != second.uuid
    debugger = tapeflow.WorkflowDebugger(client.backend)
    assert await debugger.query_vars(draws_twice, handle.id) == {"first": first.number}


# -- code that blocks the loop --------------------------------------------------------------------


async def test_a_workflow_blocking_the_loop_is_reported_and_others_go_on(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    workflows = [waits_in_the_loop, spins_in_the_loop, steady]
    short = timedelta(seconds=0.5)
    RELEASE.clear()
    try:
        async with worker(workflows=workflows, activities=[double], workflow_task_timeout=short):
            started = time.monotonic()
            blockers = [
                await client.start_workflow(waits_in_the_loop, id="blocking-wait"),
                await client.start_workflow(spins_in_the_loop, id="busy-loop"),
            ]
            bystanders = await start_bystanders(client, "blocked")
            await bystanders_finish(bystanders)
            elapsed = time.monotonic() - started
            errors = [await task_error_of(client, b.id) for b in blockers]
            records = [await b.describe() for b in blockers]
    finally:
        RELEASE.set()
    # the blockers hold their threads until released (or BLOCK_SECONDS): the bystanders
    # finishing first shows the worker went on without them
    assert elapsed < BLOCK_SECONDS, f"bystanders waited {elapsed:.1f}s behind blockers"
    for error in errors:
        assert "block" in error.lower(), error
    for record in records:
        assert (record.status, record.history_length) == (Status.PENDING, 0)


# -- size limits ----------------------------------------------------------------------------------


async def test_oversized_start_arguments_are_refused_before_any_write(
    client: tapeflow.Client,
) -> None:
    with pytest.raises(tapeflow.PayloadError, match=r"(?i)limit|too large|exceed"):
        await client.start_workflow(waits_for_go, OVER_LIMIT, id="too-big")
    with pytest.raises(tapeflow.PayloadError, match=r"(?i)limit|too large|exceed"):
        await client.start_workflow("waits_for_go", OVER_LIMIT, id="too-big")
    with pytest.raises(tapeflow.WorkflowNotFound):
        await client.describe("too-big")
    # Under the limit, a large argument is fine.
    await client.start_workflow(waits_for_go, UNDER_LIMIT, id="big-enough")
    assert (await client.describe("big-enough")).args == [UNDER_LIMIT]


async def test_oversized_event_is_refused_and_nothing_is_appended(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    handle = await client.start_workflow(first_event_length, id="sized-events")
    with pytest.raises(tapeflow.PayloadError, match=r"(?i)limit|too large|exceed"):
        await client.send_event(handle.id, "data", OVER_LIMIT)
    assert await inbox_rows(client.backend, handle.id) == 1  # only its start
    await client.send_event(handle.id, "data", UNDER_LIMIT)
    async with worker(workflows=[first_event_length]):
        assert await handle.result(timeout=10) == MIB  # the first event it saw


async def test_oversized_values_inside_a_worker_fail_clearly(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    workflows = [catches_big_result, big_argument_then_big_result, steady]
    activities = [returns_over_limit, echo_text, double]
    async with worker(workflows=workflows, activities=activities):
        big_result = await client.start_workflow(catches_big_result, id="big-activity-result")
        big_own = await client.start_workflow(big_argument_then_big_result, id="big-own")
        bystanders = await start_bystanders(client, "oversized")
        caught = await big_result.result(timeout=10)
        with pytest.raises(tapeflow.WorkflowFailed) as failed:
            await big_own.result(timeout=10)
        await bystanders_finish(bystanders)
    assert (caught.type, caught.attempt) == ("PayloadError", 1), caught
    assert "limit" in caught.message.lower() or "large" in caught.message.lower(), caught
    assert failed.value.type == "PayloadError"
    history = await client.backend.load_history(big_own.id)
    assert "activity_scheduled" not in kinds(history)
    assert await tapeflow.WorkflowDebugger(client.backend).query_vars(
        big_argument_then_big_result, big_own.id
    ) == {"argument": "refused"}


# -- huge error messages --------------------------------------------------------------------------


async def test_a_megabyte_error_message_is_stored_cut_short(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    workflows = [catches_huge_activity_error, raises_huge_message, steady]
    async with worker(workflows=workflows, activities=[fails_with_huge_message, double]):
        from_activity = await client.start_workflow(catches_huge_activity_error, id="huge-1")
        from_workflow = await client.start_workflow(raises_huge_message, id="huge-2")
        bystanders = await start_bystanders(client, "huge")
        caught: Caught = await from_activity.result(timeout=10)
        with pytest.raises(tapeflow.WorkflowFailed) as failed:
            await from_workflow.result(timeout=10)
        await bystanders_finish(bystanders)

    assert (caught.type, caught.attempt) == ("NonRetryableError", 1)
    assert len(caught.message) < BOUND
    assert "cut" in caught.message
    history = await client.backend.load_history(from_activity.id)
    (recorded,) = [e for e in history if isinstance(e, ActivityFailed)]
    assert len(recorded.failure.message) < BOUND
    assert "cut" in recorded.failure.message
    assert recorded.failure.traceback is not None
    assert len(recorded.failure.traceback) < BOUND

    assert failed.value.type == "ValueError"
    assert len(failed.value.message) < BOUND
    assert "cut" in failed.value.message
    stored = (await from_workflow.describe()).failure
    assert stored is not None
    assert len(stored.message) < BOUND
    assert "cut" in stored.message
    assert stored.traceback is not None
    assert len(stored.traceback) < BOUND


# -- one id, many starts --------------------------------------------------------------------------


async def test_fifty_concurrent_starts_of_one_id_make_one_workflow(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    outcomes = await asyncio.gather(
        *(client.start_workflow(steady, n, id="one-id") for n in range(50)),
        return_exceptions=True,
    )
    winners = [n for n, o in enumerate(outcomes) if isinstance(o, tapeflow.WorkflowHandle)]
    losers = [o for o in outcomes if not isinstance(o, tapeflow.WorkflowHandle)]
    assert len(winners) == 1, outcomes
    assert len(losers) == 49
    assert all(isinstance(o, tapeflow.WorkflowAlreadyExists) for o in losers), losers
    (winner,) = winners
    assert (await client.describe("one-id")).args == [winner]
    assert await inbox_rows(client.backend, "one-id") == 1

    async with worker(workflows=[steady], activities=[double]):
        assert await client.get_handle("one-id", result_type=int).result(timeout=10) == 2 * winner
    history = await client.backend.load_history("one-id")
    assert kinds(history).count("workflow_started") == 1
    (started,) = [e for e in history if isinstance(e, WorkflowExecutionStarted)]
    assert started.args == [winner]


# -- events to workflows that cannot take them -----------------------------------------------------


async def test_events_to_a_failed_or_a_missing_workflow(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[sleeps_negative, steady], activities=[double]):
        failed = await client.start_workflow(sleeps_negative, id="failed-1")
        finished = await start_bystanders(client, "done", count=1)
        with pytest.raises(tapeflow.WorkflowFailed):
            await failed.result(timeout=10)
        await bystanders_finish(finished)
    before = {w: await client.backend.load_history(w) for w in (failed.id, finished[0].id)}

    with pytest.raises(tapeflow.WorkflowAlreadyCompleted) as completed:
        await client.send_event(failed.id, "go", 1)
    assert completed.value.workflow_id == failed.id
    for missing in ("failed-%", "failed-_", "FAILED-1", "failed-1 ", "done-bystander-%"):
        with pytest.raises(tapeflow.WorkflowNotFound) as not_found:
            await client.send_event(missing, "go", 1)
        assert not_found.value.workflow_id == missing
        with pytest.raises(tapeflow.WorkflowNotFound):
            await client.describe(missing)  # no row made on the way
    assert {w: await client.backend.load_history(w) for w in before} == before
    assert await inbox_rows(client.backend, failed.id) == 0


# -- timers of odd durations -----------------------------------------------------------------


async def test_zero_negative_and_nan_timers(client: tapeflow.Client, worker: WorkerFactory) -> None:
    async with worker(workflows=[odd_timers, sleeps_nan, sleeps_negative]):
        odd = await client.start_workflow(odd_timers, id="odd-timers")
        nan = await client.start_workflow(sleeps_nan, id="sleeps-nan")
        negative = await client.start_workflow(sleeps_negative, id="sleeps-negative")
        report = await odd.result(timeout=10)
        with pytest.raises(tapeflow.WorkflowFailed) as nan_failed:
            await nan.result(timeout=10)
        with pytest.raises(tapeflow.WorkflowFailed) as negative_failed:
            await negative.result(timeout=10)
    assert report == [
        "zero: returned",
        "asyncio.sleep(-1): returned",
        "sleep_until(past): returned",
        "sleep(-1): InvalidArgument",
        f"sleep({timedelta(seconds=-1)!r}): InvalidArgument",
        "sleep(nan): InvalidArgument",
        "asyncio.sleep(nan): ValueError",
    ]
    for handle in (odd, nan, negative):
        history = await client.backend.load_history(handle.id)
        assert not any(isinstance(e, TimerStarted) for e in history), kinds(history)
    assert nan_failed.value.type == "InvalidArgument"
    assert "nan" in nan_failed.value.message
    assert negative_failed.value.type == "InvalidArgument"
    assert "-1" in negative_failed.value.message


# -- names with metacharacters and control characters -------------------------------------------

TRICKY_NAMES = [
    "'; DROP TABLE inbox; --",
    "100%",
    "_",
    "%_%",
    'quote\'s "double"',
    "back\\slash",
    "ünïcødé ✓ 🚀",
    "עברית right-to-left",
]
TRICKY_PAYLOAD = "\x00 nul, \x1b esc, \t tab, 🚀, עברית"
"""Control characters are refused in names, never in data: this must round-trip."""


async def test_tricky_workflow_event_and_activity_names_round_trip(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    workflows = {name: named_workflow(name) for name in TRICKY_NAMES}
    activities = [named_activity(name) for name in TRICKY_NAMES]
    handles = {
        name: await client.start_workflow(name, TRICKY_NAMES, id=f"tricky-{n}")
        for n, name in enumerate(TRICKY_NAMES)
    }
    for handle in handles.values():
        for name in TRICKY_NAMES:
            await client.send_event(handle.id, name, f"{name}{TRICKY_PAYLOAD}")

    # A worker for "_" and "%_%" alone: pattern characters match no other name.
    async with worker(workflows=[workflows["_"], workflows["%_%"]], activities=activities):
        for name in ("_", "%_%"):
            assert (await handles[name].result(timeout=10))[0] == name
        for name in set(TRICKY_NAMES) - {"_", "%_%"}:
            assert (await handles[name].describe()).status is Status.PENDING, name

    async with worker(workflows=list(workflows.values()), activities=activities):
        results = {name: await h.result(timeout=10) for name, h in handles.items()}
    expected = [f"{n}|{n}{TRICKY_PAYLOAD}" for n in TRICKY_NAMES]
    for name, handle in handles.items():
        assert results[name] == [name, *expected]
        assert (await handle.describe()).name == name
        history = await client.backend.load_history(handle.id)
        events = [e.name for e in history if isinstance(e, EventReceived)]
        scheduled = [e.name for e in history if isinstance(e, ActivityScheduled)]
        assert events == TRICKY_NAMES
        assert sorted(scheduled) == sorted(TRICKY_NAMES)


@pytest.mark.parametrize("bad", CONTROL_NAMES.values(), ids=CONTROL_NAMES.keys())
async def test_control_characters_are_refused_in_ids_and_names(
    client: tapeflow.Client, bad: str
) -> None:
    target = await client.start_workflow(waits_for_go, "ok", id="target")
    with pytest.raises(tapeflow.InvalidArgument, match="event name"):
        await client.send_event(target.id, bad, 1)
    assert await inbox_rows(client.backend, target.id) == 1
    with pytest.raises(tapeflow.InvalidArgument, match="workflow id"):
        await client.start_workflow(waits_for_go, "x", id=bad)
    with pytest.raises(tapeflow.InvalidArgument, match="workflow id"):
        await client.send_event(bad, "go", 1)
    with pytest.raises(tapeflow.InvalidArgument, match="workflow name"):
        await client.start_workflow(bad, id="by-bad-name")
    with pytest.raises(tapeflow.WorkflowNotFound):
        await client.describe("by-bad-name")


@pytest.mark.parametrize("bad", CONTROL_NAMES.values(), ids=CONTROL_NAMES.keys())
async def test_control_characters_are_refused_in_versions(
    client: tapeflow.Client, bad: str
) -> None:
    with pytest.raises(tapeflow.InvalidArgument, match="version"):
        await client.start_workflow(waits_for_go, "x", id="bad-version", version=bad)
    with pytest.raises(tapeflow.WorkflowNotFound):
        await client.describe("bad-version")


@pytest.mark.parametrize("bad", CONTROL_NAMES.values(), ids=CONTROL_NAMES.keys())
def test_control_characters_are_refused_in_registered_names(bad: str) -> None:
    async def some_workflow() -> None: ...

    def some_activity() -> None: ...

    with pytest.raises(tapeflow.InvalidArgument, match="name"):
        workflow.defn(name=bad)(some_workflow)
    with pytest.raises(tapeflow.InvalidArgument, match="name"):
        activity.defn(name=bad)(some_activity)


async def test_a_workflow_cannot_schedule_an_activity_under_a_bad_name(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[calls_activity_named, steady], activities=[double]):
        handles = [
            await client.start_workflow(calls_activity_named, n, id=f"bad-activity-{n}")
            for n in range(len(BAD_ACTIVITY_NAMES))
        ]
        bystanders = await start_bystanders(client, "bad-activity")
        outcomes = await asyncio.gather(
            *(h.result(timeout=8) for h in handles), return_exceptions=True
        )
        await bystanders_finish(bystanders)
    for name, outcome in zip(BAD_ACTIVITY_NAMES, outcomes, strict=True):
        assert isinstance(outcome, str), (name, outcome)
        assert outcome.startswith("refused"), (name, outcome)
