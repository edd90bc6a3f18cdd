"""Blocking calls from workflow code raise WorkflowSandboxError: file opens, subprocesses,
sockets, ``time.sleep`` and threads.

They are seen through an audit hook (``sys.addaudithook``), which catches them however they
are reached (``os.open``, ``pathlib``, ``subprocess.run``, a client library's socket, code
in C). Before Python 3.13 ``time.sleep`` raises no audit event, so it is wrapped instead.
Both are installed once per process and cannot be removed: outside workflow code they cost
one set lookup per audited event (and the wrapper one call per sleep), and nothing per
activation, since "this thread runs workflow code now" is asyncio's own running loop, which
the workflow loop sets anyway. Opens made on the way by an import, by ``linecache`` (a
traceback) or by a ``logging`` handler are let through: they do not change what the
workflow decides.
"""

from __future__ import annotations

import asyncio
import functools
import linecache
import logging
import os
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, TypeVar

from tapeflow._engine.loop import WorkflowEventLoop

REFUSED = frozenset(
    {
        "open",  # builtins.open, io.open, os.open, pathlib
        "subprocess.Popen",  # subprocess.run, call, check_output
        "os.system",
        "os.exec",
        "os.spawn",
        "os.posix_spawn",
        "os.fork",
        "os.forkpty",
        "socket.connect",
        "socket.bind",
        "socket.sendto",
        "socket.getaddrinfo",  # socket.create_connection, and every client resolving a name
        "socket.gethostbyname",
        "socket.gethostbyaddr",
        "time.sleep",
        "_thread.start_new_thread",  # threads, from Python 3.12
        "_thread.start_joinable_thread",  # the same, from Python 3.13
    }
)
"""Audit events refused in workflow code; the error names the call by its event."""

_ON_BEHALF = (
    "<frozen importlib._bootstrap",  # imports, and their _bootstrap_external
    "<frozen zipimport>",
    linecache.__file__,  # source lines of a traceback
    os.path.dirname(logging.__file__) + os.sep,  # handlers: logging, logging.handlers
)
"""Where code that may open files and sockets on behalf of workflow code lives (see above)."""

_installed = False
_Seconds = TypeVar("_Seconds")


def install() -> None:
    """Install the hook (and, before Python 3.13, the ``time.sleep`` wrapper), once."""
    global _installed
    if _installed:
        return
    _installed = True
    sys.addaudithook(_audit)
    if sys.version_info < (3, 13):
        time.sleep = _guarded(time.sleep)


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event not in REFUSED:
        return
    loop = asyncio._get_running_loop()
    if not isinstance(loop, WorkflowEventLoop) or _on_behalf(sys._getframe(1)):
        return
    what = f"open({args[0]!r})" if event == "open" else f"{event}()"
    hint = (
        "await workflow.sleep() (a durable timer) instead, or block in an activity"
        if event == "time.sleep"
        else "put I/O, subprocesses and blocking calls in an activity"
    )
    raise loop.refuse(
        f"{what} is not allowed in a workflow: it would not replay the same way; {hint}"
    )


def _on_behalf(frame: FrameType | None) -> bool:
    """Whether an import, a traceback or a logging handler is what makes the call."""
    while frame is not None:
        if frame.f_code.co_filename.startswith(_ON_BEHALF):
            return True
        frame = frame.f_back
    return False


def _guarded(sleep: Callable[[_Seconds], None]) -> Callable[[_Seconds], None]:
    @functools.wraps(sleep)
    def guarded(seconds: _Seconds) -> None:
        _audit("time.sleep", (seconds,))
        sleep(seconds)

    return guarded
