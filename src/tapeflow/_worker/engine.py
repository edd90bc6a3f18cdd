"""Where workflow code runs: engine threads off the event loop, fed from one queue.

Workflow code runs off the event loop so that code that blocks (``time.sleep``, a busy
loop) is caught by a timeout instead of freezing the worker. Results go back to the event
loop in batches: one wake-up of the loop for every activation that finished since the last
one, where a thread pool pays a wake-up (a write to the loop's self-pipe, then a wait for
the GIL) per activation. An activation that runs past the timeout fails with
EngineTimeout and its thread is left to it; a fresh thread takes its place.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from queue import SimpleQueue
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class EngineTimeout(Exception):
    """The activation ran longer than the engine's timeout without returning."""


@dataclass(eq=False)
class _Job(Generic[T]):
    run: Callable[[], T]
    future: asyncio.Future[T]
    started: float = field(default=0.0)


class Engine:
    def __init__(self, threads: int, timeout: float, name: str = "tapeflow-workflow") -> None:
        self._threads = max(1, threads)
        self._timeout = timeout
        self._name = name
        self._queue: SimpleQueue[_Job[Any] | None] = SimpleQueue()
        self._lock = threading.Lock()
        self._finished: list[tuple[_Job[Any], bool, Any]] = []
        self._running: dict[int, _Job[Any]] = {}
        """The job each live engine thread runs now, by thread id."""
        self._outstanding = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watchdog: asyncio.TimerHandle | None = None

    async def run(self, work: Callable[[], T]) -> T:
        """``work()`` on an engine thread; raises what it raises, or EngineTimeout."""
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
            for _ in range(self._threads):
                self._start_thread()
        job: _Job[T] = _Job(work, loop.create_future())
        self._outstanding += 1
        self._queue.put(job)
        if self._watchdog is None:
            self._watchdog = loop.call_later(self._check_every, self._check)
        return await job.future

    def close(self) -> None:
        """Let the threads end once the queue is drained; stuck ones end when they return."""
        for _ in range(self._threads):
            self._queue.put(None)
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    @property
    def _check_every(self) -> float:
        return min(max(self._timeout / 4, 0.01), 1.0)

    def _start_thread(self) -> None:
        threading.Thread(target=self._work, name=self._name, daemon=True).start()

    def _work(self) -> None:
        me = threading.get_ident()
        while True:
            job = self._queue.get()
            if job is None:
                return
            with self._lock:
                job.started = time.monotonic()
                self._running[me] = job
            try:
                outcome, ok = job.run(), True
            except BaseException as exc:  # handed to the awaiting task, whatever it is
                outcome, ok = exc, False
            with self._lock:
                if self._running.get(me) is not job:
                    return  # given up on by the watchdog and replaced: the result is dropped
                del self._running[me]
                first = not self._finished
                self._finished.append((job, ok, outcome))
            if first:
                assert self._loop is not None
                try:
                    self._loop.call_soon_threadsafe(self._deliver)
                except RuntimeError:  # the event loop is closed: nobody waits any more
                    return

    def _deliver(self) -> None:
        with self._lock:
            finished, self._finished = self._finished, []
        for job, ok, outcome in finished:
            self._settle(job, ok, outcome)

    def _settle(self, job: _Job[Any], ok: bool, outcome: Any) -> None:
        self._outstanding -= 1
        if job.future.done():  # the waiting task was cancelled: the outcome is dropped
            return
        if ok:
            job.future.set_result(outcome)
        else:
            job.future.set_exception(outcome)

    def _check(self) -> None:
        """Fail activations that have run too long, each thread replaced by a fresh one."""
        self._watchdog = None
        now = time.monotonic()
        with self._lock:
            stuck = [
                (thread, job)
                for thread, job in self._running.items()
                if now - job.started >= self._timeout
            ]
            for thread, _ in stuck:
                del self._running[thread]
        for _, job in stuck:
            self._start_thread()
            self._settle(job, False, EngineTimeout(f"ran more than {self._timeout:g}s"))
        if self._outstanding > 0 and self._loop is not None:
            self._watchdog = self._loop.call_later(self._check_every, self._check)
