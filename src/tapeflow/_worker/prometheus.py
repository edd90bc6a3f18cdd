"""Worker metrics as Prometheus counters and histograms, and the worker's health.

prometheus_client: the Prometheus project's own library, a pull endpoint with no collector
process to run, in the text format every dashboard reads (OpenTelemetry can come later
through its Prometheus receiver or a bridge). Each worker has a registry of its own, not
the process-wide default one, so two workers in one process do not collide; label values
(workflow and activity names) are few, and each child is looked up once and kept, so an
observation allocates nothing of its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from tapeflow._worker.metrics import Metrics
from tapeflow.backends.base import TaskKind

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from tapeflow._worker.cache import WorkflowCache
    from tapeflow.backends.plan import CommitPlan

FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Buckets for the worker's own steps (a claim, a commit, a workflow task): milliseconds."""
SLOW = (0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
"""Buckets for activities, user code that may take from a millisecond to many minutes."""

C = TypeVar("C")


class _Children(dict[str, C]):
    """A metric's child per label value, looked up once (``labels()`` locks and builds
    a tuple on each call); nested for two labels, so a lookup builds no key."""

    def __init__(self, make: Callable[[str], C]) -> None:
        super().__init__()
        self._make = make

    def __missing__(self, key: str) -> C:
        child = self[key] = self._make(key)
        return child


def _pairs(metric: Counter) -> _Children[_Children[Counter]]:
    return _Children(lambda first: _Children(lambda second: metric.labels(first, second)))


class _CacheCollector(Collector):
    """The workflow cache's own counts, read when scraped: nothing on the hot path."""

    def __init__(self, cache: WorkflowCache) -> None:
        self._cache = cache

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "tapeflow_workflow_cache_hits", "Tasks that found their workflow cached.",
            value=self._cache.hits,
        )  # fmt: skip
        yield CounterMetricFamily(
            "tapeflow_workflow_cache_misses", "Tasks that replayed their workflow's history.",
            value=self._cache.misses,
        )  # fmt: skip


class PrometheusMetrics(Metrics):
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.connected = True
        """Whether the last claim succeeded (True until one is tried)."""
        self.last_claim: float | None = None
        """When the last claim succeeded (Unix time)."""
        self.pollers = 0
        """Poll loops running."""

        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        def histogram(name: str, doc: str, buckets: tuple[float, ...], *labels: str) -> Histogram:
            return Histogram(name, doc, labels, registry=registry, buckets=buckets)

        started = counter("tapeflow_workflows_started", "Runs whose first task ran.", "workflow")
        closed = counter(
            "tapeflow_workflows_closed", "Runs ended, by status.", "workflow", "status"
        )
        task = histogram(
            "tapeflow_workflow_task_seconds", "Workflow tasks, claim to commit.", FAST, "workflow"
        )
        task_failed = counter(
            "tapeflow_workflow_task_failures", "Workflow tasks whose code failed.", "workflow"
        )
        ran = histogram(
            "tapeflow_activity_seconds", "Activity attempts' run time.", SLOW, "activity"
        )
        ended = counter(
            "tapeflow_activity_attempts",
            "Activity attempts by outcome: completed, failed (for good), retried, discarded.",
            "activity",
            "outcome",
        )
        claim = histogram("tapeflow_claim_seconds", "Claims of tasks (polls).", FAST, "kind")
        claimed = counter("tapeflow_claimed_tasks", "Tasks claimed by polls.", "kind")
        self._claim_failures = counter("tapeflow_claim_failures", "Claims that raised.", "kind")
        commit = histogram("tapeflow_commit_seconds", "Writes of a task's outcome.", FAST, "kind")
        self._started = _Children(started.labels)
        self._closed = _pairs(closed)
        self._task = _Children(task.labels)
        self._task_failed = _Children(task_failed.labels)
        self._ran = _Children(ran.labels)
        self._ended = _pairs(ended)
        self._claim = {kind: claim.labels(kind.value) for kind in TaskKind}
        self._claimed = {kind: claimed.labels(kind.value) for kind in TaskKind}
        self._commit = {kind: commit.labels(kind.value) for kind in TaskKind}

    def claimed(self, kind: TaskKind, seconds: float, count: int) -> None:
        self._claim[kind].observe(seconds)
        if count:
            self._claimed[kind].inc(count)
        self.connected = True
        self.last_claim = time.time()

    def claim_failed(self, kind: TaskKind) -> None:
        self._claim_failures.labels(kind.value).inc()
        self.connected = False

    def polling(self, kind: TaskKind, running: bool) -> None:
        self.pollers += 1 if running else -1

    def workflow_task(self, workflow: str, seconds: float) -> None:
        self._task[workflow].observe(seconds)

    def workflow_task_failed(self, workflow: str) -> None:
        self._task_failed[workflow].inc()

    def committed(self, workflow: str, history_length: int, plan: CommitPlan) -> None:
        if history_length == 0:
            self._started[workflow].inc()
        if plan.ending is not None:
            self._closed[workflow][plan.ending.status.value].inc()

    def commit_seconds(self, kind: TaskKind, seconds: float) -> None:
        self._commit[kind].observe(seconds)

    def activity_ran(self, name: str, seconds: float) -> None:
        self._ran[name].observe(seconds)

    def activity_ended(self, name: str, outcome: str) -> None:
        self._ended[name][outcome].inc()

    def watch_cache(self, cache: WorkflowCache) -> None:
        self.registry.register(_CacheCollector(cache))
