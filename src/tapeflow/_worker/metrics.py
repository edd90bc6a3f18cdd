"""What a worker's runners tell its metrics, at the points a dashboard needs.

``Metrics`` itself does nothing, so a worker without ``metrics_port`` pays one method call
per point and never imports prometheus_client; ``metrics_for`` picks the Prometheus one
(``tapeflow._worker.prometheus``) when a port is set.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from tapeflow.backends.base import TaskKind

if TYPE_CHECKING:
    from tapeflow._worker.cache import WorkflowCache
    from tapeflow.backends.plan import CommitPlan

now = time.perf_counter
"""The clock every latency is measured with (monotonic, fine-grained)."""


class Metrics:
    """The no-op: every observation is a method that returns at once."""

    def claimed(self, kind: TaskKind, seconds: float, count: int) -> None:
        """A claim of ``kind`` tasks took ``seconds`` and returned ``count`` of them."""

    def claim_failed(self, kind: TaskKind) -> None:
        """A claim raised: the backend is not reachable (or refused it)."""

    def polling(self, kind: TaskKind, running: bool) -> None:
        """A poll loop of ``kind`` started or ended."""

    def workflow_task(self, workflow: str, seconds: float) -> None:
        """A workflow task ran (history, replay, activation, commit) in ``seconds``."""

    def workflow_task_failed(self, workflow: str) -> None:
        """A workflow task's code failed (a bug, non-determinism): it is retried."""

    def committed(self, workflow: str, history_length: int, plan: CommitPlan) -> None:
        """A workflow task's plan was written: its run started (its first task), ended, or
        went on."""

    def commit_seconds(self, kind: TaskKind, seconds: float) -> None:
        """One write of a task's outcome (a workflow task's plan, an activity's result)."""

    def activity_ran(self, name: str, seconds: float) -> None:
        """An attempt of activity ``name`` returned or raised after ``seconds``."""

    def activity_ended(self, name: str, outcome: str) -> None:
        """An attempt's outcome: completed, failed (for good), retried, or discarded."""

    def watch_cache(self, cache: WorkflowCache) -> None:
        """Report the cache's own hit and miss counts (read when scraped, not per task)."""


def metrics_for(port: int | None) -> Metrics:
    """The Prometheus metrics when a port is set, else the no-op."""
    if port is None:
        return Metrics()
    try:
        from tapeflow._worker.metrics_http import MetricsServer  # noqa: F401
        from tapeflow._worker.prometheus import PrometheusMetrics
    except ImportError as exc:
        raise ImportError(
            f"metrics_port needs tapeflow[metrics] (pip install 'tapeflow[metrics]'): {exc}"
        ) from exc

    return PrometheusMetrics()
