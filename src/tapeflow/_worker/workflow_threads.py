"""Where workflow code runs: workflow threads off the event loop, fed from one queue.

Workflow code runs off the event loop so that code that blocks (a wait on a lock, a busy
loop) is caught by a timeout instead of freezing the worker. Results go back to the event
loop in batches: one wake-up of the loop for every activation that finished since the last
one, where a thread pool pays a wake-up (a write to the loop's self-pipe, then a wait for
the GIL) per activation. An activation that runs past the timeout fails with
ThreadTimeout and its thread is left to it (Python cannot stop a thread); a fresh thread
takes its place. Those abandoned threads are bounded, since each one spinning takes its
share of the GIL from every other: while one is stuck in the activation of a key (a
workflow), no other activation of that key runs, and once ``max_abandoned`` are stuck no
activation runs at all; both are refused with ThreadRefused. A stuck thread that returns
at last frees its place, and ``on_abandoned`` hears of every change.
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

THREAD_NAME = "tapeflow-workflow"

WORKFLOW_THREADS = 2
"""Workflow threads share the GIL, so more do not run more at once; two keep a long replay
from holding up every other activation."""


class ThreadTimeout(Exception):
    """The activation ran longer than the engine's timeout without returning."""


class ThreadRefused(Exception):
    """The activation was not run: threads are stuck in an earlier one of its key, or in
    as many as the engine allows."""


@dataclass(eq=False)
class _Job(Generic[T]):
    run: Callable[[], T]
    future: asyncio.Future[T]
    key: str | None
    started: float = field(default=0.0)


class WorkflowThreads:
    def __init__(
        self,
        threads: int,
        timeout: float,
        max_abandoned: int | None = None,
        name: str = THREAD_NAME,
        on_abandoned: Callable[[], None] | None = None,
    ) -> None:
        self._threads = max(1, threads)
        self._timeout = timeout
        self._max_abandoned = max_abandoned
        self._name = name
        self._queue: SimpleQueue[_Job[Any] | None] = SimpleQueue()
        self._lock = threading.Lock()
        self._finished: list[tuple[_Job[Any], bool, Any]] = []
        self._running: dict[int, _Job[Any]] = {}
        """The job each live workflow thread runs now, by thread id."""
        self._abandoned: dict[int, str | None] = {}
        """The key of the job each thread given up on is still stuck in, by thread id."""
        self._outstanding = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._on_abandoned = on_abandoned
        """Called on the event loop whenever the number of abandoned threads changes."""

    @property
    def abandoned(self) -> int:
        """Threads given up on that are still running their activation."""
        with self._lock:
            return len(self._abandoned)

    @property
    def full(self) -> bool:
        """Whether as many threads are stuck as the engine allows: it runs nothing more."""
        return self._max_abandoned is not None and self.abandoned >= self._max_abandoned

    async def run(self, work: Callable[[], T], key: str | None = None) -> T:
        """``work()`` on an workflow thread; raises what it raises, ThreadTimeout, or
        ThreadRefused (see the module's docstring; ``key`` names what it activates)."""
        with self._lock:
            refused = self._refusal(key)
        if refused is not None:
            raise ThreadRefused(refused)
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
            for _ in range(self._threads):
                self._start_thread()
        job: _Job[T] = _Job(work, loop.create_future(), key)
        self._outstanding += 1
        self._queue.put(job)
        if self._watchdog is None:
            self._watchdog = loop.call_later(self._check_every, self._check)
        return await job.future

    def close(self) -> None:
        """Let the threads end once the queue is drained; stuck ones end when they return."""
        self._on_abandoned = None
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
            ok, outcome = self._run_job(me, job)
            with self._lock:
                given_up = me in self._abandoned
                if given_up:
                    del self._abandoned[me]
                else:
                    self._running.pop(me, None)
                    first = not self._finished
                    self._finished.append((job, ok, outcome))
            if given_up:  # replaced by the watchdog: the result is dropped, the place freed
                self._call_on_loop(self._abandoned_changed)
                return
            if first and not self._call_on_loop(self._deliver):
                return  # the event loop is closed: nobody waits any more

    def _run_job(self, me: int, job: _Job[Any]) -> tuple[bool, Any]:
        with self._lock:
            refused = self._refusal(job.key)  # threads may have got stuck since it was queued
            if refused is None:
                job.started = time.monotonic()
                self._running[me] = job
        if refused is not None:
            return False, ThreadRefused(refused)
        try:
            return True, job.run()
        except BaseException as exc:  # handed to the awaiting task, whatever it is
            return False, exc

    def _refusal(self, key: str | None) -> str | None:
        """Why a job of ``key`` may not run now, or None; called with the lock held."""
        if key is not None and key in self._abandoned.values():
            return (
                "its code from an earlier task still runs on this worker, stuck past the "
                "timeout (a blocking call or a busy loop?)"
            )
        stuck = len(self._abandoned)
        if self._max_abandoned is not None and stuck >= self._max_abandoned:
            return f"{stuck} threads of this worker are stuck in workflow code, the most it allows"
        return None

    def _call_on_loop(self, callback: Callable[[], None]) -> bool:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(callback)
        except RuntimeError:  # the event loop is closed
            return False
        return True

    def _abandoned_changed(self) -> None:
        if self._on_abandoned is not None:
            self._on_abandoned()

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
            for thread, job in stuck:
                del self._running[thread]
                self._abandoned[thread] = job.key
        for _, job in stuck:
            self._start_thread()
            self._settle(job, False, ThreadTimeout(f"ran more than {self._timeout:g}s"))
        if stuck:
            self._abandoned_changed()
        if self._outstanding > 0 and self._loop is not None:
            self._watchdog = self._loop.call_later(self._check_every, self._check)
