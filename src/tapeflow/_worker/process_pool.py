"""The process pool for sync activities: its children die with their worker, and it
outlives the death of a child.

A worker killed outright (SIGKILL, the OOM killer) runs no cleanup, and its pool children
would run on for ever, holding resources and doing work nobody records. On Linux the kernel
kills them the moment the worker dies (``PR_SET_PDEATHSIG``); everywhere, a thread in each
child also notices the worker is gone (the child is re-parented) and exits.

The other way round, a child that dies (``os._exit`` or a crash in an activity) breaks a
``ProcessPoolExecutor`` for good: every later call fails. The attempts it ran then fail, as
they must, and the next call gets a fresh pool, so one poisoned activity cannot stop every
later one of its worker.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import ParamSpec, TypeVar

PARENT_CHECK_SECONDS = 0.5
"""How often a child looks for its worker where the kernel cannot be asked to tell it."""

_PR_SET_PDEATHSIG = 1
P = ParamSpec("P")
T = TypeVar("T")


class ProcessPool(Executor):
    """A ``ProcessPoolExecutor`` that a dead child does not break for good, and whose
    children still in a call are killed when it is shut down without waiting."""

    def __init__(self, workers: int) -> None:
        self._workers = workers
        self._pool = self._new()

    def _new(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self._workers, initializer=_die_with_parent)

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        try:
            return self._pool.submit(fn, *args, **kwargs)
        except BrokenProcessPool:  # a child died: its calls failed; start afresh
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new()
            return self._pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Without ``wait``, children still in a call are killed: the worker has given up on
        their attempts (past ``shutdown_grace``), and the interpreter would otherwise wait
        for them at exit, however long they hang."""
        children = list((self._pool._processes or {}).values())
        self._pool.shutdown(wait, cancel_futures=cancel_futures)
        if not wait:
            for child in children:
                child.kill()


def _die_with_parent() -> None:
    """Pool initializer, run in each child. (The Linux signal follows the thread that
    started the child, the worker's event loop thread, which lives as long as the worker.)"""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
    watcher = threading.Thread(
        target=_exit_when_orphaned, args=(parent,), name="tapeflow-parent-watch", daemon=True
    )
    watcher.start()


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(1)  # no cleanup: the worker that would want it is gone
