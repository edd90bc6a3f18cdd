"""OpenTelemetry spans (``tracing=``): a caller's span is the root of its workflow's tasks,
activity attempts and children, on every backend, across a restart with a cold cache and
after a worker that died holding a task; replayed history makes no span."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import tapeflow
from tapeflow import workflow
from tapeflow.errors import InvalidArgument
from tapeflow.history import WorkflowExecutionStarted
from tests.conftest import WorkerFactory
from tests.observed_workflows import broken, double, doubled, fails_once, retried


@workflow.defn
async def parent(x: int) -> int:
    return await workflow.execute_child_workflow(doubled, x, id=f"{workflow.info().workflow_id}-c")


@workflow.defn
async def two_steps(x: int) -> int:
    first = await workflow.execute_activity(double, x)
    await workflow.wait_event("go")
    return await workflow.execute_activity(double, first)


@workflow.defn
async def notify(target: str) -> None:
    await workflow.send_event(target, "go")


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    """A provider of the test's own: the global one is never set, so nothing leaks."""
    made = TracerProvider()
    made.add_span_processor(SimpleSpanProcessor(exporter))
    yield made
    made.shutdown()


def named(spans: tuple[ReadableSpan, ...], prefix: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name.startswith(prefix)]


def ancestors(span: ReadableSpan, spans: tuple[ReadableSpan, ...]) -> list[str]:
    """The names of the span's ancestors among ``spans``, nearest first."""
    by_id = {s.context.span_id: s for s in spans if s.context is not None}
    found = []
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        found.append(span.name)
    return found


async def test_the_workflow_and_its_activity_are_children_of_the_callers_span(
    backend: tapeflow.Backend,
    worker: WorkerFactory,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    client = tapeflow.Client(backend, tracing=provider)
    with provider.get_tracer("test").start_as_current_span("caller") as caller:
        handle = await client.start_workflow(doubled, 3, id="traced")
    async with worker(workflows=[doubled], activities=[double], tracing=provider):
        assert await handle.result(timeout=10) == 6
    spans = exporter.get_finished_spans()
    trace_id = caller.get_span_context().trace_id
    assert {span.context.trace_id for span in spans if span.context} == {trace_id}
    (start,) = named(spans, "StartWorkflow:doubled")
    assert start.kind is SpanKind.PRODUCER
    assert ancestors(start, spans) == ["caller"]
    tasks = named(spans, "RunWorkflow:doubled")
    assert len(tasks) == 2  # the one that scheduled the activity, the one that completed
    for task in tasks:
        assert ancestors(task, spans) == ["StartWorkflow:doubled", "caller"]
        assert task.attributes is not None
        assert task.attributes["tapeflow.workflow_id"] == "traced"
        assert task.attributes["tapeflow.run_id"] == handle.run_id
    assert sorted(str((t.attributes or {})["tapeflow.outcome"]) for t in tasks) == [
        "completed",
        "running",
    ]
    (attempt,) = named(spans, "RunActivity:double")
    assert ancestors(attempt, spans) == ["RunWorkflow:doubled", "StartWorkflow:doubled", "caller"]
    assert attempt.attributes is not None
    assert attempt.attributes["tapeflow.attempt"] == 1
    assert attempt.attributes["tapeflow.outcome"] == "completed"
    assert attempt.status.status_code is StatusCode.UNSET


async def test_a_restarted_worker_replays_without_spans_and_stays_in_the_callers_trace(
    backend: tapeflow.Backend, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    client = tapeflow.Client(backend, tracing=provider)
    with provider.get_tracer("test").start_as_current_span("caller") as caller:
        handle = await client.start_workflow(two_steps, 3, id="restarted")
    options = tapeflow.WorkerOptions(poll_interval=timedelta(milliseconds=50), tracing=provider)
    async with tapeflow.Worker(
        backend, workflows=[two_steps], activities=[double], options=options
    ):
        for _ in range(200):  # until the first step is recorded and the workflow waits
            if any(e.kind == "activity_completed" for e in await handle.history()):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.05)
    exporter.clear()
    await handle.send_event("go")  # untraced here: its own trace
    async with tapeflow.Worker(  # a fresh cache: it replays the first step from history
        backend, workflows=[two_steps], activities=[double], options=options
    ):
        assert await handle.result(timeout=10) == 12
    spans = exporter.get_finished_spans()
    trace_id = caller.get_span_context().trace_id
    (attempt,) = named(spans, "RunActivity:double")  # the first step's is not run again
    assert attempt.attributes is not None
    assert attempt.attributes["tapeflow.attempt"] == 1
    tasks = named(spans, "RunWorkflow:two_steps")
    assert 1 <= len(tasks) <= 2  # the event's task, then the completion's (or run ahead)
    for span in [*tasks, attempt]:
        assert span.context is not None
        assert span.context.trace_id == trace_id
        assert span.parent is not None
    assert attempt.parent is not None
    assert attempt.parent.span_id in {t.context.span_id for t in tasks if t.context}


async def test_a_task_a_dead_worker_held_runs_elsewhere_in_the_callers_trace(
    backend: tapeflow.Backend, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    client = tapeflow.Client(backend, tracing=provider)
    with provider.get_tracer("test").start_as_current_span("caller") as caller:
        handle = await client.start_workflow(doubled, 3, id="orphaned")
    lease = timedelta(milliseconds=300)
    held = await backend.claim_workflow_tasks(["doubled"], "dead-worker", lease, 1, ["default"])
    assert [task.workflow_id for task in held] == ["orphaned"]  # then it dies: nothing written
    options = tapeflow.WorkerOptions(poll_interval=timedelta(milliseconds=50), tracing=provider)
    async with tapeflow.Worker(backend, workflows=[doubled], activities=[double], options=options):
        assert await handle.result(timeout=10) == 6
    spans = exporter.get_finished_spans()
    assert {span.context.trace_id for span in spans if span.context} == {
        caller.get_span_context().trace_id
    }
    for task in named(spans, "RunWorkflow:doubled"):
        assert ancestors(task, spans) == ["StartWorkflow:doubled", "caller"]
    (attempt,) = named(spans, "RunActivity:double")
    assert ancestors(attempt, spans)[0] == "RunWorkflow:doubled"


async def test_each_attempt_has_a_span_with_its_outcome(
    client: tapeflow.Client,
    worker: WorkerFactory,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    backend_url: str,
) -> None:
    key = f"retried-{backend_url}"
    async with worker(workflows=[retried], activities=[fails_once], tracing=provider):
        assert await (await client.start_workflow(retried, key)).result(timeout=10) == "ok"
    attempts = sorted(
        named(exporter.get_finished_spans(), "RunActivity:fails_once"),
        key=lambda s: str((s.attributes or {})["tapeflow.attempt"]),
    )
    assert [(a.attributes or {})["tapeflow.outcome"] for a in attempts] == ["retried", "completed"]
    failed, ok = attempts
    assert failed.status.status_code is StatusCode.ERROR
    assert [e.name for e in failed.events] == ["exception"]
    assert ok.status.status_code is StatusCode.UNSET
    assert failed.parent == ok.parent  # both under the task that scheduled the activity


async def test_a_failing_workflow_marks_its_span_failed(
    backend: tapeflow.Backend,
    worker: WorkerFactory,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    client = tapeflow.Client(backend, tracing=provider)
    async with worker(workflows=[broken], tracing=provider):
        with pytest.raises(tapeflow.WorkflowFailed):
            await (await client.start_workflow(broken, 1)).result(timeout=10)
    (task,) = named(exporter.get_finished_spans(), "RunWorkflow:broken")
    assert task.status.status_code is StatusCode.ERROR
    assert task.status.description == "ValueError: this workflow fails"
    assert (task.attributes or {})["tapeflow.outcome"] == "failed"


async def test_a_child_and_an_event_sent_are_traced_under_the_parent(
    backend: tapeflow.Backend,
    worker: WorkerFactory,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    client = tapeflow.Client(backend, tracing=provider)
    with provider.get_tracer("test").start_as_current_span("caller"):
        handle = await client.start_workflow(parent, 5, id="p")
    async with worker(workflows=[parent, doubled], activities=[double], tracing=provider):
        assert await handle.result(timeout=10) == 10
    spans = exporter.get_finished_spans()
    child_tasks = named(spans, "RunWorkflow:doubled")
    assert child_tasks
    for task in child_tasks:
        assert ancestors(task, spans)[-3:] == [
            "RunWorkflow:parent",
            "StartWorkflow:parent",
            "caller",
        ]


async def test_sending_an_event_is_a_span_of_the_caller(
    backend: tapeflow.Backend,
    worker: WorkerFactory,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    client = tapeflow.Client(backend, tracing=provider)
    handle = await client.start_workflow(two_steps, 1, id="evented")
    with provider.get_tracer("test").start_as_current_span("caller"):
        await handle.send_event("go")
    (sent,) = named(exporter.get_finished_spans(), "SendEvent:go")
    assert ancestors(sent, exporter.get_finished_spans()) == ["caller"]
    assert (sent.attributes or {})["tapeflow.workflow_id"] == "evented"


async def test_an_event_a_workflow_sends_is_a_span_of_its_task(
    backend: tapeflow.Backend,
    worker: WorkerFactory,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    client = tapeflow.Client(backend, tracing=provider)
    waiting = await client.start_workflow(two_steps, 1, id="waiting")
    with provider.get_tracer("test").start_as_current_span("caller"):
        sender = await client.start_workflow(notify, "waiting", id="sender")
    async with worker(workflows=[two_steps, notify], activities=[double], tracing=provider):
        await sender.result(timeout=10)
        assert await waiting.result(timeout=10) == 4
    spans = exporter.get_finished_spans()
    (sent,) = named(spans, "SendEvent:go")
    assert ancestors(sent, spans) == ["RunWorkflow:notify", "StartWorkflow:notify", "caller"]
    assert (sent.attributes or {})["tapeflow.workflow_id"] == "waiting"


async def test_tracing_off_or_unconfigured_stores_no_context(
    backend: tapeflow.Backend, worker: WorkerFactory
) -> None:
    for client in (tapeflow.Client(backend, tracing=False), tapeflow.Client(backend)):
        handle = await client.start_workflow(doubled, 2)  # no provider is configured globally
        async with worker(workflows=[doubled], activities=[double], tracing=False):
            assert await handle.result(timeout=10) == 4
        history = await handle.history()
        (started,) = [e for e in history if isinstance(e, WorkflowExecutionStarted)]
        assert started.trace_context is None


def test_a_tracing_option_is_checked() -> None:
    with pytest.raises(InvalidArgument, match="tracing"):
        tapeflow.WorkerOptions(tracing="yes")  # type: ignore[arg-type]


def test_tapeflow_runs_without_opentelemetry() -> None:
    script = """
import sys
sys.modules["opentelemetry"] = None  # as if not installed: its import fails
import asyncio, tapeflow
from tapeflow import workflow
from tapeflow._tracing import Tracing, tracing_for

@workflow.defn
async def hello(name: str) -> str:
    return f"hello {name}"

async def main() -> None:
    assert type(tracing_for(True)) is Tracing
    async with tapeflow.connect("sqlite:///:memory:") as backend:
        async with tapeflow.Worker(backend, workflows=[hello]):
            handle = await tapeflow.Client(backend).start_workflow(hello, "you")
            print(await handle.result(timeout=10))

asyncio.run(main())
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "hello you"
