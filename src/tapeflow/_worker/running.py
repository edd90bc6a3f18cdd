"""A started worker's parts, built once and in order, and the routing of hand-offs."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

from tapeflow._tracing import tracing_for
from tapeflow._worker.activity_tasks import ActivityTaskRunner
from tapeflow._worker.leases import LeaseKeeper
from tapeflow._worker.log_context import about, worker_logger
from tapeflow._worker.metrics import metrics_for
from tapeflow._worker.poller import Poller
from tapeflow._worker.presence import Presence, worker_info
from tapeflow._worker.process_pool import ProcessPool
from tapeflow._worker.queued_claims import QueuedClaims
from tapeflow._worker.retention import Retention
from tapeflow._worker.schedules import ScheduleFiring
from tapeflow._worker.slots import Slots
from tapeflow._worker.thread_pool import ActivityThreadPool
from tapeflow._worker.workflow_steps import HandOver, Taking, WorkflowSteps
from tapeflow._worker.workflow_tasks import WorkflowTaskRunner
from tapeflow._worker.workflow_threads import WORKFLOW_THREADS, WorkflowThreads
from tapeflow.backends.base import ActivityTask, LeaseRef, TaskKind, WorkflowTask, hand_offs
from tapeflow.backends.presence import WorkerPresence
from tapeflow.backends.queue_limits import QueueLimits
from tapeflow.backends.schedules import Schedules
from tapeflow.backends.wakeups import finished_topic
from tapeflow.errors import BackendUnavailable

if TYPE_CHECKING:
    from tapeflow._worker.metrics_http import MetricsServer
    from tapeflow.worker import Worker

log = worker_logger()


class Running:
    """A started worker's parts, each built once, in the order they need each other: slots
    first (the writes that hand work over reserve them), then the workflow steps both
    runners share, the runners, and the pollers that feed them. Work a task's own write
    leased to this worker is started here when that task ends (``HandOver``)."""

    def __init__(self, worker: Worker) -> None:
        options = self.options = worker.options
        self.backend = backend = worker.backend
        self.workflow_slots = Slots(options.max_concurrent_workflow_tasks)
        self.activity_slots = Slots(options.max_concurrent_activities)
        self.executor: Executor | None = None
        self.threads: WorkflowThreads | None = None
        self._held = False
        self.metrics = metrics = metrics_for(options.metrics_port)
        metrics.watch_cache(worker.cache)
        self.serving: MetricsServer | None = None  # first: a port in use fails the start
        if options.metrics_port is not None:
            from tapeflow._worker.metrics_http import MetricsServer
            from tapeflow._worker.prometheus import PrometheusMetrics

            assert isinstance(metrics, PrometheusMetrics)
            self.serving = MetricsServer(metrics, self.refusal, options.metrics_port)
        steps = self._steps(worker) if worker.workflows else None
        tracing = tracing_for(options.tracing)
        if steps is not None:
            steps.metrics = metrics
            steps.tracing = tracing
        self.workflow_runner = (
            WorkflowTaskRunner(backend, steps, worker.cache, options.lease_duration, metrics)
            if steps is not None
            else None
        )
        self.activity_runner: ActivityTaskRunner | None = None
        if worker.activities:
            self.executor = (
                ProcessPool(min(options.max_concurrent_activities, os.cpu_count() or 1))
                if options.activity_executor == "process"
                else ActivityThreadPool(options.max_concurrent_activities)
            )
            self.activity_runner = ActivityTaskRunner(
                backend,
                worker.activities,
                options.retry_policy,
                self.executor,
                options.lease_duration,
                steps,
                metrics,
                tracing,
            )
        runner = self.activity_runner
        if steps is not None and runner is not None:
            steps.on_committed = runner.cancel_for
        self.leases = LeaseKeeper(
            backend,
            options.lease_duration,
            runner.take_heartbeats if runner else dict,
            runner.cancel if runner else lambda task_id: None,
        )
        owner, lease, queues = worker.lease_owner, options.lease_duration, worker.queues
        limits = backend if isinstance(backend, QueueLimits) else None
        self.pollers: list[Poller[Any]] = []
        if self.workflow_runner is not None:
            names = list(worker.workflows)
            claim_workflows = QueuedClaims(
                lambda limit: backend.claim_workflow_tasks(names, owner, lease, limit, queues),
                None
                if limits is None
                else lambda queue, room: limits.admit_workflow_tasks(
                    queue, names, owner, lease, room
                ),
                queues,
            )
            self.pollers.append(
                Poller(
                    backend,
                    TaskKind.WORKFLOW,
                    names,
                    self.workflow_slots,
                    options.poll_interval,
                    claim_workflows,
                    self._run_workflow_task,
                    queues,
                    owner,
                    metrics=metrics,
                )
            )
        if self.activity_runner is not None:
            activity_names = list(worker.activities)
            claim = QueuedClaims(
                lambda limit: backend.claim_activity_tasks(
                    activity_names, owner, lease, limit, queues
                ),
                None
                if limits is None
                else lambda queue, room: limits.admit_activity_tasks(
                    queue, activity_names, owner, lease, room
                ),
                queues,
            )
            self.pollers.append(
                Poller(
                    backend,
                    TaskKind.ACTIVITY,
                    activity_names,
                    self.activity_slots,
                    options.poll_interval,
                    claim,
                    self._run_activity_task,
                    queues,
                    metrics=metrics,
                )
            )
        self.tasks = [asyncio.create_task(poller.run()) for poller in self.pollers]
        self.tasks.append(asyncio.create_task(self.leases.run()))
        self.presence: Presence | None = None
        self.reporting: asyncio.Task[None] | None = None
        if isinstance(backend, WorkerPresence):
            self.presence = Presence(backend, worker_info(worker))
            self.reporting = asyncio.create_task(self.presence.run(), name="tapeflow-presence")
        self.retention: asyncio.Task[None] | None = None
        if options.retention is not None:
            collecting = Retention(backend, options.retention).run()
            self.retention = asyncio.create_task(collecting, name="tapeflow-retention")
        self.firing: asyncio.Task[None] | None = None
        if worker.workflows and isinstance(backend, Schedules):  # the schedules of its workflows
            firing = ScheduleFiring(backend, backend, list(worker.workflows), options.poll_interval)
            self.firing = asyncio.create_task(firing.run(), name="tapeflow-schedules")

    def _steps(self, worker: Worker) -> WorkflowSteps:
        options = self.options
        self.threads = WorkflowThreads(
            min(options.max_concurrent_workflow_tasks, WORKFLOW_THREADS),
            options.workflow_task_timeout.total_seconds(),
            options.max_abandoned_workflow_threads,
            on_abandoned=self._abandoned_changed,
        )
        capability = hand_offs(self.backend)
        taking = None
        if capability is not None:
            eager = bool(worker.activities) and options.eager_activities
            taking = Taking(
                capability,
                worker.lease_owner,
                options.lease_duration,
                self.activity_slots if eager else None,
                frozenset(worker.activities),
                self.workflow_slots if worker.activities else None,
                frozenset(worker.workflows),
                frozenset(worker.queues),
            )
        return WorkflowSteps(
            self.backend,
            worker.workflows,
            worker.cache,
            self.threads,
            options.workflow_task_timeout,
            options.lease_duration,
            taking,
        )

    def refusal(self) -> str | None:
        """Why this worker takes no workflow tasks now; None while it takes them."""
        threads = self.threads
        if threads is None or not threads.full:
            return None
        timeout = self.options.workflow_task_timeout.total_seconds()
        return (
            f"{threads.abandoned} threads are stuck in workflow code that ran past "
            f"{timeout:g}s without awaiting (max_abandoned_workflow_threads="
            f"{self.options.max_abandoned_workflow_threads}); workflow tasks are taken "
            "again once one returns"
        )

    def _abandoned_changed(self) -> None:
        """Each thread stuck in workflow code takes its share of the GIL: with too many
        stuck, this worker claims no workflow tasks until one returns."""
        reason = self.refusal()
        if (reason is not None) == self._held:
            return
        self._held = reason is not None
        if reason is not None:
            log.error("this worker takes no workflow tasks: %s", reason)
        else:
            log.warning("a stuck workflow thread returned: this worker takes workflow tasks again")
        self.workflow_slots.hold(self._held)

    async def _run_workflow_task(self, task: WorkflowTask) -> None:
        assert self.workflow_runner is not None
        with about(workflow_id=task.workflow_id, run=task.run_id):
            await self._leased(_workflow_ref(task), self.workflow_runner.run, task)

    async def _run_activity_task(self, task: ActivityTask) -> None:
        """As its workflow ends (a terminate, say) the lease is looked at at once: the
        attempt is told it no longer counts without waiting for the renewal."""
        runner = self.activity_runner
        assert runner is not None

        def ended_elsewhere() -> None:  # not the end this attempt's own outcome brought
            if runner.still_running(str(task.id)):
                self.leases.renew_now()

        watch = self.backend.watch([finished_topic(task.workflow_id)], ended_elsewhere)
        fields = {"activity": task.name, "attempt": task.attempt}
        with watch, about(workflow_id=task.workflow_id, run=task.run_id, **fields):
            await self._leased(_activity_ref(task), runner.run, task)

    async def _leased(
        self,
        ref: LeaseRef,
        run: Callable[[Any, HandOver], Awaitable[None]],
        task: Any,
    ) -> None:
        """Run a task with its lease renewed while it runs, then start what its writes
        handed over to this worker.

        Only Exceptions are caught: the runners turn whatever user code raises, SystemExit
        included, into a failed task or attempt where they call it, so a BaseException
        here is the worker's own cancellation or a real interrupt, which must go on."""
        hand = HandOver()
        self.leases.hold(ref)
        try:
            await run(task, hand)
        except BackendUnavailable as exc:  # its lease runs out; another attempt follows
            log.warning(
                "%s task %s left while the backend is unavailable: %s", ref.kind, ref.id, exc
            )
        except Exception:
            log.exception("unexpected error running %s", ref)
        finally:
            self.leases.release(ref)
            self.workflow_slots.adopt(
                [self._run_workflow_task(t) for t in hand.workflow_tasks], hand.workflow_slots
            )
            self.activity_slots.adopt(
                [self._run_activity_task(t) for t in hand.activity_tasks], hand.activity_slots
            )

    async def stop(self, grace: float) -> None:
        for loop in (self.firing, self.retention):  # each write is a transaction: whole, or undone
            if loop is not None:
                loop.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loop
        for poller in self.pollers:
            poller.stop()
        *polling, leases = self.tasks
        await asyncio.gather(*polling, return_exceptions=True)
        await asyncio.gather(*(poller.drain(grace) for poller in self.pollers))
        leases.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await leases
        if self.reporting is not None and self.presence is not None:
            self.reporting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reporting
            await self.presence.stop()
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
        if self.threads is not None:
            self.threads.close()
        if self.serving is not None:
            await self.serving.stop()


def _workflow_ref(task: WorkflowTask) -> LeaseRef:
    return LeaseRef(TaskKind.WORKFLOW, task.run_id, task.lease_token)


def _activity_ref(task: ActivityTask) -> LeaseRef:
    return LeaseRef(TaskKind.ACTIVITY, str(task.id), task.lease_token)
