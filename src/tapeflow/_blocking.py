"""Async objects used from threads without an event loop: they live on a private loop in a
thread of its own, and each blocking call submits a coroutine there and waits for it.

So sync code gets the async implementation itself, not a second one: ``blocking(method)``
turns an async method into a blocking one with the same parameters (overloads included),
docstring and exceptions.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

P = ParamSpec("P")
S = TypeVar("S")
T = TypeVar("T")
U = TypeVar("U")


class LoopThread:
    """An event loop in a daemon thread, inside ``async with lifetime`` (a backend's
    connection) from the start until ``close``, which also runs once the loop thread is
    unreachable: what lives on the loop is closed on it. Not at interpreter exit: by then
    ``concurrent.futures`` refuses work (a SQLite backend's close needs its executor), so
    the thread ends with the process, as a daemon thread does."""

    def __init__(self, lifetime: AbstractAsyncContextManager[object], *, name: str) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()  # a call is submitted before a close, or refused
        self._calls: set[asyncio.Task[Any]] = set()  # touched on the loop only
        runner = asyncio.Runner(loop_factory=asyncio.new_event_loop)  # not this thread's loop
        self._loop = runner.get_loop()
        stop = asyncio.Event()
        entered: concurrent.futures.Future[None] = concurrent.futures.Future()
        failed: list[BaseException] = []
        live = _live(lifetime, entered, stop, self._calls)
        thread = threading.Thread(target=_serve, args=(runner, live, failed), name=name)
        thread.daemon = True  # a process that never closes it still exits
        thread.start()
        self._closer = weakref.finalize(self, _stop, self._loop, thread, stop, failed, self._pid)
        self._closer.atexit = False
        try:
            entered.result()
        except BaseException:
            self._closer()
            raise

    @property
    def pending(self) -> int:
        """How many calls are running on the loop now."""
        return len(self._calls)

    def run(self, what: str, coroutine: Callable[[], Awaitable[T]]) -> T:
        """What ``coroutine()`` returns or raises, run on the loop, blocking until then.
        An interruption of the wait (KeyboardInterrupt) cancels it there. It is made here,
        after the checks: nothing on the loop refers to the caller's objects, so the last
        of those to go (collected) can close the loop thread and wait for it."""
        self.check(what)
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no loop runs in this thread: blocking it stops nothing
            pass
        else:
            raise RuntimeError(
                f"{what} blocks its thread, and this thread runs an event loop, which would"
                " stop until it returns (a deadlock if what it waits for runs there): in async"
                " code use tapeflow.Client and await its methods, or make this call in"
                " asyncio.to_thread"
            )
        with self._lock:
            self.check(what)
            tracked = _tracked(self._calls, coroutine())
            future = asyncio.run_coroutine_threadsafe(tracked, self._loop)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            if self._closer.alive:
                raise
            raise RuntimeError(f"{what}: the client was closed while it waited") from None
        except BaseException:
            future.cancel()  # interrupted while waiting: end the call too (if it ended, a no-op)
            raise

    def check(self, what: str) -> None:
        """Raise RuntimeError if calls can no longer run: closed, or in a forked child."""
        if not self._closer.alive:
            raise RuntimeError(f"{what}: the client is closed")
        if os.getpid() != self._pid:
            raise RuntimeError(
                f"{what}: the client was opened in process {self._pid}, and this process is a"
                " fork of it, where the client's thread does not run: open a client in each"
                " process, after the fork"
            )

    def close(self) -> None:
        """Cancel the calls running (their callers raise RuntimeError), leave the lifetime
        and stop the thread; wait for it, unless called on the loop's own thread. Raises
        what leaving raised. Closing again does nothing."""
        with self._lock:
            self._closer()


async def _tracked(calls: set[asyncio.Task[Any]], call: Awaitable[T]) -> T:
    """``call``, among the ``calls`` that a close cancels while it runs."""
    task = asyncio.current_task()
    assert task is not None
    calls.add(task)
    try:
        return await call
    finally:
        calls.discard(task)


async def _live(
    lifetime: AbstractAsyncContextManager[object],
    entered: concurrent.futures.Future[None],
    stop: asyncio.Event,
    calls: set[asyncio.Task[Any]],
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        try:
            await stack.enter_async_context(lifetime)
        except BaseException as exc:  # for the constructor to raise
            entered.set_exception(exc)
            return
        entered.set_result(None)
        await stop.wait()
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)


def _serve(
    runner: asyncio.Runner, live: Coroutine[Any, Any, None], failed: list[BaseException]
) -> None:
    """The loop thread: ``live`` until stopped, then what is left on the loop is cancelled,
    as ``asyncio.run`` does."""
    try:
        with runner:
            runner.run(live)
    except BaseException as exc:  # leaving the lifetime failed: for the closer to raise
        failed.append(exc)


def _stop(
    loop: asyncio.AbstractEventLoop,
    thread: threading.Thread,
    stop: asyncio.Event,
    failed: list[BaseException],
    pid: int,
) -> None:
    """The finalizer of a ``LoopThread``: it must not refer to it."""
    if os.getpid() != pid:  # a forked child: the thread and what it owns are the parent's
        return
    if threading.current_thread() is thread:  # collected on its own loop: it cannot wait
        stop.set()
        return
    with contextlib.suppress(RuntimeError):  # the loop is closed: it failed to open
        loop.call_soon_threadsafe(stop.set)
    thread.join()
    if failed:
        raise failed[0]


class Blocking(Generic[S]):
    """Base of the blocking twin of an async object ``_inner`` that lives on ``_loop``."""

    _inner: S
    _loop: LoopThread


def blocking(
    method: Callable[Concatenate[S, P], Awaitable[T]],
) -> Callable[Concatenate[Blocking[S], P], T]:
    """``method`` of the async object, as a blocking method of its ``Blocking`` twin: the
    same parameters (overloads included) and docstring (``__wrapped__``), and the awaited
    result or exception."""

    def call(self: Blocking[S], /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._loop.run(_named(self, method), lambda: method(self._inner, *args, **kwargs))

    functools.update_wrapper(call, method)
    return call


def not_blocking(
    method: Callable[Concatenate[S, P], T],
) -> Callable[Concatenate[Blocking[S], P], T]:
    """A plain method of the async object (no I/O: a handle made), called in the caller's
    thread, while the twin is open."""

    def call(self: Blocking[S], /, *args: P.args, **kwargs: P.kwargs) -> T:
        self._loop.check(_named(self, method))
        return method(self._inner, *args, **kwargs)

    functools.update_wrapper(call, method)
    return call


def giving(
    twin: Callable[[LoopThread, T], U],
    method: Callable[Concatenate[Blocking[S], P], T],
) -> Callable[Concatenate[Blocking[S], P], U]:
    """``method``, the async object it returns given as its blocking twin, on the same loop.
    (Its type loses the overloads of ``method``: wrap it in a function typed for them.)"""

    def call(self: Blocking[S], /, *args: P.args, **kwargs: P.kwargs) -> U:
        return twin(self._loop, method(self, *args, **kwargs))

    functools.update_wrapper(call, method)
    return call


def _named(twin: Blocking[Any], method: Callable[..., object]) -> str:
    return f"{type(twin).__name__}.{method.__name__}()"
