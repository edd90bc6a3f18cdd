"""A Worker runs the workflows and activities it is given, claiming only their tasks.

It may hold only workflows (a workflow worker), only activities (an activity worker), or
both. Many workers, in many processes, may share one backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from tapeflow._definition import Definition, definition_of
from tapeflow._validate import fail
from tapeflow._worker.activity_tasks import ActivityTaskRunner
from tapeflow._worker.cache import WorkflowCache
from tapeflow._worker.eager import EagerDispatch, ResumeDispatch
from tapeflow._worker.leases import LeaseKeeper
from tapeflow._worker.poller import Poller
from tapeflow._worker.process_pool import ProcessPool
from tapeflow._worker.thread_pool import ActivityThreadPool
from tapeflow._worker.workflow_tasks import WorkflowTaskRunner
from tapeflow.backends.base import ActivityTask, Backend, LeaseRef, TaskKind, WorkflowTask
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
        self._leases = LeaseKeeper(backend, self.options.lease_duration)
        self._pollers: list[Poller[Any]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._executor: Executor | None = None
        self._workflow_runner: WorkflowTaskRunner | None = None
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
        if self._tasks:
            raise InvalidArgument("this worker is already running")
        self._stopped.clear()
        workflow_side = self._workflow_side() if self.workflows else None
        activity_side = self._activity_side() if self.activities else None
        if workflow_side and activity_side and self.options.eager_activities:
            self._hand_off_eagerly(*workflow_side, *activity_side)
        self._tasks = [asyncio.create_task(poller.run()) for poller in self._pollers]
        self._tasks.append(asyncio.create_task(self._leases.run()))
        log.info(
            "worker %s started: workflows %s, activities %s",
            self.name,
            sorted(self.workflows),
            sorted(self.activities),
        )

    def _workflow_side(self) -> tuple[WorkflowTaskRunner, Poller[WorkflowTask]]:
        options = self.options
        runner = WorkflowTaskRunner(
            self.backend,
            self.workflows,
            self.cache,
            options.lease_duration,
            options.workflow_task_timeout,
            options.max_concurrent_workflow_tasks,
            options.max_abandoned_workflow_threads,
        )
        self._workflow_runner = runner
        poller = Poller(
            self.backend,
            TaskKind.WORKFLOW,
            list(self.workflows),
            options.max_concurrent_workflow_tasks,
            options.poll_interval,
            self._claim_workflow_tasks,
            self._leased(runner.run, _workflow_ref),
            self.lease_owner,
        )
        runner.poller = poller
        self._pollers.append(poller)
        return runner, poller

    def _activity_side(self) -> tuple[ActivityTaskRunner, Poller[ActivityTask]]:
        options = self.options
        self._executor = (
            ProcessPool(options.max_concurrent_activities)
            if options.activity_executor == "process"
            else ActivityThreadPool(options.max_concurrent_activities)
        )
        runner = ActivityTaskRunner(
            self.backend,
            self.activities,
            options.retry_policy,
            self._executor,
            options.lease_duration,
        )
        self._leases = LeaseKeeper(self.backend, options.lease_duration, runner.take_heartbeats)
        poller = Poller(
            self.backend,
            TaskKind.ACTIVITY,
            list(self.activities),
            options.max_concurrent_activities,
            options.poll_interval,
            self._claim_activity_tasks,
            self._leased(runner.run, _activity_ref),
        )
        self._pollers.append(poller)
        return runner, poller

    def _hand_off_eagerly(
        self,
        workflow_runner: WorkflowTaskRunner,
        workflow_poller: Poller[WorkflowTask],
        activity_runner: ActivityTaskRunner,
        activity_poller: Poller[ActivityTask],
    ) -> None:
        """Both sides here: activities start straight from the commit that scheduled them,
        and workflows go on straight from their activity's completion."""
        lease = self.options.lease_duration
        workflow_runner.eager = EagerDispatch(
            frozenset(self.activities), activity_poller, self.lease_owner, lease
        )
        activity_runner.resume = ResumeDispatch(
            frozenset(self.workflows),
            workflow_poller,
            self.lease_owner,
            lease,
            workflow_runner.continue_after,
        )

    async def stop(self) -> None:
        """Stop claiming, let running tasks finish (up to the grace period), then return.

        Tasks still running after the grace period are cancelled, and the leases of their
        activities released, so another worker retries those attempts at once. A sync
        activity stuck in its thread is left to it (Python cannot stop a thread): it does not
        keep the process from exiting, but it runs on until then; one in the process pool is
        killed with its child process.
        """
        if not self._tasks:
            return
        for poller in self._pollers:
            poller.stop()
        *polling, leases = self._tasks
        await asyncio.gather(*polling, return_exceptions=True)
        grace = self.options.shutdown_grace.total_seconds()
        await asyncio.gather(*(poller.drain(grace) for poller in self._pollers))
        leases.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await leases
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        if self._workflow_runner is not None:
            self._workflow_runner.close()
            self._workflow_runner = None
        self.cache.clear()
        self._pollers, self._tasks = [], []
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
        runner = self._workflow_runner
        if not self.workflows:
            return WorkerHealth(False, 0, "this worker runs no workflows")
        if runner is None:
            return WorkerHealth(False, 0, "this worker is not running")
        reason = runner.refusal
        return WorkerHealth(reason is None, runner.abandoned_threads, reason)

    # -- plumbing --------------------------------------------------------------------------

    async def _claim_workflow_tasks(self, limit: int) -> list[WorkflowTask]:
        return await self.backend.claim_workflow_tasks(
            list(self.workflows), self.lease_owner, self.options.lease_duration, limit
        )

    async def _claim_activity_tasks(self, limit: int) -> list[ActivityTask]:
        return await self.backend.claim_activity_tasks(
            list(self.activities), self.lease_owner, self.options.lease_duration, limit
        )

    def _leased(
        self, run: Callable[[Any], Any], ref_of: Callable[[Any], LeaseRef]
    ) -> Callable[[Any], Any]:
        """Wrap a task runner so the task's lease is renewed while it runs.

        Only Exceptions are caught: the runners turn whatever user code raises, SystemExit
        included, into a failed task or attempt where they call it, so a BaseException
        here is the worker's own cancellation or a real interrupt, which must go on."""

        async def run_leased(task: Any) -> None:
            ref = ref_of(task)
            self._leases.hold(ref)
            try:
                await run(task)
            except BackendUnavailable as exc:  # its lease runs out; another attempt follows
                log.warning(
                    "%s task %s left while the backend is unavailable: %s", ref.kind, ref.id, exc
                )
            except Exception:
                log.exception("unexpected error running %s", ref)
            finally:
                self._leases.release(ref)

        return run_leased


def _workflow_ref(task: WorkflowTask) -> LeaseRef:
    return LeaseRef(TaskKind.WORKFLOW, task.workflow_id, task.lease_token)


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
