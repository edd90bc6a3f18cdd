"""One live workflow: its loop, its commands, its events and vars, fed one activation at a time.

``activate(activation) -> decisions`` is the whole interface: the worker, the debugger and
the replay tests all drive a workflow through it, from stored or hand-built history.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from random import Random
from typing import TYPE_CHECKING, Any

from tapeflow._definition import Definition
from tapeflow._engine import sandbox
from tapeflow._engine.channels import EventChannels
from tapeflow._engine.commands import Commands
from tapeflow._engine.loop import WorkflowEventLoop
from tapeflow._engine.patches import Patches
from tapeflow._engine.task_failures import fails_the_task
from tapeflow._engine.updates import Updates
from tapeflow.converter import from_json
from tapeflow.errors import (
    ActivityError,
    NonDeterminismError,
    PayloadError,
    WorkflowInterrupted,
)
from tapeflow.history import (
    ActivityCompleted,
    ActivityFailed,
    ChildWorkflowClosed,
    ChildWorkflowStarted,
    ChildWorkflowStartFailed,
    Decision,
    EventDelivered,
    EventDeliveryFailed,
    EventReceived,
    Failure,
    HistoryEvent,
    Incoming,
    JSONValue,
    Terminal,
    TimerFired,
    UpdateAccepted,
    UpdateRejected,
    UpdateRequested,
    WorkflowCancelRequested,
    WorkflowContinuedAsNew,
    WorkflowExecutionCancelled,
    WorkflowExecutionCompleted,
    WorkflowExecutionFailed,
    WorkflowExecutionStarted,
    WorkflowTaskStarted,
)

if TYPE_CHECKING:
    from tapeflow.backends.base import ParentLink

sandbox.install()  # at import: before user modules bind names such as ``from time import sleep``


class ContinueAsNew(BaseException):
    """Raised by ``workflow.continue_as_new`` to end the workflow's code where it is; a
    BaseException, so that no ``except Exception`` in workflow code stops it."""


@dataclass(frozen=True)
class Activation:
    """The events one workflow task hands to the workflow, at one instant of workflow time."""

    at: datetime
    events: Sequence[Incoming]
    replaying: bool = False
    position: int | None = None
    """When replaying: the sequence number of the task's WorkflowTaskStarted in history."""
    positions: Sequence[int] = ()
    """When replaying: the events' sequence numbers in history, so errors can name them."""
    recorded: Sequence[Decision] = ()
    """When replaying: the decisions history has for this activation, so that a value the
    workflow recorded (``side_effect``) is read back instead of made again."""

    def describe(self, index: int) -> str:
        event = self.events[index]
        if index < len(self.positions):
            return f"history event #{self.positions[index]} ({event.kind})"
        return f"new event {event.kind}"


@dataclass(frozen=True)
class WorkflowInfo:
    workflow_id: str
    run_id: str
    """This run's id; empty when replaying a history that is no stored run's."""
    name: str
    version: str
    started_at: datetime
    """When the workflow was due to start: its ``start_at``, else when it was started."""
    is_replaying: bool
    history_length: int = 0
    """Events in the run's history so far: those before this task, its start and what it
    brought in (its own decisions not yet counted). A workflow that grows long continues as
    new past some length."""


class WorkflowInstance:
    def __init__(self, definition: Definition, workflow_id: str, run_id: str = "") -> None:
        self.definition = definition
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.commands = Commands()
        self.patches = Patches(self.commands)
        self.loop = WorkflowEventLoop(self.commands, runtime=self)  # type: ignore[abstract]
        self.channels = EventChannels(self.loop, self._callback_failed)
        self.updates = Updates(self.loop, self.commands, self._callback_failed, self._main_done)
        self.vars: dict[str, Any] = {}
        self._stored_vars: dict[str, Any] = {}
        """The vars as JSON (a datetime as its text): what a commit stores."""
        self._vars_changed = False
        self.random = Random(workflow_id)
        """Seeded by the workflow id: the same numbers on every replay."""
        self.history_length = 0
        """How many history events this instance has seen: the worker's cache key."""
        self.finished = False
        self._started: WorkflowExecutionStarted | None = None
        self._main: asyncio.Task[Any] | None = None
        self._main_began = False
        """Whether the main task has run its first step (a cancel can reach its code)."""
        self._callback_error: BaseException | None = None
        self._cancel_reason: str | None = None
        """Set once a cancel was requested: a CancelledError escaping then cancels the run."""
        self._now = datetime.fromtimestamp(0, UTC)
        self._replaying = False
        self._length_at_start = 0
        self.recorded: dict[int, Decision] = {}
        """The decisions history has for the activation being replayed, by seq."""
        self.parent: ParentLink | None = None
        """The parent run, for a child: the worker keeps it here for the tasks it runs
        ahead, whose plans report the child's end."""
        self._next_run_args: list[JSONValue] | None = None
        """Set by ``continue_as_new``: the next run's arguments."""
        self._conditions: list[tuple[Callable[[], object], asyncio.Future[None]]] = []

    # -- what the in-workflow API reads -----------------------------------------------------

    @property
    def now(self) -> datetime:
        return self._now

    @property
    def trace_context(self) -> dict[str, str] | None:
        """The trace context its start carried: the parent of its workers' spans."""
        return None if self._started is None else self._started.trace_context

    @property
    def info(self) -> WorkflowInfo:
        started = self._started
        assert started is not None, "no workflow code runs before the start event"
        return WorkflowInfo(
            workflow_id=self.workflow_id,
            run_id=self.run_id,
            name=started.name,
            version=started.version,
            started_at=started.started_at.astimezone(UTC),
            is_replaying=self._replaying,
            history_length=self._length_at_start,
        )

    # -- driving ---------------------------------------------------------------------------

    def activate(self, activation: Activation) -> list[Decision]:
        """Apply the events, run the workflow until it waits again, return its decisions.

        Raises what fails the task (TASK_FAILURES) and, from workflow code, only Exceptions:
        SystemExit and the like become WorkflowInterrupted, so that no caller (worker,
        debugger, replay test) is stopped by what the workflow raised."""
        try:
            return self._activate(activation)
        except (Exception, asyncio.CancelledError):
            raise
        except BaseException as exc:  # asyncio lets SystemExit, KeyboardInterrupt out of tasks
            raise WorkflowInterrupted(f"workflow code raised {_described(exc)}") from exc

    def _activate(self, activation: Activation) -> list[Decision]:
        if self.finished:
            where = (
                "a new task"
                if activation.position is None
                else (f"history event #{activation.position} (workflow_task_started)")
            )
            raise NonDeterminismError(
                f"{where}: workflow {self.workflow_id!r} already finished, yet history goes on"
            )
        self._now = activation.at.astimezone(UTC)
        self._replaying = activation.replaying
        self._length_at_start = self.history_length + 1 + len(activation.events)
        self.recorded = {d.seq: d for d in activation.recorded if hasattr(d, "seq")}
        self.patches.begin(self.recorded if activation.replaying else None)
        self.updates.begin()
        self.loop.set_time(self._now.timestamp())
        for index, event in enumerate(activation.events):
            try:
                self._apply(event)
            except NonDeterminismError as exc:
                raise NonDeterminismError(f"{activation.describe(index)}: {exc}") from exc
        self.loop.run_until_quiet()
        while self._conditions_met():  # what a met condition wakes may meet another
            self.loop.run_until_quiet()
        if self.loop.violation is not None:
            raise self.loop.violation
        self._conclude()
        return self.commands.take_decisions()

    def task_events(
        self, incoming: Sequence[Incoming], decisions: Sequence[Decision]
    ) -> list[HistoryEvent]:
        """What the last activation's task appends to history: its WorkflowTaskStarted,
        what it brought in as history keeps it (an update request as the UpdateAccepted it
        became, or not at all if it was rejected), then its decisions; nothing if it only
        rejected updates, so that a rejection leaves no trace."""
        kept = self.updates.recorded(incoming)
        if incoming and not kept and not decisions:
            return []
        return [WorkflowTaskStarted(at=self._now), *kept, *decisions]

    def rejected_updates(self) -> list[UpdateRejected]:
        """The update requests the last activation rejected: their answers, for the
        caller, outside history."""
        return list(self.updates.rejected)

    def wait_for(self, predicate: Callable[[], object]) -> asyncio.Future[None]:
        """A future set once ``predicate()`` is true, checked after every change of the
        workflow's state (each activation's events, and each wake-up they cause)."""
        future: asyncio.Future[None] = self.loop.create_future()
        self._conditions.append((predicate, future))
        return future

    def _conditions_met(self) -> bool:
        """Resolve the waits whose predicate holds now; whether any was."""
        met = False
        for entry in list(self._conditions):
            predicate, future = entry
            if future.done():  # cancelled (a timeout)
                self._conditions.remove(entry)
                continue
            error: Exception | None = None
            try:
                holds = bool(predicate())
            except Exception as exc:  # raised where the workflow waits, not in the worker
                holds, error = True, exc
            if holds:
                self._conditions.remove(entry)
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)
                met = True
        return met

    def set_var(self, name: str, value: Any, stored: Any) -> None:
        """``value`` for the debugger, ``stored`` (its JSON) for the commits."""
        self.vars[name] = value
        self._stored_vars[name] = stored
        self._vars_changed = True

    def changed_vars(self) -> dict[str, Any] | None:
        """The vars as JSON, if ``set_var`` ran since this was last asked (else None): each
        commit stores them only when they changed, so a task that sets none writes no
        more. (An instance whose commit fails is dropped, and its replacement replays
        them.)"""
        if not self._vars_changed:
            return None
        self._vars_changed = False
        return dict(self._stored_vars)

    def close(self) -> None:
        """Drop the instance (evicted, or its replay done with): its coroutines are ended
        now, their ``finally`` blocks unable to act (see ``WorkflowEventLoop.close``), not
        left to the garbage collector to run outside any workflow."""
        self.loop.close()

    def _apply(self, event: Incoming) -> None:
        match event:
            case WorkflowExecutionStarted():
                self._start(event)
            case ActivityCompleted(seq=seq, result=result):
                command = self.commands.resolve_activity(seq)
                if command is not None and command.future and not command.future.done():
                    try:
                        value = from_json(
                            result, command.result_hint, what=f"result of {command.what}"
                        )
                    except PayloadError as exc:
                        command.future.set_exception(exc)
                    else:
                        command.future.set_result(value)
            case ActivityFailed(seq=seq, failure=failure, attempt=attempt):
                command = self.commands.resolve_activity(seq)
                if command is not None and command.future and not command.future.done():
                    command.future.set_exception(
                        ActivityError(
                            command.name,
                            failure.type,
                            failure.message,
                            attempt=attempt,
                            traceback=failure.traceback,
                        )
                    )
            case TimerFired(seq=seq):
                handle = self.commands.fire_timer(seq)
                if handle is not None:
                    self.loop.fire(handle)
            case EventReceived(name=name, payload=payload):
                self.channels.deliver(name, payload)
            case ChildWorkflowStarted(seq=seq, run_id=run_id):
                self.commands.child_started(seq, run_id)
            case ChildWorkflowStartFailed(seq=seq, failure=failure):
                self.commands.child_start_failed(seq, failure)
            case ChildWorkflowClosed():
                self.commands.child_closed(event)
            case EventDelivered(seq=seq):
                self.commands.event_sent(seq, None)
            case EventDeliveryFailed(seq=seq, failure=failure):
                self.commands.event_sent(seq, failure)
            case UpdateRequested() if self._replaying:
                raise NonDeterminismError(
                    "history holds an update request, which a task records only once "
                    "accepted (update_accepted)"
                )
            case UpdateRequested() | UpdateAccepted():
                self.updates.arrive(event)
            case WorkflowCancelRequested() if self._cancel_reason is not None:
                pass  # asked already (by its parent, say): once is what it sees
            case WorkflowCancelRequested(reason=reason):
                self._cancel_reason = reason
                main = self._main
                if main is not None and self._main_began:  # at its current await, as asyncio
                    main.cancel(reason)
                elif main is not None:  # started in this activation: cancelled now, it would
                    # stop before its first line, out of reach of its own ``try``; so, at its
                    # first await (after its first step, which is already due)
                    self.loop.call_soon(main.cancel, reason)

    def _start(self, event: WorkflowExecutionStarted) -> None:
        if self._started is not None:
            raise NonDeterminismError(f"workflow {self.workflow_id!r} started twice in history")
        self._started = event
        self._main = self.loop.create_task(self._run_main(event), name=self.workflow_id)

    async def _run_main(self, event: WorkflowExecutionStarted) -> Any:
        self._main_began = True
        args = self.definition.signature.decode_args(event.args)
        return await self.definition.function(*args)

    def _main_done(self) -> bool:
        return self._main is not None and self._main.done()

    def _callback_failed(self, exc: BaseException) -> None:
        if self._callback_error is None:
            self._callback_error = exc

    def child_id(self, seq: int) -> str:
        """The id of a child started without one: this workflow's, this run's, its seq."""
        run = f"{self.run_id[:8]}/" if self.run_id else ""
        return f"{self.workflow_id}/{run}{seq}"

    def continue_as_new(self, args: list[JSONValue]) -> ContinueAsNew:
        """Note the next run's arguments; the caller raises what this returns."""
        if self._next_run_args is None:
            self._next_run_args = args
        return ContinueAsNew()

    def _conclude(self) -> None:
        main = self._main
        if self._next_run_args is not None:
            self._continue()
            return
        if self._callback_error is not None and fails_the_task(self._callback_error):
            raise self._callback_error
        if main is None:
            return
        if not main.done():
            if self._callback_error is not None:
                self._fail(self._callback_error)
            return
        if main.cancelled():
            if self._cancel_reason is not None:
                self._end(WorkflowExecutionCancelled(reason=self._cancel_reason))
                return
            self._fail(asyncio.CancelledError("the workflow's main task was cancelled"))
            return
        exc = main.exception()
        if exc is not None and fails_the_task(exc):
            raise exc
        if exc is not None:
            self._fail(exc)
            return
        try:
            result = self.definition.signature.encode_result(main.result())
        except PayloadError as err:
            self._fail(err)
            return
        self._end(WorkflowExecutionCompleted(result=result))

    def _end(self, ending: Terminal) -> None:
        """End the run: the updates whose handler still runs fail first (nothing follows
        an ending in history), so that no caller waits for them for ever."""
        self.finished = True
        self.updates.abandon(_ENDED[type(ending)])
        self.commands.decide(ending)

    def _continue(self) -> None:
        """End the run, continued by the next: the events not handled here go with it."""
        assert self._started is not None
        assert self._next_run_args is not None
        carried = [EventReceived(name, payload) for name, payload in self.channels.unhandled()]
        self._end(
            WorkflowContinuedAsNew(
                args=self._next_run_args,
                run_id=str(uuid.uuid4()),  # not from random(): every run draws the same
                carried=carried,
                version=self._started.version,
            )
        )

    def _fail(self, exc: BaseException) -> None:
        self._end(WorkflowExecutionFailed(failure=Failure.from_exception(exc)))


_ENDED: dict[type[Terminal], str] = {
    WorkflowExecutionCompleted: "completed",
    WorkflowExecutionFailed: "failed",
    WorkflowExecutionCancelled: "was cancelled",
    WorkflowContinuedAsNew: "continued as new",
}
"""How each ending is told to the updates it leaves unfinished."""


def running_instance() -> WorkflowInstance | None:
    """The workflow instance whose code runs on this thread now, if any."""
    loop = asyncio._get_running_loop()
    if isinstance(loop, WorkflowEventLoop) and isinstance(loop.runtime, WorkflowInstance):
        return loop.runtime
    return None


def _described(exc: BaseException) -> str:
    return f"{type(exc).__qualname__}: {exc}" if str(exc) else type(exc).__qualname__
