"""The running activity's context, shared by the ``activity`` API and the worker."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class ActivityInfo:
    workflow_id: str
    activity_name: str
    seq: int
    """The activity's sequence number within its workflow."""
    attempt: int
    """1 on the first run; attempts made before this one are ``attempt - 1``."""
    scheduled_by: str
    """Name of the workflow that scheduled it."""


@dataclass
class ActivityContext:
    info: ActivityInfo
    next_attempt_at: datetime | None = None
    """Set by ``retry_after``/``retry_at``: when to retry if this attempt fails."""


current: ContextVar[ActivityContext] = ContextVar("tapeflow_activity")
