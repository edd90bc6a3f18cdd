"""What metrics cost one 1-activity workflow in the worker's own CPU: the observations a
worker running both the workflow and its activity makes for it (a claim, the task, two
commits, the run's start and end, the attempt), on the no-op and on Prometheus.

    .venv/bin/python -m benchmarks.metrics_cost

End to end, on and off: ``./scripts/bench --phases throughput --metrics`` against a run
without ``--metrics`` (docs/performance.md, "Metrics").
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

from tapeflow._worker.metrics import Metrics, now
from tapeflow._worker.prometheus import PrometheusMetrics
from tapeflow.backends.base import TaskKind, WorkflowStatus

GOING: Any = SimpleNamespace(ending=None)
ENDED: Any = SimpleNamespace(ending=SimpleNamespace(status=WorkflowStatus.COMPLETED))


def one_workflow(metrics: Metrics) -> None:
    started = now()
    metrics.claimed(TaskKind.WORKFLOW, now() - started, 1)
    writing = now()
    metrics.commit_seconds(TaskKind.WORKFLOW, now() - writing)
    metrics.committed("one", 0, GOING)
    metrics.workflow_task("one", now() - started)
    metrics.activity_ran("act", 0.001)
    writing = now()
    metrics.committed("one", 3, ENDED)
    metrics.commit_seconds(TaskKind.ACTIVITY, now() - writing)
    metrics.activity_ended("act", "completed")


def per_workflow(metrics: Metrics, count: int = 200_000, rounds: int = 3) -> float:
    """Seconds per workflow, the best of ``rounds``."""
    for _ in range(1000):
        one_workflow(metrics)
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(count):
            one_workflow(metrics)
        best = min(best, time.perf_counter() - started)
    return best / count


def main() -> None:
    for metrics in (Metrics(), PrometheusMetrics()):
        print(f"{type(metrics).__name__}: {per_workflow(metrics) * 1e6:.2f} us per workflow")


if __name__ == "__main__":
    main()
