"""The process pool for sync activities, whose children die with their worker.

A worker killed outright (SIGKILL, the OOM killer) runs no cleanup, and its pool children
would run on for ever, holding resources and doing work nobody records. On Linux the kernel
kills them the moment the worker dies (``PR_SET_PDEATHSIG``); everywhere, a thread in each
child also notices the worker is gone (the child is re-parented) and exits.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor

PARENT_CHECK_SECONDS = 0.5
"""How often a child looks for its worker where the kernel cannot be asked to tell it."""

_PR_SET_PDEATHSIG = 1


class ActivityProcessPool(ProcessPoolExecutor):
    def __init__(self, workers: int) -> None:
        super().__init__(workers, initializer=_die_with_parent)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Without ``wait``, children still in a call are killed: the worker has given up on
        their attempts (past ``shutdown_grace``), and the interpreter would otherwise wait
        for them at exit, however long they hang."""
        children = list((self._processes or {}).values())
        super().shutdown(wait, cancel_futures=cancel_futures)
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
