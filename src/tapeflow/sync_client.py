"""``tapeflow.Client`` for code without an event loop: Django and Flask views, scripts.

Each method is the async client's own, run on an event loop the ``SyncClient`` keeps in a
thread of its own, where its backend lives; the caller's thread blocks until it returns.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Concatenate, ParamSpec, Self, TypeVar

from tapeflow._blocking import Blocking, LoopThread, blocking, giving, not_blocking
from tapeflow.backends.connect import connect
from tapeflow.client import Client, WorkflowHandle
from tapeflow.schedules import ScheduleHandle

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S")


def _handles(
    method: Callable[Concatenate[Blocking[S], P], WorkflowHandle[R]],
) -> Callable[Concatenate[Blocking[S], P], SyncWorkflowHandle[R]]:
    """``method``, its ``WorkflowHandle`` given as a ``SyncWorkflowHandle``: typed here so
    that the overloads of ``start_workflow`` and ``get_handle`` keep their result types."""
    return giving(_workflow_handle, method)


def _workflow_handle(loop: LoopThread, handle: WorkflowHandle[R]) -> SyncWorkflowHandle[R]:
    return SyncWorkflowHandle(loop, handle)


def _workflow_handle_or_none(
    loop: LoopThread, handle: WorkflowHandle[R] | None
) -> SyncWorkflowHandle[R] | None:
    return None if handle is None else SyncWorkflowHandle(loop, handle)


class SyncWorkflowHandle(Blocking[WorkflowHandle[R]]):
    """A ``WorkflowHandle`` whose methods block: given by a ``SyncClient``."""

    def __init__(self, loop: LoopThread, handle: WorkflowHandle[R]) -> None:
        self._loop = loop
        self._inner = handle

    def __repr__(self) -> str:
        return f"SyncWorkflowHandle({self.id!r})"

    @property
    def id(self) -> str:
        return self._inner.id

    @property
    def run_id(self) -> str | None:
        """The run this handle started (or found), as ``WorkflowHandle.run_id``."""
        return self._inner.run_id

    describe = blocking(WorkflowHandle.describe)
    history = blocking(WorkflowHandle.history)
    result = blocking(WorkflowHandle.result)
    execute_update = blocking(WorkflowHandle.execute_update)
    start_update = blocking(WorkflowHandle.start_update)
    send_event = blocking(WorkflowHandle.send_event)
    cancel = blocking(WorkflowHandle.cancel)
    terminate = blocking(WorkflowHandle.terminate)
    delete = blocking(WorkflowHandle.delete)
    reset = _handles(blocking(WorkflowHandle.reset))


class SyncScheduleHandle(Blocking[ScheduleHandle]):
    """A ``ScheduleHandle`` whose methods block: given by a ``SyncClient``. It checks that
    its schedule exists when used (``describe()``), not when made: there is no ``await``."""

    def __init__(self, loop: LoopThread, handle: ScheduleHandle) -> None:
        self._loop = loop
        self._inner = handle

    def __repr__(self) -> str:
        return f"SyncScheduleHandle({self.id!r})"

    @property
    def id(self) -> str:
        return self._inner.id

    describe = blocking(ScheduleHandle.describe)
    pause = blocking(ScheduleHandle.pause)
    unpause = blocking(ScheduleHandle.unpause)
    trigger = giving(_workflow_handle_or_none, blocking(ScheduleHandle.trigger))
    update = blocking(ScheduleHandle.update)
    delete = blocking(ScheduleHandle.delete)


class SyncClient(Blocking[Client]):
    """``tapeflow.Client`` with blocking methods, for code that runs no event loop: one
    per process, shared by all its threads (a web server's request threads).

    ``SyncClient(url)`` opens the backend at ``url`` as ``tapeflow.connect(url)`` does (the
    same default, the same errors), on an event loop of its own in a daemon thread; each
    method runs the async client's there. Use it as a context manager, or call ``close()``
    (one never closed is closed when collected; its thread does not keep a process from
    exiting). Open it after a fork (in each web server worker process, not before they
    fork): its thread stays behind.

    A method called in a thread that runs an event loop raises RuntimeError, since blocking
    would stop that loop: async code uses ``tapeflow.Client`` (or calls this one in
    ``asyncio.to_thread``). A KeyboardInterrupt in a blocked call cancels what it ran."""

    def __init__(self, url: str | None = None) -> None:
        connection = connect(url)
        self._loop = LoopThread(connection, name="tapeflow-sync-client")
        self._inner = Client(connection.backend)

    def __repr__(self) -> str:
        return f"SyncClient({self._inner.backend!r})"

    def close(self) -> None:
        """Cancel the calls other threads wait on (they raise RuntimeError), close the
        backend and stop the thread; any call after raises RuntimeError. Closing again
        does nothing."""
        self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    start_workflow = _handles(blocking(Client.start_workflow))
    get_handle = _handles(not_blocking(Client.get_handle))
    send_event = blocking(Client.send_event)
    describe = blocking(Client.describe)
    delete_closed = blocking(Client.delete_closed)
    list_workflows = blocking(Client.list_workflows)
    count_workflows = blocking(Client.count_workflows)
    create_schedule = giving(SyncScheduleHandle, blocking(Client.create_schedule))
    get_schedule = giving(SyncScheduleHandle, not_blocking(Client.get_schedule))
    list_schedules = blocking(Client.list_schedules)
