"""Which errors of workflow code fail the workflow task instead of what the code was doing.

A task failure writes nothing and the task is retried with backoff until the code is fixed
(non-determinism, a sandbox violation, a stray ``sys.exit()``) or the worker can decode
its payloads; any other error is the outcome of the code that raised it: the workflow's
failure, or an update's.
"""

from __future__ import annotations

import asyncio

from tapeflow.errors import (
    CodecError,
    NonDeterminismError,
    WorkflowInterrupted,
    WorkflowSandboxError,
)

TASK_FAILURES = (NonDeterminismError, WorkflowSandboxError, WorkflowInterrupted, CodecError)
"""Errors that fail the workflow task (retried later) instead of the workflow itself. A
``CodecError`` is a payload this worker has no key for (it was started without the codec):
once it has, the task runs."""


def fails_the_task(exc: BaseException) -> bool:
    """Whether ``exc`` fails the task: a task failure, or a BaseException outside Exception
    other than a cancellation (see WorkflowInterrupted)."""
    return isinstance(exc, TASK_FAILURES) or not isinstance(
        exc, (Exception, asyncio.CancelledError)
    )
