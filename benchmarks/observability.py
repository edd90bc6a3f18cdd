"""What tracing and metrics cost the 1-activity throughput, end to end, on and off.

    .venv/bin/python -m benchmarks.observability --workflows 500 --rounds 3

Each run is a process of its own (a run after another in one process is slower, whatever
its setting), holding the client and one worker (workflows and activities) on a fresh
SQLite file; each round runs every setting once, in turn, so that a machine drifting
during the run shifts them all alike. Settings: ``off`` (tracing=False, no metrics),
``otel-api`` (tracing=True with no tracer provider configured: the API's no-op),
``metrics`` (metrics_port: Prometheus), ``tracing`` (an SDK TracerProvider with a
BatchSpanProcessor to an exporter that drops the spans), and ``both``. Prints workflows/s,
the median of the rounds and their range, then the CPU time the spans of one workflow take
(no end-to-end noise in it). Needs ``tapeflow[metrics]`` and opentelemetry-sdk
(both in the ``test`` extra).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import tapeflow
from benchmarks.workloads import one_step, step
from tapeflow._tracing import Tracing, tracing_for


class DroppingExporter(SpanExporter):
    """Takes spans and keeps nothing: what is measured is making them, not sending them."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _off() -> dict[str, Any]:
    return {"tracing": False}


def _otel_api() -> dict[str, Any]:
    return {"tracing": True}  # no provider is configured globally: the API's no-op


def _metrics() -> dict[str, Any]:
    return {"tracing": False, "metrics_port": _free_port()}


def _tracing() -> dict[str, Any]:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(DroppingExporter()))
    return {"tracing": provider}


def _both() -> dict[str, Any]:
    return {**_tracing(), "metrics_port": _free_port()}


SETTINGS: dict[str, Callable[[], dict[str, Any]]] = {
    "off": _off,
    "otel-api": _otel_api,
    "metrics": _metrics,
    "tracing": _tracing,
    "both": _both,
}


async def run_once(directory: Path, name: str, workflows: int) -> float:
    """Workflows/s of ``workflows`` 1-activity workflows started at once, with ``name``'s
    options on the worker and its tracing on the client."""
    options = SETTINGS[name]()
    url = f"sqlite:///{directory / f'{name}-{time.monotonic_ns()}.db'}"
    async with tapeflow.connect(url) as backend:
        client = tapeflow.Client(backend, tracing=options["tracing"])
        async with tapeflow.Worker(
            backend,
            workflows=[one_step],
            activities=[step],
            max_concurrent_workflow_tasks=50,
            max_concurrent_activities=50,
            **options,
        ):
            for value in range(5):  # warm up
                await (await client.start_workflow(one_step, value)).result(timeout=60)
            started = time.perf_counter()
            handles = [await client.start_workflow(one_step, n) for n in range(workflows)]
            for handle in handles:
                await handle.result(timeout=300)
            elapsed = time.perf_counter() - started
    provider = options["tracing"]
    if isinstance(provider, TracerProvider):
        provider.shutdown()
    return workflows / elapsed


def in_a_process(name: str, workflows: int) -> float:
    """``run_once`` in a new Python process; its workflows/s."""
    command = [sys.executable, "-m", "benchmarks.observability", "--one", name]
    done = subprocess.run(
        [*command, "--workflows", str(workflows)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return float(done.stdout.split()[-1])


def run_rounds(workflows: int, rounds: int, names: list[str]) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {name: [] for name in names}
    for round_number in range(1, rounds + 1):
        for name in names:
            rate = in_a_process(name, workflows)
            figures[name].append(rate)
            print(f"round {round_number} {name:>9}: {rate:7.1f} workflows/s", flush=True)
    return figures


def one_workflows_spans(tracing: Tracing) -> None:
    """The spans of one 1-activity workflow: its start, two tasks, one attempt."""
    with tracing.start_workflow("one_step", "id") as start:
        carried = start.carried
    for _ in range(2):
        with tracing.workflow_task("one_step", "id", "run", carried) as task:
            task.ended("running")
    with tracing.activity_attempt("step", 1, "id", "run", carried) as attempt:
        attempt.ended("completed")


def span_cost(count: int = 20_000) -> dict[str, float]:
    """Microseconds per workflow for its spans, the best of 3, by kind of tracing (in this
    process: the global provider is never set, so ``otel-api`` is the API's no-op)."""
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(DroppingExporter()))
    kinds = {"off": Tracing(), "otel-api": tracing_for(True), "tracing": tracing_for(provider)}
    costs = {}
    for name, tracing in kinds.items():
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            for _ in range(count):
                one_workflows_spans(tracing)
            best = min(best, time.perf_counter() - started)
        costs[name] = best / count * 1e6
    provider.shutdown()
    return costs


def _one(name: str, workflows: int) -> None:
    with tempfile.TemporaryDirectory(prefix="tapeflow-observability-") as directory:
        print(asyncio.run(run_once(Path(directory), name, workflows)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workflows", type=int, default=500, help="per run (default 500)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each setting")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--one", choices=list(SETTINGS), help=argparse.SUPPRESS)  # a run
    args = parser.parse_args(argv)
    if args.one is not None:
        _one(args.one, args.workflows)
        return
    figures = run_rounds(args.workflows, args.rounds, args.settings)
    print("\n| Setting | Median (workflows/s) | Range | vs off |")
    print("| --- | ---: | ---: | ---: |")
    base = statistics.median(figures["off"]) if "off" in figures else None
    for name, rates in figures.items():
        median = statistics.median(rates)
        versus = "" if base is None else f"{(median / base - 1) * 100:+.0f}%"
        print(f"| {name} | {median:.0f} | {min(rates):.0f}-{max(rates):.0f} | {versus} |")
    print("\nThe spans of one workflow (start, 2 tasks, 1 attempt), in this process:")
    for name, micros in span_cost().items():
        print(f"  {name:>9}: {micros:6.1f} us per workflow")


if __name__ == "__main__":
    main()
