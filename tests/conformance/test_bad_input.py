"""Bad input gets a clear, typed error and changes nothing."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

import tapeflow
from tapeflow import activity, workflow
from tapeflow.backends.base import TaskKind
from tests.conftest import WorkerFactory


@dataclass
class Order:
    id: int
    item: str


@activity.defn
def echo(text: str) -> str:
    return text


@workflow.defn
async def place(order: Order) -> str:
    return await workflow.execute_activity(echo, f"{order.id}:{order.item}")


@workflow.defn
async def greet(name: str) -> str:
    first = await workflow.wait_event("first")
    return f"{name}/{first}"


async def plain_coroutine(order: Order) -> str:
    return order.item


async def _assert_nothing_written(backend: tapeflow.Backend, workflow_id: str) -> None:
    with pytest.raises(tapeflow.WorkflowNotFound):
        await backend.get_workflow(workflow_id)
    with pytest.raises(tapeflow.WorkflowNotFound):
        await backend.load_history(workflow_id)


async def test_starting_a_function_that_is_not_a_workflow(client: tapeflow.Client) -> None:
    with pytest.raises(tapeflow.NotADefinition, match=r"@workflow\.defn"):
        await client.start_workflow(plain_coroutine, Order(1, "x"), id="not-a-workflow")
    with pytest.raises(tapeflow.NotADefinition):
        await client.start_workflow(echo, "x", id="an-activity")  # type: ignore[arg-type]
    await _assert_nothing_written(client.backend, "not-a-workflow")
    await _assert_nothing_written(client.backend, "an-activity")


def test_decorators_refuse_what_cannot_work() -> None:
    def sync_function() -> None: ...

    with pytest.raises(tapeflow.NotADefinition, match="async def"):
        workflow.defn(sync_function)
    with pytest.raises(tapeflow.InvalidArgument):
        activity.defn(name="")(sync_function)

    async def keyword_only(*, value: int) -> None: ...

    with pytest.raises(tapeflow.NotADefinition, match="positional"):
        workflow.defn(keyword_only)


async def test_duplicate_workflow_id_keeps_the_first(client: tapeflow.Client) -> None:
    await client.start_workflow(place, Order(1, "book"), id="order-1")
    with pytest.raises(tapeflow.WorkflowAlreadyExists) as caught:
        await client.start_workflow(place, Order(2, "pen"), id="order-1")
    assert caught.value.workflow_id == "order-1"
    record = await client.describe("order-1")
    assert record.args == [{"id": 1, "item": "book"}]
    assert len(await client.backend.load_history("order-1")) == 0


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(({"id": "one", "item": "x"},), id="wrong-field-type"),
        pytest.param(("not an order",), id="wrong-type"),
        pytest.param((Order(1, "x"), "extra"), id="too-many"),
        pytest.param((), id="too-few"),
        pytest.param((object(),), id="not-serializable"),
    ],
)
async def test_input_that_does_not_match_the_annotation(
    client: tapeflow.Client, args: tuple[object, ...]
) -> None:
    with pytest.raises(tapeflow.PayloadError):
        await client.start_workflow(place, *args, id="bad-input")
    await _assert_nothing_written(client.backend, "bad-input")


async def test_event_payload_that_cannot_be_serialized(client: tapeflow.Client) -> None:
    await client.start_workflow(greet, "ann", id="greet-1")
    with pytest.raises(tapeflow.PayloadError):
        await client.send_event("greet-1", "first", object())


@pytest.mark.parametrize("bad_id", ["", "x" * 256, "tab\there", "nul\x00"])
async def test_ids_that_are_empty_too_long_or_hold_control_characters(
    client: tapeflow.Client, bad_id: str
) -> None:
    with pytest.raises(tapeflow.InvalidArgument):
        await client.start_workflow(place, Order(1, "x"), id=bad_id)
    with pytest.raises(tapeflow.InvalidArgument):
        await client.send_event(bad_id, "first", 1)
    with pytest.raises(tapeflow.InvalidArgument):
        client.get_handle(bad_id)


async def test_start_at_must_be_timezone_aware(client: tapeflow.Client) -> None:
    with pytest.raises(tapeflow.InvalidArgument, match="tz-aware"):
        await client.start_workflow(place, Order(1, "x"), id="naive", start_at=datetime(2030, 1, 1))
    await _assert_nothing_written(client.backend, "naive")


async def test_unknown_workflow_ids(client: tapeflow.Client) -> None:
    with pytest.raises(tapeflow.WorkflowNotFound):
        await client.send_event("nobody", "first", 1)
    with pytest.raises(tapeflow.WorkflowNotFound):
        await client.get_handle("nobody").result(timeout=5)
    with pytest.raises(tapeflow.WorkflowNotFound):
        await tapeflow.WorkflowDebugger(client.backend).query_vars(greet, "nobody")
    await _assert_nothing_written(client.backend, "nobody")


async def test_event_for_a_finished_workflow(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[greet]):
        handle = await client.start_workflow(greet, "ann", id="greet-done")
        await client.send_event(handle.id, "first", "hello")
        assert await handle.result(timeout=10) == "ann/hello"
    history = await client.backend.load_history(handle.id)
    with pytest.raises(tapeflow.WorkflowAlreadyCompleted) as ended:
        await client.send_event(handle.id, "first", "late")
    assert ended.value.status == tapeflow.WorkflowStatus.COMPLETED
    assert "has already completed" in str(ended.value)
    assert await client.backend.load_history(handle.id) == history


TRICKY_IDS = [
    'quote\'s "double"',
    "100%",
    "under_score",
    "%_%",
    "'; DROP TABLE workflows; --",
    "back\\slash",
    "ünïcødé ✓ 🚀",
    "עברית right-to-left",
    "x" * 255,
]


async def test_tricky_ids_round_trip_exactly(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[greet]):
        handles = [
            await client.start_workflow(greet, workflow_id, id=workflow_id)
            for workflow_id in TRICKY_IDS
        ]
        for handle in handles:
            await client.send_event(handle.id, "first", handle.id)
        for handle in handles:
            assert await handle.result(timeout=10) == f"{handle.id}/{handle.id}"
    for workflow_id in TRICKY_IDS:
        record = await client.describe(workflow_id)
        assert record.id == workflow_id
        assert record.status is tapeflow.WorkflowStatus.COMPLETED
    # LIKE-style metacharacters must not match other ids
    with pytest.raises(tapeflow.WorkflowNotFound):
        await client.describe("100_")
    with pytest.raises(tapeflow.WorkflowNotFound):
        await client.describe("%")


async def test_query_vars_before_any_worker_ran_it(client: tapeflow.Client) -> None:
    await client.start_workflow(greet, "ann", id="not-run-yet")
    assert await tapeflow.WorkflowDebugger(client.backend).query_vars(greet, "not-run-yet") == {}


async def test_start_at_in_the_past_runs_at_once(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[place], activities=[echo]):
        handle = await client.start_workflow(
            place, Order(7, "cup"), id="past", start_at=datetime(2001, 1, 1, tzinfo=UTC)
        )
        assert await handle.result(timeout=10) == "7:cup"


def _assert_names(caught: pytest.ExceptionInfo[tapeflow.InvalidArgument], *names: str) -> None:
    """The message says which argument was wrong and what it was given."""
    for name in names:
        assert name in str(caught.value), f"{name!r} not in {str(caught.value)!r}"


BAD_WORKER_OPTIONS: list[tuple[str, object]] = [
    ("name", ""),
    ("name", "line\nbreak"),
    ("name", "paragraph\u2029separator"),
    ("name", 7),
    ("max_concurrent_workflow_tasks", 0),
    ("max_concurrent_workflow_tasks", 2.0),
    ("max_concurrent_workflow_tasks", True),
    ("max_concurrent_activities", 1.5),
    ("max_concurrent_activities", "4"),
    ("max_concurrent_activities", None),
    ("lease_duration", timedelta(0)),
    ("lease_duration", timedelta(seconds=-1)),
    ("lease_duration", 30),
    ("lease_duration", timedelta(days=366)),
    ("poll_interval", timedelta(0)),
    ("poll_interval", 0.5),
    ("workflow_task_timeout", None),
    ("workflow_task_timeout", timedelta(milliseconds=-1)),
    ("retry_policy", None),
    ("retry_policy", {"maximum_attempts": 3}),
    ("eager_activities", "no"),
    ("eager_activities", 0),
    ("eager_activities", None),
    ("workflow_cache_size", -1),
    ("workflow_cache_size", 1.5),
    ("workflow_cache_size", "10"),
    ("activity_executor", "bogus"),
    ("activity_executor", "Process"),
    ("activity_executor", None),
    ("shutdown_grace", timedelta(seconds=-1)),
    ("shutdown_grace", 10),
]


@pytest.mark.parametrize(
    ("field", "value"), [pytest.param(f, v, id=f"{f}={v!r}") for f, v in BAD_WORKER_OPTIONS]
)
def test_bad_worker_options(field: str, value: object) -> None:
    with pytest.raises(tapeflow.InvalidArgument) as caught:
        tapeflow.WorkerOptions(**{field: value})  # type: ignore[arg-type]
    _assert_names(caught, f"WorkerOptions.{field}", repr(value))


async def test_bad_worker_options_given_to_the_worker(backend: tapeflow.Backend) -> None:
    with pytest.raises(tapeflow.InvalidArgument) as caught:
        tapeflow.Worker(backend, workflows=[place], max_concurrent_activities=1.5)
    _assert_names(caught, "WorkerOptions.max_concurrent_activities", "1.5")
    with pytest.raises(tapeflow.InvalidArgument) as caught:
        tapeflow.Worker(backend, workflows=[place], options={"name": "x"})  # type: ignore[arg-type]
    _assert_names(caught, "Worker options", "{'name': 'x'}")


BAD_RETRY_POLICIES: list[tuple[str, dict[str, Any]]] = [
    ("initial_interval", {"initial_interval": timedelta(seconds=-1)}),
    ("initial_interval", {"initial_interval": 1.0}),
    ("initial_interval", {"initial_interval": None}),
    ("backoff_coefficient", {"backoff_coefficient": 0.5}),
    ("backoff_coefficient", {"backoff_coefficient": math.nan}),
    ("backoff_coefficient", {"backoff_coefficient": math.inf}),
    ("backoff_coefficient", {"backoff_coefficient": "2"}),
    ("backoff_coefficient", {"backoff_coefficient": True}),
    (
        "maximum_interval",
        {"initial_interval": timedelta(seconds=10), "maximum_interval": timedelta(seconds=1)},
    ),
    ("maximum_interval", {"maximum_interval": 60.0}),
    ("maximum_attempts", {"maximum_attempts": 0}),
    ("maximum_attempts", {"maximum_attempts": 1.5}),
    ("maximum_attempts", {"maximum_attempts": "3"}),
    ("maximum_attempts", {"maximum_attempts": True}),
]


@pytest.mark.parametrize(
    ("field", "fields"),
    [pytest.param(f, kw, id=f"{f}={kw[f]!r}") for f, kw in BAD_RETRY_POLICIES],
)
def test_bad_retry_policies(field: str, fields: dict[str, Any]) -> None:
    with pytest.raises(tapeflow.InvalidArgument) as caught:
        tapeflow.RetryPolicy(**fields)
    _assert_names(caught, f"RetryPolicy.{field}", repr(fields[field]))


BAD_STARTS: list[tuple[str, dict[str, Any]]] = [
    ("workflow id", {"id": 7}),
    ("workflow id", {"id": "line\nbreak"}),
    ("version", {"version": 2}),
    ("start_at", {"start_at": "2030-01-01T00:00:00+00:00"}),
    ("start_at", {"start_at": 1893456000}),
    ("start_at", {"start_at": date(2030, 1, 1)}),
    ("start_at", {"start_at": datetime(2030, 1, 1)}),
    ("start_at", {"start_at": datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5)))}),
]


@pytest.mark.parametrize(
    ("argument", "options"),
    [pytest.param(a, kw, id=f"{a}={next(iter(kw.values()))!r}") for a, kw in BAD_STARTS],
)
async def test_bad_start_options(
    client: tapeflow.Client, argument: str, options: dict[str, Any]
) -> None:
    with pytest.raises(tapeflow.InvalidArgument) as caught:
        await client.start_workflow(place, Order(1, "x"), **options)
    _assert_names(caught, argument)
    assert await client.backend.next_due(TaskKind.WORKFLOW, ["place"]) is None


BAD_TIMEOUTS: list[object] = [
    "1",
    math.nan,
    math.inf,
    -1,
    timedelta(seconds=-1),
    True,
]


@pytest.mark.parametrize("timeout", [pytest.param(t, id=repr(t)) for t in BAD_TIMEOUTS])
async def test_bad_result_timeouts(client: tapeflow.Client, timeout: object) -> None:
    await client.start_workflow(greet, "ann", id="waits")
    with pytest.raises(tapeflow.InvalidArgument) as caught:
        await client.get_handle("waits").result(timeout=timeout)  # type: ignore[arg-type]
    _assert_names(caught, "timeout", repr(timeout))


@pytest.mark.parametrize("name", [pytest.param(n, id=repr(n)) for n in ["", " ", 3, "nul\x00"]])
async def test_bad_event_names(client: tapeflow.Client, name: object) -> None:
    handle = await client.start_workflow(greet, "ann", id="greet-bad-event")
    history = await client.backend.load_history(handle.id)
    with pytest.raises(tapeflow.InvalidArgument) as caught:
        await handle.send_event(name, 1)  # type: ignore[arg-type]
    _assert_names(caught, "event name")
    assert await client.backend.load_history(handle.id) == history


MISUSES: dict[str, Callable[[], Awaitable[object]]] = {
    "wait_event('')": lambda: workflow.wait_event(""),
    "wait_event(None)": lambda: workflow.wait_event(None),  # type: ignore[arg-type]
    "on_event('')": lambda: _on_event(""),
    "sleep('1')": lambda: workflow.sleep("1"),  # type: ignore[arg-type]
    "sleep(None)": lambda: workflow.sleep(None),  # type: ignore[arg-type]
    "sleep(inf)": lambda: workflow.sleep(math.inf),
    "sleep(nan)": lambda: workflow.sleep(math.nan),
    "sleep(-1)": lambda: workflow.sleep(-1),
    "sleep_until('2030')": lambda: workflow.sleep_until("2030-01-01"),  # type: ignore[arg-type]
    "sleep_until(naive)": lambda: workflow.sleep_until(datetime(2030, 1, 1)),
    "execute_activity(retry={})": lambda: _with_retry({"maximum_attempts": 1}),
}
"""Calls inside a workflow, each with the argument its message must name."""

MISUSE_NAMES = {
    "wait_event": "event name",
    "on_event": "event name",
    "sleep_until": "sleep_until when",
    "sleep": "sleep duration",
    "execute_activity": "execute_activity retry",
}


async def _on_event(name: str) -> None:
    workflow.on_event(name, print)


async def _with_retry(retry: object) -> object:
    return await workflow.execute_activity(echo, "x", retry=retry)  # type: ignore[call-overload]


@workflow.defn
async def misuse(case: str) -> str:
    """Makes the bad call named ``case`` and reports the error it raised."""
    try:
        await MISUSES[case]()
    except tapeflow.InvalidArgument as exc:
        return f"InvalidArgument: {exc}"
    return "accepted"


@pytest.mark.parametrize("case", list(MISUSES))
async def test_bad_arguments_inside_a_workflow(
    client: tapeflow.Client, backend: tapeflow.Backend, case: str
) -> None:
    async with tapeflow.Worker(
        backend, workflows=[misuse], activities=[echo], poll_interval=timedelta(milliseconds=50)
    ):
        report = await client.start_workflow(misuse, case)
        outcome = await report.result(timeout=10)
    assert outcome.startswith("InvalidArgument: ")
    assert MISUSE_NAMES[case.partition("(")[0]] in outcome


BAD_URLS: list[object] = [
    7,
    b"sqlite:///tapeflow.db",
    "",
    "tapeflow.db",
    "mysql://localhost/db",
    "sqlite://relative.db",
    "postgresql://localhost:99999/db",
    "postgresql://localhost:port/db",
]


@pytest.mark.parametrize("url", [pytest.param(u, id=repr(u)) for u in BAD_URLS])
def test_bad_database_urls(url: object) -> None:
    with pytest.raises(tapeflow.InvalidArgument) as caught:
        tapeflow.connect(url)  # type: ignore[arg-type]
    _assert_names(caught, "database URL", repr(url))
