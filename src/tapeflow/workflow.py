"""The API used inside workflow code. Each call is a thin delegate to the running instance.

Workflow code must be deterministic: it may use ``asyncio`` freely (gather, wait, TaskGroup,
Event, Queue, timeout; ``asyncio.sleep`` is a durable timer) but no I/O, threads, wall clock
or randomness of its own. Use ``now()``, ``random()`` and activities instead.
"""

from __future__ import annotations

import asyncio
import logging
import random as _random
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast, overload

from tapeflow._definition import definition_of, defn_decorator
from tapeflow._engine.instance import WorkflowInfo, WorkflowInstance, running_instance
from tapeflow._validate import check_moment, check_name, check_seconds, check_timeout, fail
from tapeflow._workflow_logger import WorkflowLogger
from tapeflow.converter import from_json, to_json
from tapeflow.errors import TapeflowError
from tapeflow.options import RetryPolicy

__all__ = [
    "WorkflowInfo",
    "defn",
    "execute_activity",
    "info",
    "is_replaying",
    "logger",
    "now",
    "on_event",
    "random",
    "set_var",
    "side_effect",
    "sleep",
    "sleep_until",
    "uuid4",
    "wait_condition",
    "wait_event",
]

F = TypeVar("F", bound=Callable[..., Any])
R = TypeVar("R")

logger = WorkflowLogger(logging.getLogger("tapeflow.workflow"))
"""Log from workflow code with this, not ``logging``: it is silent while the workflow
replays (a record is written once, not once per replay) and adds ``workflow_id``, ``run``
and ``workflow_name`` to each record. A workflow id has a single run (ids are never
reused), so ``run`` is the workflow id."""


@overload
def defn(fn: F, *, name: None = None) -> F: ...
@overload
def defn(fn: None = None, *, name: str | None = None) -> Callable[[F], F]: ...
def defn(fn: F | None = None, *, name: str | None = None) -> F | Callable[[F], F]:
    """Mark an ``async def`` as a workflow, registered under ``name`` (default: its own)."""
    return defn_decorator("workflow", fn, name)


def _instance() -> WorkflowInstance:
    instance = running_instance()
    if instance is None:
        raise TapeflowError("this function can only be called from inside a running workflow")
    instance.loop.check_open()
    return instance


def info() -> WorkflowInfo:
    """Id, name, version, start time and whether the workflow is replaying history."""
    return _instance().info


def now() -> datetime:
    """The workflow's current time (tz-aware UTC): the time of the task being processed."""
    return _instance().now


def is_replaying() -> bool:
    """True while the workflow re-executes recorded history (side effects are already done)."""
    return _instance().info.is_replaying


def set_var(name: str, value: Any) -> None:
    """Set a named variable, read from outside by ``WorkflowDebugger.query_vars``."""
    _instance().vars[name] = value


def random() -> _random.Random:
    """A random generator seeded by the workflow id: the same numbers on every replay."""
    return _instance().random


def uuid4() -> uuid.UUID:
    """A UUID that replays identically (drawn from ``random()``)."""
    return uuid.UUID(int=random().getrandbits(128), version=4)


async def sleep(duration: timedelta | float) -> None:
    """A durable timer: survives restarts, fires after ``duration`` of workflow time."""
    await asyncio.sleep(check_seconds(duration, "sleep duration"))


async def sleep_until(when: datetime) -> None:
    """A durable timer due at ``when`` (tz-aware); returns at once if that has passed."""
    check_moment(when, "sleep_until when")
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()
    handle = loop.call_at(when.timestamp(), _resolve, future)
    try:
        await future
    finally:
        handle.cancel()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


@overload
def execute_activity(
    activity: Callable[..., Awaitable[R]],
    *args: Any,
    retry: RetryPolicy | None = None,
    start_to_close_timeout: timedelta | None = None,
    schedule_to_close_timeout: timedelta | None = None,
    heartbeat_timeout: timedelta | None = None,
) -> asyncio.Future[R]: ...
@overload
def execute_activity(
    activity: Callable[..., R],
    *args: Any,
    retry: RetryPolicy | None = None,
    start_to_close_timeout: timedelta | None = None,
    schedule_to_close_timeout: timedelta | None = None,
    heartbeat_timeout: timedelta | None = None,
) -> asyncio.Future[R]: ...
@overload
def execute_activity(
    activity: str,
    *args: Any,
    retry: RetryPolicy | None = None,
    start_to_close_timeout: timedelta | None = None,
    schedule_to_close_timeout: timedelta | None = None,
    heartbeat_timeout: timedelta | None = None,
) -> asyncio.Future[Any]: ...
def execute_activity(
    activity: Callable[..., Any] | str,
    *args: Any,
    retry: RetryPolicy | None = None,
    start_to_close_timeout: timedelta | None = None,
    schedule_to_close_timeout: timedelta | None = None,
    heartbeat_timeout: timedelta | None = None,
) -> asyncio.Future[Any]:
    """Schedule an activity now; await the returned future for its result.

    Several may be scheduled before any is awaited (fan-out, then ``gather``). A final
    failure is raised from the future as ``tapeflow.ActivityError``. ``activity`` may also be
    the name of an activity registered on some worker, its result then left as plain JSON.

    Timeouts: ``start_to_close_timeout`` limits one attempt, ``heartbeat_timeout`` the time
    an attempt may go without ``activity.heartbeat()``; either fails the attempt with
    ``TimeoutError``, retried under ``retry``. ``schedule_to_close_timeout`` limits all
    attempts and the waits between them: past it the activity fails for good
    (``ActivityError`` of type ``"TimeoutError"``). A timed-out attempt is told as for a
    cancellation. Cancelling the future (``asyncio.timeout``, a cancelled task, the
    workflow's own cancellation) cancels the activity: it is not started or retried, a
    running attempt is told, and its outcome is ignored.
    """
    instance = _instance()
    if retry is not None and not isinstance(retry, RetryPolicy):
        fail("execute_activity retry", retry, "a RetryPolicy or None")
    timeouts = (
        check_timeout(start_to_close_timeout, "start_to_close_timeout"),
        check_timeout(schedule_to_close_timeout, "schedule_to_close_timeout"),
        check_timeout(heartbeat_timeout, "heartbeat_timeout"),
    )
    if isinstance(activity, str):
        name = check_name(activity, "an activity name")
        encoded, hint = [to_json(a) for a in args], cast(object, Any)
    else:
        definition = definition_of(activity, "activity")
        name = definition.name
        encoded = definition.signature.encode_args(args)
        hint = definition.signature.return_hint
    future: asyncio.Future[Any] = instance.loop.create_future()
    instance.commands.schedule_activity(
        name, encoded, retry.to_json() if retry else None, future, hint, timeouts
    )
    return future


async def side_effect(fn: Callable[[], Any], *, type: object = Any) -> Any:
    """Call ``fn`` once and record its result (plain JSON) in history; on every replay the
    recorded value comes back and ``fn`` is not called. For a small non-deterministic value
    (a token, a random choice) where an activity would be too much; ``fn`` must not do I/O
    (the sandbox applies). ``type`` decodes the value, the first time as on replays."""
    if not callable(fn):
        fail("side_effect fn", fn, "a function of no arguments")
    instance = _instance()
    value = instance.commands.side_effect(
        lambda: to_json(fn(), what="side_effect value"), instance.recorded
    )
    return from_json(value, type, what="side_effect value")


async def wait_condition(
    predicate: Callable[[], object], *, timeout: timedelta | float | None = None
) -> None:
    """Return once ``predicate()`` is true, checked now and after every change of the
    workflow's state (an activity's outcome, a timer, an event). With ``timeout``, raise
    ``TimeoutError`` if it is still false then (a durable timer)."""
    if not callable(predicate):
        fail("wait_condition predicate", predicate, "a function of no arguments")
    seconds = None if timeout is None else check_seconds(timeout, "wait_condition timeout")
    if predicate():
        return
    waiting = _instance().wait_for(predicate)
    try:
        async with asyncio.timeout(seconds):
            await waiting
    finally:
        waiting.cancel()


def on_event(name: str, callback: Callable[[Any], object], *, type: object = Any) -> None:
    """Call ``callback(payload)`` for every external event ``name``, past ones included."""
    _instance().channels.on(check_name(name, "event name"), callback, type)


async def wait_event(name: str, *, type: object = Any) -> Any:
    """The oldest external event ``name`` not yet returned here, waiting if there is none."""
    return await _instance().channels.wait(check_name(name, "event name"), type)
