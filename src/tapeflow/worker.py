"""A Worker runs the workflows and activities it is given, claiming only their tasks.

It may hold only workflows (a workflow worker), only activities (an activity worker), or
both. Many workers, in many processes, may share one backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import signal
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from tapeflow._definition import Definition, definition_of
from tapeflow._validate import fail
from tapeflow._worker.activity_tasks import ActivityTaskRunner
from tapeflow._worker.cache import WorkflowCache
from tapeflow._worker.leases import LeaseKeeper
from tapeflow._worker.poller import Poller
from tapeflow._worker.process_pool import ProcessPool
from tapeflow._worker.slots import Slots
from tapeflow._worker.thread_pool import ActivityThreadPool
from tapeflow._worker.workflow_steps import HandOver, Taking, WorkflowSteps
from tapeflow._worker.workflow_tasks import WorkflowTaskRunner
from tapeflow._worker.workflow_threads import WORKFLOW_THREADS, WorkflowThreads
from tapeflow.backends.base import (
    ActivityTask,
    Backend,
    LeaseRef,
    TaskKind,
    WorkflowTask,
    hand_offs,
)
from tapeflow.errors import BackendUnavailable, InvalidArgument
from tapeflow.options import WorkerOptions

log = logging.getLogger("tapeflow.worker")


@dataclass(frozen=True)
class WorkerHealth:
    """A worker's state as a probe sees it: what user code has done to it, not the backend."""

    accepting_workflow_tasks: bool
    """False while stopped, without workflows, or with too many threads stuck in workflow
    code (``WorkerOptions.max_abandoned_workflow_threads``)."""
    abandoned_threads: int
    """Threads still stuck in workflow code that ran past ``workflow_task_timeout``."""
    reason: str | None
    """Why workflow tasks are not taken; None while they are."""


class Worker:
    """Runs workflow and activity tasks from ``backend``.

    Options come as ``options=WorkerOptions(...)``, or as keywords naming its fields
    (``Worker(backend, workflows=[wf], lease_duration=timedelta(seconds=30))``).
    """

    def __init__(
        self,
        backend: Backend,
        *,
        workflows: Iterable[Callable[..., Any]] = (),
        activities: Iterable[Callable[..., Any]] = (),
        options: WorkerOptions | None = None,
        **option_fields: Any,
    ) -> None:
        if options is not None and not isinstance(options, WorkerOptions):
            fail("Worker options", options, "a WorkerOptions or None")
        try:
            self.options = dataclasses.replace(options or WorkerOptions(), **option_fields)
        except TypeError as exc:
            known = ", ".join(f.name for f in dataclasses.fields(WorkerOptions))
            raise InvalidArgument(f"unknown worker option ({exc}); known: {known}") from None
        self.backend = backend
        self.workflows = _by_name(workflows, "workflow")
        self.activities = _by_name(activities, "activity")
        if not self.workflows and not self.activities:
            raise InvalidArgument("a worker needs at least one workflow or activity")
        self.name = self.options.name or f"{socket.gethostname()}:{os.getpid()}"
        self.lease_owner = f"{self.name}/{uuid.uuid4().hex[:8]}"
        """Who holds this worker's leases: unique even when several workers share a name."""
        self.cache = WorkflowCache(self.options.workflow_cache_size)
        self._running: _Running | None = None
        self._stopped = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        if self._running is not None:
            raise InvalidArgument("this worker is already running")
        self._stopped.clear()
        self._running = _Running(self)
        log.info(
            "worker %s started: workflows %s, activities %s",
            self.name,
            sorted(self.workflows),
            sorted(self.activities),
        )

    async def stop(self) -> None:
        """Stop claiming, let running tasks finish (up to the grace period), then return.

        Tasks still running after the grace period are cancelled, and the leases of their
        activities released, so another worker retries those attempts at once. A sync
        activity stuck in its thread is left to it (Python cannot stop a thread): it does not
        keep the process from exiting, but it runs on until then; one in the process pool is
        killed with its child process.
        """
        running, self._running = self._running, None
        if running is None:
            return
        await running.stop(self.options.shutdown_grace.total_seconds())
        self.cache.clear()
        self._stopped.set()
        log.info("worker %s stopped", self.name)

    async def run(self) -> None:
        """Run until SIGINT or SIGTERM (or ``stop()``), then stop cleanly."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
                installed.append(sig)
        try:
            await self.start()
            stopped = asyncio.ensure_future(self._stopped.wait())
            await asyncio.wait(
                {asyncio.ensure_future(stop.wait()), stopped},
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            await self.stop()

    def health(self) -> WorkerHealth:
        """Whether this worker takes workflow tasks now, for a liveness or readiness probe."""
        if not self.workflows:
            return WorkerHealth(False, 0, "this worker runs no workflows")
        if self._running is None or self._running.threads is None:
            return WorkerHealth(False, 0, "this worker is not running")
        threads = self._running.threads
        reason = self._running.refusal()
        return WorkerHealth(reason is None, threads.abandoned, reason)


class _Running:
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
        steps = self._steps(worker) if worker.workflows else None
        self.workflow_runner = (
            WorkflowTaskRunner(backend, steps, worker.cache, options.lease_duration)
            if steps is not None
            else None
        )
        self.activity_runner: ActivityTaskRunner | None = None
        if worker.activities:
            self.executor = (
                ProcessPool(options.max_concurrent_activities)
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
            )
        runner = self.activity_runner
        self.leases = LeaseKeeper(
            backend, options.lease_duration, runner.take_heartbeats if runner else dict
        )
        owner, lease = worker.lease_owner, options.lease_duration
        self.pollers: list[Poller[Any]] = []
        if self.workflow_runner is not None:
            names = list(worker.workflows)
            claim_workflows = functools.partial(backend.claim_workflow_tasks, names, owner, lease)
            self.pollers.append(
                Poller(
                    backend,
                    TaskKind.WORKFLOW,
                    names,
                    self.workflow_slots,
                    options.poll_interval,
                    claim_workflows,
                    self._run_workflow_task,
                    owner,
                )
            )
        if self.activity_runner is not None:
            names = list(worker.activities)
            claim = functools.partial(backend.claim_activity_tasks, names, owner, lease)
            self.pollers.append(
                Poller(
                    backend,
                    TaskKind.ACTIVITY,
                    names,
                    self.activity_slots,
                    options.poll_interval,
                    claim,
                    self._run_activity_task,
                )
            )
        self.tasks = [asyncio.create_task(poller.run()) for poller in self.pollers]
        self.tasks.append(asyncio.create_task(self.leases.run()))

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
        await self._leased(_workflow_ref(task), self.workflow_runner.run, task)

    async def _run_activity_task(self, task: ActivityTask) -> None:
        assert self.activity_runner is not None
        await self._leased(_activity_ref(task), self.activity_runner.run, task)

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
        for poller in self.pollers:
            poller.stop()
        *polling, leases = self.tasks
        await asyncio.gather(*polling, return_exceptions=True)
        await asyncio.gather(*(poller.drain(grace) for poller in self.pollers))
        leases.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await leases
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
        if self.threads is not None:
            self.threads.close()


def _workflow_ref(task: WorkflowTask) -> LeaseRef:
    return LeaseRef(TaskKind.WORKFLOW, task.run_id, task.lease_token)


def _activity_ref(task: ActivityTask) -> LeaseRef:
    return LeaseRef(TaskKind.ACTIVITY, str(task.id), task.lease_token)


def _by_name(functions: Iterable[Callable[..., Any]], kind: Any) -> dict[str, Definition]:
    found: dict[str, Definition] = {}
    for function in functions:
        definition = definition_of(function, kind)
        if definition.method:
            raise InvalidArgument(
                f"{definition.function.__qualname__} is a method: give the worker the method "
                "of an object (activities=[service.charge]), which it is called on"
            )
        definition.signature.check()
        # != and not `is not`: each `service.charge` is a new bound method, equal to the last
        if definition.name in found and found[definition.name].function != definition.function:
            raise InvalidArgument(f"two different {kind} functions are named {definition.name!r}")
        found[definition.name] = definition
    return found
