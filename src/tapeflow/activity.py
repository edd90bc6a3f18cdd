"""The API used inside activity code: who am I, which attempt, when to try again."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, overload

from tapeflow._activity_context import ActivityContext, ActivityInfo, current
from tapeflow._definition import defn_decorator
from tapeflow._validate import check_moment, check_timedelta
from tapeflow.converter import to_json
from tapeflow.errors import ActivityCancelled, TapeflowError
from tapeflow.options import clamp_delay

__all__ = [
    "ActivityInfo",
    "defn",
    "heartbeat",
    "info",
    "is_cancelled",
    "retry_after",
    "retry_at",
]

F = TypeVar("F", bound=Callable[..., Any])


@overload
def defn(fn: F, *, name: None = None) -> F: ...
@overload
def defn(fn: None = None, *, name: str | None = None) -> Callable[[F], F]: ...
def defn(fn: F | None = None, *, name: str | None = None) -> F | Callable[[F], F]:
    """Mark a function (sync or async) as an activity, registered under ``name``."""
    return defn_decorator("activity", fn, name)


def _context() -> ActivityContext:
    try:
        return current.get()
    except LookupError:
        raise TapeflowError("this function can only be called from inside an activity") from None


def info() -> ActivityInfo:
    """The running activity's workflow id, name, sequence number and attempt (1 first)."""
    return _context().info


def heartbeat(details: Any = None) -> None:
    """Record progress (any JSON-able value). It is stored with the next lease renewal, or
    when the attempt fails, and the next attempt reads it as ``info().heartbeat_details``.

    Raises ActivityCancelled once this attempt no longer counts (the workflow cancelled
    the activity or ended, or the attempt timed out): a sync activity learns it here."""
    context = _context()
    if context.cancelled:
        info = context.info
        raise ActivityCancelled(
            f"activity {info.activity_name!r} of {info.workflow_id!r}, attempt {info.attempt}, "
            "was cancelled: its outcome would be discarded"
        )
    context.record_heartbeat(to_json(details, what="heartbeat details"))


def is_cancelled() -> bool:
    """Whether this attempt no longer counts (see ``heartbeat``): its outcome will be
    discarded, so it may stop now."""
    return _context().cancelled


def retry_after(delay: timedelta) -> None:
    """If this attempt fails, run the next one after ``delay`` instead of the policy's backoff
    (at most ``MAX_DELAY`` later)."""
    check_timedelta(delay, "retry_after delay")
    _context().next_attempt_at = datetime.now(UTC) + clamp_delay(delay)


def retry_at(when: datetime) -> None:
    """If this attempt fails, run the next one at ``when`` (tz-aware; at most ``MAX_DELAY``
    from now)."""
    _context().next_attempt_at = check_moment(when, "retry_at when")
