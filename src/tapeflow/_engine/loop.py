"""A deterministic asyncio event loop: workflow code runs on it, one activation at a time.

It reuses asyncio's own Task and Future, so ``gather``, ``wait``, ``TaskGroup``, ``Event``,
``Queue`` and ``timeout`` behave as usual. Only scheduling is ours: ready callbacks run in
FIFO order until none is left, ``time()`` is the workflow's time from history, and every
``call_at`` / ``call_later`` becomes a durable timer through the ``TimerSink``.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
from asyncio import events
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from typing import Any, Protocol, TypeVar

from tapeflow.errors import InvalidArgument, WorkflowSandboxError

_T = TypeVar("_T")

MAX_STEPS_PER_ACTIVATION = 1_000_000
"""A workflow that runs this many callbacks without waiting for anything is spinning."""


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
        self._timers.cancel_timer(handle)

    def fire(self, handle: asyncio.Handle) -> None:
        """Run a due timer's callback in this activation."""
        if not handle.cancelled():
            self._ready.append(handle)

    def create_future(self) -> asyncio.Future[Any]:
        return asyncio.Future(loop=self)

    def create_task(
        self,
        coro: Coroutine[Any, Any, _T] | Generator[Any, None, _T],
        *,
        name: str | None = None,
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[_T]:
        return asyncio.Task(coro, loop=self, name=name, context=context)

    def run_until_quiet(self) -> None:
        """Run ready callbacks until every task waits on something from outside."""
        previous = events._get_running_loop()
        events._set_running_loop(self)
        self._running = True
        try:
            steps = 0
            while self._ready:
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
            self._running = False
            events._set_running_loop(previous)

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
        self._closed = True
        self._ready.clear()

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        """Swallowed: failures that matter reach the workflow's own result instead.

        What lands here is a task destroyed while pending (an evicted instance) or an
        exception nobody awaited inside the workflow.
        """

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        self.call_exception_handler(context)


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
