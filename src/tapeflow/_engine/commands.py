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
from typing import Any

from tapeflow.errors import InvalidArgument, NonDeterminismError
from tapeflow.history import (
    ActivityCancelled,
    ActivityScheduled,
    Decision,
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


class Commands:
    """Issues sequence numbers, records decisions, and routes outcomes back to futures."""

    def __init__(self) -> None:
        self._next_seq = 1
        self._activities: dict[int, ActivityCommand] = {}
        self._timers: dict[int, TimerCommand] = {}
        self._timer_seq_by_handle: dict[int, int] = {}
        self._cancelled_timers: set[int] = set()
        self._decisions: list[Decision] = []

    def take_decisions(self) -> list[Decision]:
        decisions, self._decisions = self._decisions, []
        return decisions

    def decide(self, decision: Decision) -> None:
        self._decisions.append(decision)

    def _seq(self) -> int:
        seq, self._next_seq = self._next_seq, self._next_seq + 1
        return seq

    # -- activities -------------------------------------------------------------------------

    def schedule_activity(
        self,
        name: str,
        args: list[JSONValue],
        retry: dict[str, float | int | None] | None,
        future: asyncio.Future[Any],
        result_hint: object,
        timeouts: tuple[float | None, float | None, float | None] = (None, None, None),
    ) -> int:
        """``timeouts``: start to close, schedule to close, heartbeat, in seconds."""
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
        self, compute: Callable[[], JSONValue], recorded: Mapping[int, MarkerRecorded]
    ) -> JSONValue:
        """A value made once and kept in history: on replay, the recorded one (``recorded``,
        by seq) comes back and ``compute`` is not called."""
        seq = self._next_seq
        found = recorded.get(seq)
        value = found.details if found is not None and found.name == SIDE_EFFECT else compute()
        self.record_marker(SIDE_EFFECT, value)
        return value

    @property
    def pending(self) -> int:
        return len(self._activities) + len(self._timers)
