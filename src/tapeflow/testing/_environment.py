"""``WorkflowEnvironment``: a database in memory, a worker and a client, on virtual time.

How the clock moves, and why so, is in ``tapeflow.testing._skipping``.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar

from tapeflow._validate import check_moment, check_seconds, check_timedelta, fail
from tapeflow.backends.base import Backend
from tapeflow.backends.clock import wall_clock
from tapeflow.backends.sqlite import SQLiteBackend
from tapeflow.client import Client, WorkflowHandle
from tapeflow.errors import InvalidArgument
from tapeflow.options import MAX_RETENTION, WorkerOptions
from tapeflow.testing._fakes import with_fakes
from tapeflow.testing._skipping import TimeSkipper, VirtualClock
from tapeflow.worker import Worker

R = TypeVar("R")

MAX_SLEEP = MAX_RETENTION
"""The longest ``sleep``: a century, which every backend time can hold."""


class _Stage(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


class WorkflowEnvironment:
    """A test's own tapeflow: SQLite in memory, a worker running ``workflows`` and
    ``activities``, and ``client``, all on a virtual clock.

    Use it as ``async with WorkflowEnvironment(workflows=[...], activities=[...]) as env``.
    Time stands still unless moved: ``env.sleep(duration)`` moves it by hand, and while the
    test awaits a workflow's result (or an update's answer) through ``env.client``, it
    jumps to each next due time (a timer, a retry, a delayed start, an execution timeout,
    a schedule's firing) as soon as nothing is running, so a month of timers passes in
    milliseconds.

    ``fakes`` maps activity names to functions run in their place: called with the
    arguments the real activity would get (decoded by its annotations), their result
    encoded as its result would be. ``start_time`` (tz-aware) is where the clock starts:
    by default, the wall clock's time. ``worker_options`` are the worker's.
    """

    def __init__(
        self,
        *,
        workflows: Iterable[Callable[..., Any]] = (),
        activities: Iterable[Callable[..., Any]] = (),
        fakes: Mapping[str, Callable[..., Any]] | None = None,
        start_time: datetime | None = None,
        worker_options: WorkerOptions | None = None,
    ) -> None:
        start = wall_clock() if start_time is None else check_moment(start_time, "start_time")
        options = worker_options or WorkerOptions()
        if not isinstance(options, WorkerOptions):
            fail("worker_options", worker_options, "a WorkerOptions or None")
        if fakes and options.activity_executor == "process":
            raise InvalidArgument(
                "fakes run in the worker's own process: they cannot go with "
                "activity_executor='process'"
            )
        self._clock = VirtualClock(start)
        self.backend = SQLiteBackend(":memory:", clock=self._clock)
        """Its database, in memory: gone with the environment."""
        self.worker = Worker(
            self.backend,
            workflows=workflows,
            activities=with_fakes(activities, fakes or {}),
            options=options,
        )
        self._skipper = TimeSkipper(
            self.backend,
            self._clock,
            list(self.worker.workflows),
            list(self.worker.activities),
            self.worker.queues,
        )
        self.client: Client = _Client(self.backend, self._skipper)
        """Its handles' ``result()`` and ``execute_update()`` let time move while they wait."""
        self._stage = _Stage.NEW
        self._parts = contextlib.AsyncExitStack()
        """What ``__aenter__`` started, stopped by ``__aexit__``."""

    def now(self) -> datetime:
        """The environment's time: the backend's, the workflows' and the worker's."""
        return self._clock()

    async def sleep(self, duration: timedelta | float) -> None:
        """Move time on by ``duration`` (a timedelta, or seconds), through each due time on
        the way in order: a timer due by then fires at its own time, and what it starts is
        run then. Waits first for what is running (an activity runs in real time)."""
        if isinstance(duration, timedelta):
            span = check_timedelta(duration, "sleep duration", maximum=MAX_SLEEP)
        else:
            span = timedelta(seconds=check_seconds(duration, "sleep duration"))
            check_timedelta(span, "sleep duration", maximum=MAX_SLEEP)
        if self._stage is not _Stage.RUNNING:
            raise InvalidArgument(
                f"this environment is {self._stage.value}: sleep inside "
                "'async with WorkflowEnvironment(...) as env'"
            )
        await self._skipper.sleep(span)

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._stage is not _Stage.NEW:
            raise InvalidArgument("a WorkflowEnvironment runs once: make a new one")
        self._stage = _Stage.RUNNING
        async with contextlib.AsyncExitStack() as parts:  # closed in reverse, each one
            parts.callback(setattr, self, "_stage", _Stage.CLOSED)
            await self.backend.open()
            parts.push_async_callback(self.backend.close)
            await self.worker.start()
            parts.push_async_callback(self.worker.stop)
            self._skipper.start()
            parts.push_async_callback(self._skipper.stop)
            self._parts = parts.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._parts.aclose()


class _Client(Client):
    def __init__(self, backend: SQLiteBackend, skipper: TimeSkipper) -> None:
        super().__init__(backend)
        self._skipper = skipper

    def _handle(
        self, workflow_id: str, result_type: object, run_id: str | None = None
    ) -> WorkflowHandle[Any]:
        handle: _Handle[Any] = _Handle(
            self._skipper, self.backend, workflow_id, result_type, run_id
        )
        handle._tracing = self._tracing
        return handle


class _Handle(WorkflowHandle[R]):
    """A handle whose waits for the workflow let the environment's time move."""

    def __init__(
        self,
        skipper: TimeSkipper,
        backend: Backend,
        workflow_id: str,
        result_type: object,
        run_id: str | None,
    ) -> None:
        super().__init__(backend, workflow_id, result_type, run_id)
        self._skipper = skipper

    async def result(self, *, timeout: timedelta | float | None = None) -> R:
        with self._skipper.awaited(self.id):
            return await super().result(timeout=timeout)

    async def execute_update(
        self,
        name: str,
        *args: Any,
        update_id: str | None = None,
        result_type: object = Any,
        timeout: timedelta | float | None = None,
    ) -> Any:
        with self._skipper.awaited(self.id):
            return await super().execute_update(
                name, *args, update_id=update_id, result_type=result_type, timeout=timeout
            )
