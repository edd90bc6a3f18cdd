"""The API used inside workflow code. Each call is a thin delegate to the running instance.

Workflow code must be deterministic: it may use ``asyncio`` freely (gather, wait, TaskGroup,
Event, Queue, timeout; ``asyncio.sleep`` is a durable timer) but no I/O, threads, wall clock
or randomness of its own. Use ``now()``, ``random()`` and activities instead.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random as _random
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, Generic, Literal, NoReturn, TypeAlias, TypeVar, get_args, overload

from tapeflow._definition import call_of, defn_decorator
from tapeflow._engine.commands import ChildOptions
from tapeflow._engine.instance import WorkflowInfo, WorkflowInstance, running_instance
from tapeflow._validate import (
    check_choice,
    check_moment,
    check_name,
    check_seconds,
    check_timeout,
    fail,
)
from tapeflow._workflow_logger import WorkflowLogger
from tapeflow.converter import from_json, to_json
from tapeflow.errors import TapeflowError
from tapeflow.options import RetryPolicy
from tapeflow.queues import DEFAULT_PRIORITY, DEFAULT_QUEUE, QueueLike, check_priority, queue_name

__all__ = [
    "ChildWorkflowHandle",
    "ParentClosePolicy",
    "WorkflowInfo",
    "continue_as_new",
    "defn",
    "deprecate_patch",
    "execute_activity",
    "execute_child_workflow",
    "info",
    "is_replaying",
    "logger",
    "now",
    "on_event",
    "on_update",
    "patched",
    "random",
    "send_event",
    "set_var",
    "side_effect",
    "sleep",
    "sleep_until",
    "start_child_workflow",
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
    """Set a named variable, read from outside: stored with the workflow task's commit
    (``describe().vars``, ``Client.list_workflows(vars=...)``) and replayed by
    ``WorkflowDebugger.query_vars`` (which gives the value itself, where the others give
    its JSON: a datetime as text). It must be storable as JSON (PayloadError here, not at
    the commit); a value changed in place is stored at the next ``set_var``."""
    name = check_name(name, "variable name")
    _instance().set_var(name, value, to_json(value, what=f"variable {name!r}"))


def patched(patch_id: str) -> bool:
    """Whether this run takes the new branch of the code change named ``patch_id``: how
    workflow code changes under workflows already running. True for a run that reaches
    this point on the new code, which records a marker in its history as its next command;
    False on the replay of a history that reached this point without the marker (recorded
    before the change), so it goes on down the old branch it took then. Decided once per
    run: later calls with the same id return the same. Save histories before deploying
    and replay them with ``tapeflow.testing.replay`` to prove the change safe; once no
    running workflow needs the old branch, ``deprecate_patch`` replaces this call."""
    return _instance().patches.patched(check_name(patch_id, "patch id"))


def deprecate_patch(patch_id: str) -> None:
    """Mark where ``patched(patch_id)`` was, once its old branch is gone from the code:
    histories with the patch's marker there replay as well as those without it (recorded
    by this code), and nothing is recorded. Remove the call once no running workflow's
    history has the marker (none that ran the ``patched`` code is open)."""
    _instance().patches.deprecate(check_name(patch_id, "patch id"))


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
    queue: QueueLike = DEFAULT_QUEUE,
    priority: int = DEFAULT_PRIORITY,
) -> asyncio.Future[R]: ...
@overload
def execute_activity(
    activity: Callable[..., R],
    *args: Any,
    retry: RetryPolicy | None = None,
    start_to_close_timeout: timedelta | None = None,
    schedule_to_close_timeout: timedelta | None = None,
    heartbeat_timeout: timedelta | None = None,
    queue: QueueLike = DEFAULT_QUEUE,
    priority: int = DEFAULT_PRIORITY,
) -> asyncio.Future[R]: ...
@overload
def execute_activity(
    activity: str,
    *args: Any,
    retry: RetryPolicy | None = None,
    start_to_close_timeout: timedelta | None = None,
    schedule_to_close_timeout: timedelta | None = None,
    heartbeat_timeout: timedelta | None = None,
    queue: QueueLike = DEFAULT_QUEUE,
    priority: int = DEFAULT_PRIORITY,
) -> asyncio.Future[Any]: ...
def execute_activity(
    activity: Callable[..., Any] | str,
    *args: Any,
    retry: RetryPolicy | None = None,
    start_to_close_timeout: timedelta | None = None,
    schedule_to_close_timeout: timedelta | None = None,
    heartbeat_timeout: timedelta | None = None,
    queue: QueueLike = DEFAULT_QUEUE,
    priority: int = DEFAULT_PRIORITY,
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
    placement = (queue_name(queue), check_priority(priority))
    call = call_of(activity, "activity", args)
    future: asyncio.Future[Any] = instance.loop.create_future()
    instance.commands.schedule_activity(
        call.name,
        call.args,
        retry.to_json() if retry else None,
        future,
        call.result_hint,
        timeouts,
        placement,
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


def on_update(
    name: str,
    handler: Callable[..., object],
    *,
    validator: Callable[..., object] | None = None,
) -> None:
    """Answer the update ``name`` (``handle.execute_update``): ``handler(*args)``'s return
    value is the caller's result, its exception the caller's ``tapeflow.UpdateFailed``, and
    the workflow goes on either way. Its annotations type the arguments and the result. It
    may be ``async`` (awaiting activities, timers, events): each update runs as a task of
    its own beside the workflow's code, as ``on_event`` callbacks do, so several may run at
    once. ``validator``, a plain function of the same arguments, runs first on the
    workflow's state: raising rejects the update before anything of it is recorded, so it
    must only look (no awaits, no commands, no changes). An update that comes while no
    handler has its name is rejected: register before the first ``await``. Registering a
    name again replaces its handler: an update has one answer (``on_event`` callbacks add
    up instead). The accepted update and its answer are in history, so a replay (or
    another worker) gives the same answer without validating it again."""
    instance = _instance()
    name = check_name(name, "update name")
    if not callable(handler):
        fail("on_update handler", handler, "a function")
    if validator is not None and (
        not callable(validator) or inspect.iscoroutinefunction(validator)
    ):
        fail("on_update validator", validator, "a plain (not async) function, or None")
    instance.updates.register(name, handler, validator)


async def wait_event(name: str, *, type: object = Any) -> Any:
    """The oldest external event ``name`` not yet returned here, waiting if there is none."""
    return await _instance().channels.wait(check_name(name, "event name"), type)


ParentClosePolicy: TypeAlias = Literal["terminate", "cancel", "abandon"]
"""What happens to a child still open when its parent's run closes: it is terminated, asked
to cancel, or left to go on."""


class ChildWorkflowHandle(Generic[R]):
    """A child workflow this workflow started: its id and first run, its result, events."""

    def __init__(self, workflow_id: str, run_id: str, result: asyncio.Future[R]) -> None:
        self.id = workflow_id
        self.run_id = run_id
        self._result = result

    def __repr__(self) -> str:
        return f"ChildWorkflowHandle({self.id!r})"

    def result(self) -> asyncio.Future[R]:
        """Await this for the child's result (the annotated type); raises
        ``tapeflow.ChildWorkflowError`` if it did not complete. Cancelling the wait (a
        timeout, a cancelled task) asks the child to cancel."""
        return self._result

    async def send_event(self, name: str, payload: Any = None) -> None:
        """Send the child an external event (see ``send_event``)."""
        await send_event(self.id, name, payload)


@overload
async def start_child_workflow(
    workflow: Callable[..., Awaitable[R]],
    *args: Any,
    id: str | None = None,
    version: str = "",
    execution_timeout: timedelta | None = None,
    parent_close_policy: ParentClosePolicy = "terminate",
    queue: QueueLike = DEFAULT_QUEUE,
    priority: int = DEFAULT_PRIORITY,
) -> ChildWorkflowHandle[R]: ...
@overload
async def start_child_workflow(
    workflow: str,
    *args: Any,
    id: str | None = None,
    version: str = "",
    execution_timeout: timedelta | None = None,
    parent_close_policy: ParentClosePolicy = "terminate",
    queue: QueueLike = DEFAULT_QUEUE,
    priority: int = DEFAULT_PRIORITY,
) -> ChildWorkflowHandle[Any]: ...
async def start_child_workflow(
    workflow: Callable[..., Awaitable[Any]] | str,
    *args: Any,
    id: str | None = None,
    version: str = "",
    execution_timeout: timedelta | None = None,
    parent_close_policy: ParentClosePolicy = "terminate",
    queue: QueueLike = DEFAULT_QUEUE,
    priority: int = DEFAULT_PRIORITY,
) -> ChildWorkflowHandle[Any]:
    """Start a child workflow and return its handle once it has started.

    The child is a workflow of its own (``client.get_handle(id)`` finds it), run by any
    worker that registered it, made in the transaction that records its start here. Its id
    is ``id``, else one derived from this workflow's id, run and the child's position.
    Raises ``tapeflow.ChildWorkflowError`` of type ``"WorkflowAlreadyExists"`` if a workflow
    has that id. ``parent_close_policy`` says what happens to the child if it is still
    open when this run closes (completes, fails, continues as new, is terminated...).
    ``execution_timeout`` limits the child as ``start_workflow``'s does."""
    instance = _instance()
    policy = check_choice(parent_close_policy, "parent_close_policy", get_args(ParentClosePolicy))
    options = ChildOptions(
        workflow_id=None if id is None else check_name(id, "child workflow id"),
        version=check_name(version, "version", allow_empty=True),
        execution_timeout=check_timeout(execution_timeout, "execution_timeout"),
        parent_close_policy=policy,
        queue=queue_name(queue),
        priority=check_priority(priority),
    )
    call = call_of(workflow, "workflow", args)
    command = instance.commands.start_child(
        call.name, call.args, options, instance.child_id, instance.recorded, call.result_hint
    )
    assert command.started is not None
    assert command.result is not None
    run_id = await command.started
    return ChildWorkflowHandle(command.workflow_id, run_id, command.result)


@overload
async def execute_child_workflow(
    workflow: Callable[..., Awaitable[R]],
    *args: Any,
    id: str | None = None,
    version: str = "",
    execution_timeout: timedelta | None = None,
    parent_close_policy: ParentClosePolicy = "terminate",
    queue: QueueLike = DEFAULT_QUEUE,
    priority: int = DEFAULT_PRIORITY,
) -> R: ...
@overload
async def execute_child_workflow(
    workflow: str,
    *args: Any,
    id: str | None = None,
    version: str = "",
    execution_timeout: timedelta | None = None,
    parent_close_policy: ParentClosePolicy = "terminate",
    queue: QueueLike = DEFAULT_QUEUE,
    priority: int = DEFAULT_PRIORITY,
) -> Any: ...
async def execute_child_workflow(
    workflow: Callable[..., Awaitable[Any]] | str,
    *args: Any,
    id: str | None = None,
    version: str = "",
    execution_timeout: timedelta | None = None,
    parent_close_policy: ParentClosePolicy = "terminate",
    queue: QueueLike = DEFAULT_QUEUE,
    priority: int = DEFAULT_PRIORITY,
) -> Any:
    """Run a child workflow and return its result: ``start_child_workflow``, then its
    ``result()``. Cancelling the wait cancels the child."""
    child = await start_child_workflow(
        workflow,
        *args,
        id=id,
        version=version,
        execution_timeout=execution_timeout,
        parent_close_policy=parent_close_policy,
        queue=queue,
        priority=priority,
    )
    return await child.result()


async def send_event(workflow_id: str, name: str, payload: Any = None) -> None:
    """Send an external event to any workflow, by id (its latest run), as the client's
    ``send_event`` does: recorded in this workflow's history and delivered once, in the
    transaction of this task. Returns once the delivery is known; raises
    ``tapeflow.WorkflowNotFound`` if there is no such workflow, and
    ``tapeflow.WorkflowAlreadyCompleted`` if it has ended."""
    instance = _instance()
    target = check_name(workflow_id, "workflow id")
    encoded = to_json(payload, what=f"payload of event {name!r}")
    future: asyncio.Future[None] = instance.loop.create_future()
    instance.commands.send_event(target, check_name(name, "event name"), encoded, future)
    await future


def continue_as_new(*args: Any) -> NoReturn:
    """End this run now and start the next run of the same workflow id with ``args`` and an
    empty history, in one transaction: how a workflow that runs forever keeps its history
    short (see ``info().history_length``). Never returns. Events that came and that no
    ``wait_event`` returned (and no ``on_event`` callback saw) go to the next run; open
    children are closed as their ``parent_close_policy`` says; ``result()`` on the
    workflow's handle follows to the last run. The next run has no ``execution_timeout``."""
    instance = _instance()
    raise instance.continue_as_new(instance.definition.signature.encode_args(args))
