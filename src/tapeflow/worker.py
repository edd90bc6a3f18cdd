"""A Worker runs the workflows and activities it is given, claiming only their tasks.

It may hold only workflows (a workflow worker), only activities (an activity worker), or
both. Many workers, in many processes, may share one backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from tapeflow._definition import Definition, definition_of
from tapeflow._validate import fail
from tapeflow._worker.cache import WorkflowCache
from tapeflow._worker.log_context import worker_logger
from tapeflow._worker.running import Running
from tapeflow.backends.base import Backend
from tapeflow.backends.queue_limits import QueueLimits, declare
from tapeflow.errors import InvalidArgument
from tapeflow.options import WorkerOptions
from tapeflow.queues import Queue, queue_name

log = worker_logger()


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
        self.queues = [queue_name(queue) for queue in self.options.queues]
        """The names of the queues it serves."""
        self._declared = [q for q in self.options.queues if isinstance(q, Queue)]
        if any(q.limited for q in self._declared) and not isinstance(backend, QueueLimits):
            raise InvalidArgument(f"{backend!r} has no queue limits (QueueLimits)")
        self.name = self.options.name or f"{socket.gethostname()}:{os.getpid()}"
        self.lease_owner = f"{self.name}/{uuid.uuid4().hex[:8]}"
        """Who holds this worker's leases: unique even when several workers share a name."""
        self.cache = WorkflowCache(self.options.workflow_cache_size)
        self._running: Running | None = None
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
        await declare(self.backend, self._declared)
        self._running = Running(self)
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
