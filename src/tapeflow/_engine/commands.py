"""The workflow's outstanding commands: one small state machine per activity and timer.

Each command gets the next sequence number when the workflow issues it, so the same code
fed the same history issues the same numbers. Illegal moves (a completion for something
never scheduled, a timer firing twice) mean the history and the code disagree.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from tapeflow.converter import from_json
from tapeflow.errors import (
    ChildWorkflowError,
    InvalidArgument,
    NonDeterminismError,
    PayloadError,
    TapeflowError,
    WorkflowAlreadyCompleted,
    WorkflowNotFound,
)
from tapeflow.history import (
    ActivityCancelled,
    ActivityScheduled,
    ChildWorkflowCancelRequested,
    ChildWorkflowClosed,
    ChildWorkflowScheduled,
    Decision,
    EventSent,
    Failure,
    JSONValue,
    MarkerRecorded,
    TimerCancelled,
    TimerStarted,
)

SIDE_EFFECT = "side_effect"
"""The name of the marker a ``side_effect`` records its value in."""


class CommandState(enum.Enum):
    ACTIVE = "active"
    DONE = "done"
    CANCELLED = "cancelled"


_LEGAL: dict[CommandState, frozenset[CommandState]] = {
    CommandState.ACTIVE: frozenset({CommandState.DONE, CommandState.CANCELLED}),
    # a cancelled timer or activity may still see its outcome arrive: it is dropped
    CommandState.CANCELLED: frozenset({CommandState.CANCELLED}),
    CommandState.DONE: frozenset(),
}


@dataclass
class _Machine:
    seq: int
    what: str
    state: CommandState = CommandState.ACTIVE

    def move(self, to: CommandState) -> bool:
        """Move to ``to``; False when the outcome must be dropped (already cancelled)."""
        if to not in _LEGAL[self.state]:
            raise NonDeterminismError(
                f"{self.what} (seq {self.seq}) cannot go from {self.state.value} to {to.value}: "
                "the history does not match the workflow code"
            )
        dropped = self.state is CommandState.CANCELLED
        self.state = to
        return not dropped


@dataclass
class ActivityCommand(_Machine):
    future: asyncio.Future[Any] | None = None
    result_hint: object = Any
    name: str = ""


@dataclass
class TimerCommand(_Machine):
    handle: asyncio.TimerHandle | None = None


@dataclass
class ChildCommand(_Machine):
    workflow_id: str = ""
    started: asyncio.Future[str] | None = None
    """Set to the child's run id once its start is seen."""
    result: asyncio.Future[Any] | None = None
    result_hint: object = Any
    run_id: str | None = None
    cancel_reason: str | None = None
    """Cancelled before its start was seen: asked to cancel once it is (its id may have
    been taken, by a workflow that is not ours to cancel)."""


@dataclass
class SendCommand(_Machine):
    workflow_id: str = ""
    future: asyncio.Future[None] | None = None


@dataclass(frozen=True)
class ChildOptions:
    """What a child is started with, besides its name and arguments."""

    workflow_id: str | None
    version: str
    execution_timeout: float | None
    parent_close_policy: Literal["terminate", "cancel", "abandon"]
    queue: str = "default"
    priority: int = 5


class Commands:
    """Issues sequence numbers, records decisions, and routes outcomes back to futures."""

    def __init__(self) -> None:
        self._next_seq = 1
        self._activities: dict[int, ActivityCommand] = {}
        self._timers: dict[int, TimerCommand] = {}
        self._timer_seq_by_handle: dict[int, int] = {}
        self._cancelled_timers: set[int] = set()
        self._children: dict[int, ChildCommand] = {}
        self._sends: dict[int, SendCommand] = {}
        self._decisions: list[Decision] = []

    def take_decisions(self) -> list[Decision]:
        decisions, self._decisions = self._decisions, []
        return decisions

    def decide(self, decision: Decision) -> None:
        self._decisions.append(decision)

    def _seq(self) -> int:
        seq, self._next_seq = self._next_seq, self._next_seq + 1
        return seq

    @property
    def next_seq(self) -> int:
        """The seq the next command will get: where a replayed task's history is read to
        decide a value already recorded (a side effect's, a patch's branch)."""
        return self._next_seq

    # -- activities -------------------------------------------------------------------------

    def schedule_activity(
        self,
        name: str,
        args: list[JSONValue],
        retry: dict[str, float | int | None] | None,
        future: asyncio.Future[Any],
        result_hint: object,
        timeouts: tuple[float | None, float | None, float | None] = (None, None, None),
        placement: tuple[str, int] = ("default", 5),
    ) -> int:
        """``timeouts``: start to close, schedule to close, heartbeat, in seconds;
        ``placement``: its queue and priority there."""
        seq = self._seq()
        self._activities[seq] = ActivityCommand(
            seq, f"activity {name!r}", future=future, result_hint=result_hint, name=name
        )
        start_to_close, schedule_to_close, heartbeat = timeouts
        self.decide(
            ActivityScheduled(
                seq=seq,
                name=name,
                args=args,
                retry=retry,
                start_to_close_timeout=start_to_close,
                schedule_to_close_timeout=schedule_to_close,
                heartbeat_timeout=heartbeat,
                queue=placement[0],
                priority=placement[1],
            )
        )
        future.add_done_callback(lambda f: self._activity_future_done(seq, f))
        return seq

    def _activity_future_done(self, seq: int, future: asyncio.Future[Any]) -> None:
        """An activity's awaiter was cancelled before its outcome came: record that the
        workflow no longer wants it (the task is dropped, a running attempt told)."""
        command = self._activities.get(seq)
        if future.cancelled() and command is not None and command.state is CommandState.ACTIVE:
            command.move(CommandState.CANCELLED)
            self.decide(ActivityCancelled(seq=seq))

    def resolve_activity(self, seq: int) -> ActivityCommand | None:
        """The activity whose outcome arrived, or None if the workflow stopped caring."""
        command = self._activities.get(seq)
        if command is None:
            raise NonDeterminismError(
                f"history has an outcome for activity seq {seq}, "
                "which this workflow code never scheduled"
            )
        keep = command.move(
            CommandState.DONE if command.state is CommandState.ACTIVE else CommandState.CANCELLED
        )
        del self._activities[seq]
        return command if keep else None

    # -- timers -----------------------------------------------------------------------------

    def start_timer(self, handle: asyncio.TimerHandle) -> None:
        seq = self._seq()
        self._timers[seq] = TimerCommand(seq, "timer", handle=handle)
        self._timer_seq_by_handle[id(handle)] = seq
        try:
            fire_at = datetime.fromtimestamp(handle.when(), UTC)
        except (OverflowError, OSError, ValueError):
            raise InvalidArgument(
                "a workflow timer cannot be due past the year 9999 (use math.inf to wait forever)"
            ) from None
        self.decide(TimerStarted(seq=seq, fire_at=fire_at))

    def cancel_timer(self, handle: asyncio.TimerHandle) -> None:
        seq = self._timer_seq_by_handle.pop(id(handle), None)
        command = self._timers.get(seq) if seq is not None else None
        if command is not None and command.state is CommandState.ACTIVE:
            command.move(CommandState.CANCELLED)
            del self._timers[command.seq]
            self._cancelled_timers.add(command.seq)
            started = [d for d in self._decisions if isinstance(d, TimerStarted) and d.seq == seq]
            if started:  # started and cancelled in one activation: nothing to record
                self._decisions.remove(started[0])
            else:
                self.decide(TimerCancelled(seq=command.seq))

    def fire_timer(self, seq: int) -> asyncio.TimerHandle | None:
        command = self._timers.pop(seq, None)
        if command is None:
            if seq in self._cancelled_timers:  # cancelled earlier: its firing is dropped, once
                self._cancelled_timers.discard(seq)
                return None
            raise NonDeterminismError(
                f"history has timer seq {seq} firing, which this workflow code never started"
            )
        command.move(CommandState.DONE)
        if command.handle is not None:
            self._timer_seq_by_handle.pop(id(command.handle), None)
        return command.handle

    # -- markers ----------------------------------------------------------------------------

    def record_marker(self, name: str, details: JSONValue = None) -> int:
        """Note ``name`` in history; replay checks the code notes the same, in order."""
        seq = self._seq()
        self.decide(MarkerRecorded(seq=seq, name=name, details=details))
        return seq

    def side_effect(
        self, compute: Callable[[], JSONValue], recorded: Mapping[int, Decision]
    ) -> JSONValue:
        """A value made once and kept in history: on replay, the recorded one (``recorded``,
        by seq) comes back and ``compute`` is not called."""
        found = recorded.get(self._next_seq)
        if isinstance(found, MarkerRecorded) and found.name == SIDE_EFFECT:
            value = found.details
        else:
            value = compute()
        self.record_marker(SIDE_EFFECT, value)
        return value

    # -- child workflows -------------------------------------------------------------------

    def start_child(
        self,
        name: str,
        args: list[JSONValue],
        options: ChildOptions,
        derived_id: Callable[[int], str],
        recorded: Mapping[int, Decision],
        result_hint: object,
    ) -> ChildCommand:
        """Start a child: its id is ``options.workflow_id``, else ``derived_id(seq)`` the
        first time and the one history recorded (``recorded``, by seq) on replay."""
        seq = self._seq()
        found = recorded.get(seq)
        child_id = options.workflow_id
        if child_id is None and isinstance(found, ChildWorkflowScheduled):
            child_id = found.workflow_id
        elif child_id is None:
            child_id = derived_id(seq)
        loop = asyncio.get_running_loop()
        started: asyncio.Future[str] = loop.create_future()
        result: asyncio.Future[Any] = loop.create_future()
        command = ChildCommand(
            seq,
            f"child workflow {child_id!r}",
            workflow_id=child_id,
            started=started,
            result=result,
            result_hint=result_hint,
        )
        self._children[seq] = command
        self.decide(
            ChildWorkflowScheduled(
                seq=seq,
                workflow_id=child_id,
                name=name,
                args=args,
                version=options.version,
                execution_timeout=options.execution_timeout,
                parent_close_policy=options.parent_close_policy,
                queue=options.queue,
                priority=options.priority,
            )
        )
        started.add_done_callback(lambda f: self._child_abandoned(seq, f))
        result.add_done_callback(lambda f: self._child_abandoned(seq, f))
        return command

    def _child_abandoned(self, seq: int, future: asyncio.Future[Any]) -> None:
        """The child's start or result was awaited by a task that was cancelled: the
        workflow no longer wants it, so the child is asked to cancel."""
        command = self._children.get(seq)
        if not future.cancelled() or command is None or command.state is not CommandState.ACTIVE:
            return
        command.move(CommandState.CANCELLED)
        reason = "its parent workflow stopped waiting for it"
        if command.run_id is None:
            command.cancel_reason = reason
        else:
            self._cancel_child(command, reason)

    def _cancel_child(self, command: ChildCommand, reason: str) -> None:
        self.decide(
            ChildWorkflowCancelRequested(
                seq=command.seq, workflow_id=command.workflow_id, reason=reason
            )
        )

    def child_started(self, seq: int, run_id: str) -> None:
        command = self._child(seq)
        command.run_id = run_id
        if command.cancel_reason is not None:
            self._cancel_child(command, command.cancel_reason)
            command.cancel_reason = None
        if command.started is not None and not command.started.done():
            command.started.set_result(run_id)

    def child_start_failed(self, seq: int, failure: Failure) -> None:
        command = self._settle_child(seq)
        error = ChildWorkflowError(command.workflow_id, failure.type, failure.message)
        if command.started is not None and not command.started.done():
            command.started.set_exception(error)
        if command.result is not None and not command.result.done():
            command.result.cancel()  # its start raises; no one can wait for it

    def child_closed(self, closed: ChildWorkflowClosed) -> None:
        command = self._settle_child(closed.seq)
        future = command.result
        if future is None or future.done():
            return
        if closed.failure is not None:
            failure = closed.failure
            future.set_exception(
                ChildWorkflowError(
                    closed.workflow_id,
                    failure.type,
                    failure.message,
                    status=closed.status,
                    traceback=failure.traceback,
                )
            )
            return
        try:
            value = from_json(closed.result, command.result_hint, what=f"result of {command.what}")
        except PayloadError as exc:
            future.set_exception(exc)
        else:
            future.set_result(value)

    def _child(self, seq: int) -> ChildCommand:
        command = self._children.get(seq)
        if command is None:
            raise NonDeterminismError(
                f"history has news of child workflow seq {seq}, "
                "which this workflow code never started"
            )
        return command

    def _settle_child(self, seq: int) -> ChildCommand:
        """The child whose end (or failed start) arrived, no longer outstanding."""
        command = self._child(seq)
        command.move(
            CommandState.DONE if command.state is CommandState.ACTIVE else CommandState.CANCELLED
        )
        del self._children[seq]
        return command

    # -- events for other workflows --------------------------------------------------------

    def send_event(
        self, workflow_id: str, name: str, payload: JSONValue, future: asyncio.Future[None]
    ) -> None:
        seq = self._seq()
        self._sends[seq] = SendCommand(
            seq, f"event {name!r} for {workflow_id!r}", workflow_id=workflow_id, future=future
        )
        self.decide(EventSent(seq=seq, workflow_id=workflow_id, name=name, payload=payload))

    def event_sent(self, seq: int, failure: Failure | None) -> None:
        """An event's receipt: delivered, or not (``failure``)."""
        command = self._sends.pop(seq, None)
        if command is None:
            raise NonDeterminismError(
                f"history has a receipt for event seq {seq}, which this workflow code never sent"
            )
        command.move(CommandState.DONE)
        future = command.future
        if future is None or future.done():
            return
        if failure is None:
            future.set_result(None)
            return
        error: TapeflowError
        if failure.type == WorkflowNotFound.__name__:
            error = WorkflowNotFound(command.workflow_id)
        else:
            error = WorkflowAlreadyCompleted(command.workflow_id, "ended")
        future.set_exception(error)

    @property
    def pending(self) -> int:
        return len(self._activities) + len(self._timers) + len(self._children) + len(self._sends)
