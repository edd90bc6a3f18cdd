"""Frozen option objects: one documented place for every knob."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Literal, get_args

from tapeflow._tracing import check_tracing
from tapeflow._validate import (
    check_bool,
    check_choice,
    check_int,
    check_label,
    check_number,
    check_timedelta,
    fail,
)
from tapeflow.queues import DEFAULT_QUEUE, QueueLike, served_queues

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

MAX_DELAY = timedelta(days=365)
"""The longest tapeflow waits before a retry: a policy's backoff (however large its
intervals or coefficient), an activity's ``retry_after``/``retry_at``, are cut to this. Both
backends can hold ``now + MAX_DELAY``; an unbounded delay overflowed them (SQLite keeps
int64 microseconds), so the retry was never recorded and the attempt reran at every lease
expiry. Leases and worker intervals are bounded by it too."""

MAX_PORT = 65535

MAX_RETENTION = timedelta(days=36525)
"""The longest a closed workflow can be kept by a ``retention`` (a century): both backends
can hold its end time's distance from now."""

Executor = Literal["thread", "process"]
EXECUTORS: tuple[Executor, ...] = get_args(Executor)


def clamp_delay(delay: timedelta) -> timedelta:
    """``delay``, kept within 0 to ``MAX_DELAY``."""
    return min(max(delay, timedelta(0)), MAX_DELAY)


@dataclass(frozen=True)
class RetryPolicy:
    """How an activity is retried after an unexpected exception.

    The delay before attempt ``n + 1`` is ``initial_interval * backoff_coefficient ** (n - 1)``,
    capped at ``maximum_interval`` and always at ``MAX_DELAY``. The defaults: 15 s, x1.2, at
    most 5 min, retried forever.
    """

    initial_interval: timedelta = timedelta(seconds=15)
    """Delay before the first retry (zero retries at once)."""
    backoff_coefficient: float = 1.2
    """Factor applied to the delay after every failed attempt (at least 1)."""
    maximum_interval: timedelta | None = timedelta(minutes=5)
    """Cap on the delay; ``None`` lets it grow up to ``MAX_DELAY``."""
    maximum_attempts: int | None = None
    """Attempts in all, the first included; ``None`` retries forever."""

    def __post_init__(self) -> None:
        check_timedelta(self.initial_interval, "RetryPolicy.initial_interval")
        check_number(self.backoff_coefficient, "RetryPolicy.backoff_coefficient", minimum=1)
        if self.maximum_interval is not None:
            check_timedelta(self.maximum_interval, "RetryPolicy.maximum_interval")
            if self.maximum_interval < self.initial_interval:
                fail(
                    "RetryPolicy.maximum_interval",
                    self.maximum_interval,
                    f">= initial_interval ({self.initial_interval}) or None",
                )
        if self.maximum_attempts is not None:
            check_int(self.maximum_attempts, "RetryPolicy.maximum_attempts", minimum=1)

    def delay_after(self, attempt: int) -> timedelta:
        """The wait before the next attempt, once attempt number ``attempt`` has failed."""
        seconds = self.initial_interval.total_seconds()
        cap = self.maximum_interval.total_seconds() if self.maximum_interval else math.inf
        try:
            seconds *= self.backoff_coefficient ** max(attempt - 1, 0)
        except OverflowError:  # only a non-zero delay grows
            seconds = math.inf if seconds else 0.0
        return timedelta(seconds=min(seconds, cap, MAX_DELAY.total_seconds()))

    def allows_another(self, attempt: int) -> bool:
        """Whether attempt number ``attempt`` may be followed by one more."""
        return self.maximum_attempts is None or attempt < self.maximum_attempts

    def to_json(self) -> dict[str, float | int | None]:
        return {
            "initial_interval": self.initial_interval.total_seconds(),
            "backoff_coefficient": self.backoff_coefficient,
            "maximum_interval": (
                self.maximum_interval.total_seconds() if self.maximum_interval else None
            ),
            "maximum_attempts": self.maximum_attempts,
        }

    @classmethod
    def from_json(cls, data: dict[str, float | int | None]) -> RetryPolicy:
        maximum = data.get("maximum_interval")
        attempts = data.get("maximum_attempts")
        return cls(
            initial_interval=timedelta(seconds=float(data["initial_interval"] or 0)),
            backoff_coefficient=float(data["backoff_coefficient"] or 1),
            maximum_interval=None if maximum is None else timedelta(seconds=float(maximum)),
            maximum_attempts=None if attempts is None else int(attempts),
        )


@dataclass(frozen=True)
class WorkerOptions:
    """How a worker claims and runs tasks."""

    name: str | None = None
    """Shown as the lease owner; defaults to ``host:pid``."""
    max_concurrent_workflow_tasks: int = 100
    """Workflow tasks in flight at once. Each is short (replay, then one commit) and spends
    most of its time waiting for its commit, which the backend sends in one statement with
    the others in flight: more in flight, bigger batches, fewer round trips per task. On a
    2-core machine throughput rises up to about this many and is flat beyond
    (docs/performance.md, "The defaults"); what it costs is a slot each, not memory (the
    workflow cache holds the instances either way)."""
    max_concurrent_activities: int = 100
    """Activities running at once, async or sync; sync ones run in a thread pool of this
    size, whose threads start as calls need them. Eager activities (a workflow's next
    activity taken in the commit that scheduled it) need room here, so a small number
    throttles the workflows too. To spare a service that takes only N calls at once,
    give its activities a ``tapeflow.Queue`` with ``concurrency=N``: that limit holds
    across every worker, this one only per process."""
    lease_duration: timedelta = timedelta(seconds=30)
    """How long a claimed task stays ours without renewal; a live worker renews it every
    third of this (10 s: one statement per renewal for all its tasks, none while it holds
    none), so only a dead worker's tasks are taken over, once this runs out. Longer rides
    out longer database outages and event-loop stalls; shorter takes over sooner."""
    poll_interval: timedelta = timedelta(milliseconds=500)
    """Longest wait between two looks for work when no wake-up arrives (other processes)."""
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    """Applied to activities the workflow started without a policy of their own."""
    workflow_task_timeout: timedelta = timedelta(seconds=10)
    """Longest a workflow task may run workflow code (replay included) without awaiting;
    past it the task fails as blocked, its lease is released and the worker goes on."""
    max_abandoned_workflow_threads: int = 4
    """Threads left stuck in workflow code past ``workflow_task_timeout`` (Python cannot
    stop a thread) that a worker tolerates: each spins on, slowing every other task by its
    share of the GIL. At this many the worker claims no more workflow tasks (activities go
    on), logs an error and says so in ``Worker.health()``, until one of them returns. A
    workflow whose code is stuck is never run a second time on the same worker."""
    eager_activities: bool = True
    """A worker that runs both a workflow and its activities takes the activities it has
    room for in the very commit that scheduled them, and starts them at once."""
    workflow_cache_size: int = 1000
    """Live workflow instances kept so a task feeds only new events; 0 turns the cache off."""
    activity_executor: Executor = "thread"
    """Where sync activities run: the worker's own thread pool, or a process pool. Python
    cannot stop a thread: a sync activity still running past ``shutdown_grace`` is given
    up (its attempt released for another worker) but runs on in its thread until the
    process exits. Sync activities that may hang belong in the process pool, where such a
    call is killed with its child process. The process pool has one process per core (at
    most ``max_concurrent_activities``): a process each beyond the cores buys memory use,
    not speed, and the calls beyond them wait for one."""
    shutdown_grace: timedelta = timedelta(seconds=10)
    """How long stopping waits for running tasks before abandoning them to other workers:
    the leases of activities given up are released, so their attempts are retried at once."""
    retention: timedelta | None = None
    """How long closed workflows are kept: a worker with a retention deletes, about every
    minute, the workflows whose latest run ended longer ago than this (all their runs,
    history and keys), a batch per transaction, one worker of those sharing a database at
    a time; None keeps them for ever."""
    queues: Sequence[QueueLike] = (DEFAULT_QUEUE,)
    """The queues it takes work from (``tapeflow.Queue`` or names; any sequence is taken).
    A ``Queue`` given here is declared, its limits stored, when the worker starts."""
    metrics_port: int | None = None
    """A TCP port (all interfaces) on which the running worker serves ``/metrics`` for
    Prometheus and ``/healthz`` (JSON; 200 healthy, 503 not); needs ``tapeflow[metrics]``.
    None serves nothing and records no metrics."""
    tracing: bool | TracerProvider = True
    """OpenTelemetry spans for its workflow tasks and activity attempts (``tapeflow[otel]``),
    children of the span that started the workflow: True sends them to the globally
    configured tracer provider (none configured, or opentelemetry-api not installed: the
    API's no-op, near free), a ``TracerProvider`` to that one, False makes none."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "queues", served_queues(self.queues))
        if self.name is not None:
            check_label(self.name, "WorkerOptions.name")
        for count in ("max_concurrent_workflow_tasks", "max_concurrent_activities"):
            check_int(getattr(self, count), f"WorkerOptions.{count}", minimum=1)
        check_int(self.workflow_cache_size, "WorkerOptions.workflow_cache_size", minimum=0)
        check_int(
            self.max_abandoned_workflow_threads,
            "WorkerOptions.max_abandoned_workflow_threads",
            minimum=1,
        )
        for span in ("lease_duration", "poll_interval", "workflow_task_timeout"):
            check_timedelta(
                getattr(self, span), f"WorkerOptions.{span}", positive=True, maximum=MAX_DELAY
            )
        check_timedelta(self.shutdown_grace, "WorkerOptions.shutdown_grace", maximum=MAX_DELAY)
        if self.retention is not None:
            check_timedelta(
                self.retention, "WorkerOptions.retention", positive=True, maximum=MAX_RETENTION
            )
        if not isinstance(self.retry_policy, RetryPolicy):
            fail("WorkerOptions.retry_policy", self.retry_policy, "a RetryPolicy")
        check_bool(self.eager_activities, "WorkerOptions.eager_activities")
        check_choice(self.activity_executor, "WorkerOptions.activity_executor", EXECUTORS)
        check_tracing(self.tracing, "WorkerOptions.tracing")
        if self.metrics_port is not None:
            port = check_int(self.metrics_port, "WorkerOptions.metrics_port", minimum=1)
            if port > MAX_PORT:
                fail("WorkerOptions.metrics_port", port, f"a TCP port, 1 to {MAX_PORT}")
