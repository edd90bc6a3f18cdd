"""The running activity's context, shared by the ``activity`` API and the worker."""

from __future__ import annotations

import asyncio
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class ActivityInfo:
    workflow_id: str
    run_id: str
    """The id of the workflow run that scheduled it."""
    activity_name: str
    seq: int
    """The activity's sequence number within its workflow."""
    attempt: int
    """1 on the first run; attempts made before this one are ``attempt - 1``."""
    scheduled_by: str
    """Name of the workflow that scheduled it."""
    heartbeat_details: Any = None
    """The details the previous attempt last recorded with ``activity.heartbeat``."""


@dataclass
class ActivityContext:
    info: ActivityInfo
    next_attempt_at: datetime | None = None
    """Set by ``retry_after``/``retry_at``: when to retry if this attempt fails."""
    heartbeat: Any = None
    """The latest details given to ``activity.heartbeat`` (as JSON), not yet stored."""
    heartbeat_pending: bool = False
    cancelled: bool = False
    """The attempt no longer counts (cancelled, timed out, its workflow ended): its next
    ``heartbeat()`` raises ActivityCancelled. Set on the worker's loop, read anywhere."""
    ended: bool = False
    """The attempt has returned or raised: its outcome is being written, and a cancel
    that comes now (its own commit's, say) has nothing left to tell."""
    timed_out: str | None = None
    """The timeout it ran past (``"start_to_close_timeout"``, say), so it was told: its
    failure is recorded, not discarded."""
    task: asyncio.Task[Any] | None = None
    """The worker's task running the attempt: an async activity is cancelled through it."""
    started: float = field(default_factory=time.monotonic)
    last_beat: float = field(default_factory=time.monotonic)
    """When the attempt last called ``activity.heartbeat()`` (or started): its heartbeat
    timeout counts from here."""

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def record_heartbeat(self, details: Any) -> None:
        self.heartbeat, self.heartbeat_pending = details, True
        self.last_beat = time.monotonic()

    def take_heartbeat(self) -> tuple[bool, Any]:
        """The details to store, if any arrived since the last take."""
        pending, self.heartbeat_pending = self.heartbeat_pending, False
        return pending, self.heartbeat


current: ContextVar[ActivityContext] = ContextVar("tapeflow_activity")
