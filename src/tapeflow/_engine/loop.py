"""A deterministic asyncio event loop: workflow code runs on it, one activation at a time.

It reuses asyncio's own Task and Future, so ``gather``, ``wait``, ``TaskGroup``, ``Event``,
``Queue`` and ``timeout`` behave as usual. Only scheduling is ours: ready callbacks run in
FIFO order until none is left, ``time()`` is the workflow's time from history, and every
``call_at`` / ``call_later`` becomes a durable timer through the ``TimerSink``.

Closing the loop (the instance is evicted, or a replay is done with it) ends the coroutine
of every pending task at once, where it waits, instead of leaving them to the garbage
collector, which would run their ``finally`` blocks later, anywhere, outside the workflow.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
import threading
from asyncio import events
from collections import deque
from collections.abc import Callable, Coroutine, Generator, Iterator
from typing import Any, Protocol, TypeVar

from tapeflow.errors import InvalidArgument, WorkflowSandboxError

_T = TypeVar("_T")

MAX_STEPS_PER_ACTIVATION = 1_000_000
"""A workflow that runs this many callbacks without waiting for anything is spinning."""

END_ATTEMPTS = 100
"""How many times a closed loop throws GeneratorExit into a coroutine that keeps awaiting."""


class LoopClosed(GeneratorExit):
    """What workflow calls raise on a closed loop: its coroutines are being ended, not run.

    It is a GeneratorExit, the exception that ending a coroutine throws into it, so a
    ``finally`` (or an ``except BaseException``) that makes a workflow call during the ending
    stops there, and ``coroutine.close()`` takes it as the coroutine ending: nothing is
    scheduled or recorded, and nothing is printed."""


class TimerSink(Protocol):
    """Receives the loop's timers; the engine turns them into durable timer decisions."""

    def start_timer(self, handle: asyncio.TimerHandle) -> None: ...

    def cancel_timer(self, handle: asyncio.TimerHandle) -> None: ...


class WorkflowEventLoop(asyncio.AbstractEventLoop):
    def __init__(self, timers: TimerSink, runtime: object) -> None:
        self._ready: deque[asyncio.Handle] = deque()
        self._timers = timers
        self._now = 0.0
        self._running = False
        self._closed = False
        self._tasks: dict[asyncio.Task[Any], None] = {}
        """The tasks not yet done, oldest first: what closing must end."""
        self._lock = threading.Lock()
        """Held while callbacks or endings run: a loop closed from another thread (a worker
        giving up on an activation stuck past its timeout) is ended by the thread running it,
        once it returns."""
        self.runtime = runtime
        """The workflow instance this loop runs; the in-workflow API finds it here."""
        self.violation: WorkflowSandboxError | None = None
        """The first forbidden call, kept even if the workflow code catches the error."""

    # -- what asyncio's tasks and futures need ---------------------------------------------

    def time(self) -> float:
        return self._now

    def set_time(self, now: float) -> None:
        self._now = now

    def call_soon(  # type: ignore[override]
        self,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        handle = asyncio.Handle(callback, args, self, context)
        if not self._closed:  # a closed loop runs nothing: futures settled while ending
            self._ready.append(handle)
        return handle

    def call_later(  # type: ignore[override]
        self,
        delay: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        return self.call_at(self._now + delay, callback, *args, context=context)

    def call_at(  # type: ignore[override]
        self,
        when: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        self.check_open()
        if math.isnan(when):
            raise InvalidArgument("a workflow timer cannot be due at NaN")
        handle = asyncio.TimerHandle(when, callback, args, self, context)
        if math.isinf(when):  # never due: nothing to record, nothing will fire
            return handle
        if when <= self._now:  # already due: no durable timer needed, and none recorded
            self._ready.append(handle)
        else:
            self._timers.start_timer(handle)
        return handle

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        if not self._closed:  # say, ``asyncio.timeout`` left while its coroutine is ended
            self._timers.cancel_timer(handle)

    def fire(self, handle: asyncio.Handle) -> None:
        """Run a due timer's callback in this activation."""
        if not handle.cancelled():
            self._ready.append(handle)

    def create_future(self) -> asyncio.Future[Any]:
        self.check_open()
        return asyncio.Future(loop=self)

    def create_task(
        self,
        coro: Coroutine[Any, Any, _T] | Generator[Any, None, _T],
        *,
        name: str | None = None,
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[_T]:
        if self._closed:
            coro.close()  # never to run: closed, so that it is not reported as never awaited
            self.check_open()
        task = asyncio.Task(coro, loop=self, name=name, context=context)
        self._tasks[task] = None
        task.add_done_callback(self._forget)
        return task

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self._tasks.pop(task, None)

    def run_until_quiet(self) -> None:
        """Run ready callbacks until every task waits on something from outside."""
        try:
            with self._lock, self._running_here():
                steps = 0
                while self._ready and not self._closed:
                    handle = self._ready.popleft()
                    if not handle.cancelled():
                        handle._run()
                    steps += 1
                    if steps > MAX_STEPS_PER_ACTIVATION:
                        raise WorkflowSandboxError(
                            "the workflow ran a million steps without waiting for anything; "
                            "is it spinning on asyncio.sleep(0)?"
                        )
        finally:
            if self._closed:  # closed from another thread meanwhile: its tasks end here
                self._end_tasks()

    @contextlib.contextmanager
    def _running_here(self) -> Iterator[None]:
        """This loop as the thread's running loop, so that code run now finds its workflow
        (and ``asyncio`` its loop) instead of the worker's own event loop."""
        previous = events._get_running_loop()
        events._set_running_loop(self)
        self._running = True
        try:
            yield
        finally:
            self._running = False
            events._set_running_loop(previous)

    def check_open(self) -> None:
        """Raise LoopClosed if the loop is closed: a workflow call made while it ends."""
        if self._closed:
            raise LoopClosed(
                "this workflow instance is closed (evicted, or its replay is over): its code "
                "is being ended, and workflow calls do nothing"
            )

    def refuse(self, message: str) -> WorkflowSandboxError:
        """The error for a forbidden call, kept as the first ``violation`` if none is yet."""
        error = WorkflowSandboxError(message)
        self.violation = self.violation or error
        return error

    def get_debug(self) -> bool:
        return False

    def is_running(self) -> bool:
        return self._running

    def is_closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """End every pending task's coroutine, newest first, with no callback run again.

        Each coroutine gets GeneratorExit where it waits, as the garbage collector would give
        it, but now, on this loop: its ``finally`` blocks run while workflow calls raise
        LoopClosed, timers record nothing and no future wakes anything."""
        self._closed = True
        self._end_tasks()

    def _end_tasks(self) -> None:
        if not self._lock.acquire(blocking=False):
            return  # the loop runs on another thread: run_until_quiet ends them on return
        try:
            self._ready.clear()
            with self._running_here():
                while self._tasks:
                    task, _ = self._tasks.popitem()
                    _end(task.get_coro())
        finally:
            self._lock.release()

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        """Swallowed: failures that matter reach the workflow's own result instead.

        What lands here is an exception nobody awaited inside the workflow, or a task of a
        closed loop destroyed while pending (its coroutine was ended, the task never is).
        """

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        self.call_exception_handler(context)


def _end(coroutine: Coroutine[Any, Any, Any] | Generator[Any, None, Any]) -> None:
    """Close ``coroutine``; again while it catches GeneratorExit and awaits once more."""
    for _ in range(END_ATTEMPTS):
        try:
            coroutine.close()
            return
        except Exception:  # what its finally raised (it is over: the next close is a no-op),
            continue  # or RuntimeError: it awaited again (where the next close throws)


def _forbidden(name: str) -> Callable[..., Any]:
    def refuse(self: WorkflowEventLoop, *args: Any, **kwargs: Any) -> Any:
        raise self.refuse(
            f"loop.{name}() is not allowed in a workflow: it would not replay the same way. "
            "Put I/O, threads and subprocesses in an activity."
        )

    refuse.__name__ = name
    return refuse


for _name in (
    "run_in_executor",
    "getaddrinfo",
    "getnameinfo",
    "create_connection",
    "create_server",
    "create_unix_connection",
    "create_unix_server",
    "create_datagram_endpoint",
    "connect_read_pipe",
    "connect_write_pipe",
    "subprocess_exec",
    "subprocess_shell",
    "add_reader",
    "add_writer",
    "sock_recv",
    "sock_sendall",
    "sock_connect",
    "sock_accept",
    "add_signal_handler",
    "run_forever",
    "run_until_complete",
):
    setattr(WorkflowEventLoop, _name, _forbidden(_name))
