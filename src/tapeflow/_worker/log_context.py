"""What a worker's log record is about: each carries ``workflow_id``, ``run``,
``activity`` and ``attempt`` as ``extra`` fields (None where one does not apply), taken
from the task it was logged in, so that a log pipeline can follow one workflow through
every worker. A JSON formatter (``tapeflow worker --log-format json``) shows them; a text
format may name them too (``%(workflow_id)s``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, MutableMapping
from contextvars import ContextVar
from typing import Any

FIELDS = ("workflow_id", "run", "activity", "attempt")
_NONE: dict[str, object] = dict.fromkeys(FIELDS)
_task: ContextVar[dict[str, object]] = ContextVar("tapeflow_log_task", default=_NONE)


@contextlib.contextmanager
def about(**fields: object) -> Iterator[None]:
    """Records logged in this block (and in the tasks it starts) are about ``fields``."""
    token = _task.set({**_NONE, **fields})
    try:
        yield
    finally:
        _task.reset(token)


class TaskLogger(logging.LoggerAdapter[logging.Logger]):
    """Adds the task's fields to every record; fields given in ``extra`` win."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**_task.get(), **(kwargs.get("extra") or {})}
        return msg, kwargs


def worker_logger() -> TaskLogger:
    """The ``tapeflow.worker`` logger, with the task's fields on every record."""
    return TaskLogger(logging.getLogger("tapeflow.worker"), {})
