"""The tape: one frozen dataclass per kind of history event. Pure data, no behaviour.

A workflow's history is an append-only list of these, numbered by a per-workflow sequence.
Each workflow task appends a ``WorkflowTaskStarted`` (its deterministic time), the inbox
events it consumed, then the decisions the workflow took. Decisions are checked against the
recorded ones on replay.

Updates are the one exception to "what was consumed is in history": a request
(``UpdateRequested``) enters history as the ``UpdateAccepted`` its validator let in, or not
at all; the outcome of one it rejected (``UpdateRejected``) is stored only where the caller
reads it (see ``tapeflow._engine.updates``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from traceback import format_exception
from typing import Annotated, Any, Literal, TypeAlias, get_args

from pydantic import Field, TypeAdapter
from typing_extensions import TypeIs

from tapeflow.errors import NonRetryableError

JSONValue: TypeAlias = Any
"""A value already in JSON form (dicts, lists, str, int, float, bool, None)."""


MAX_FAILURE_TEXT = 32 * 1024
"""Longer error messages and tracebacks are cut to this many characters when recorded."""


@dataclass(frozen=True)
class Failure:
    """An error as recorded: enough to raise it again, never a pickled exception."""

    type: str
    message: str
    traceback: str | None = None
    encoded: Annotated[JSONValue, Field(exclude_if=lambda value: value is None)] = None
    """The message and traceback as a payload codec stored them (then ``message`` only says
    so); None, and not stored, without a codec. Decoded back on the way out."""

    @classmethod
    def from_exception(cls, exc: BaseException) -> Failure:
        if isinstance(exc, NonRetryableError):  # the activity named its failure's type
            kind, message = exc.type, exc.message
        else:
            kind, message = type(exc).__qualname__, str(exc)
        return cls(
            type=_cut(kind),
            message=_cut(message),
            traceback=_cut("".join(format_exception(exc))),
        )


def _cut(text: str) -> str:
    """At most MAX_FAILURE_TEXT characters, lone surrogates spelled out (``\\ud800``):
    UTF-8 cannot hold them, and a failure that cannot be stored would wedge the workflow."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) <= MAX_FAILURE_TEXT:
        return text
    return text[:MAX_FAILURE_TEXT] + f"... [{len(text) - MAX_FAILURE_TEXT} characters cut]"


@dataclass(frozen=True)
class WorkflowExecutionStarted:
    name: str
    version: str
    args: list[JSONValue]
    started_at: datetime
    trace_context: dict[str, str] | None = None
    """The W3C trace context of the span that started it (``tapeflow._tracing``): its
    tasks' spans are children of that span. None: started untraced, or before tracing."""
    kind: Literal["workflow_started"] = "workflow_started"


@dataclass(frozen=True)
class WorkflowTaskStarted:
    """Opens one activation; its time is what ``workflow.now()`` returns during it."""

    at: datetime
    kind: Literal["workflow_task_started"] = "workflow_task_started"


@dataclass(frozen=True)
class ActivityScheduled:
    seq: int
    name: str
    args: list[JSONValue]
    retry: dict[str, float | int | None] | None = None
    start_to_close_timeout: float | None = None
    """Seconds; None: no limit (so for the two below)."""
    schedule_to_close_timeout: float | None = None
    heartbeat_timeout: float | None = None
    queue: str = "default"
    priority: int = 5
    kind: Literal["activity_scheduled"] = "activity_scheduled"


@dataclass(frozen=True)
class ActivityCompleted:
    seq: int
    result: JSONValue
    attempt: int
    kind: Literal["activity_completed"] = "activity_completed"


@dataclass(frozen=True)
class ActivityFailed:
    seq: int
    failure: Failure
    attempt: int
    kind: Literal["activity_failed"] = "activity_failed"


@dataclass(frozen=True)
class TimerStarted:
    seq: int
    fire_at: datetime
    kind: Literal["timer_started"] = "timer_started"


@dataclass(frozen=True)
class TimerFired:
    seq: int
    kind: Literal["timer_fired"] = "timer_fired"


@dataclass(frozen=True)
class TimerCancelled:
    seq: int
    kind: Literal["timer_cancelled"] = "timer_cancelled"


@dataclass(frozen=True)
class EventReceived:
    name: str
    payload: JSONValue
    kind: Literal["event_received"] = "event_received"


@dataclass(frozen=True)
class WorkflowCancelRequested:
    """A client asked the workflow to cancel (recorded once): its code sees
    ``asyncio.CancelledError`` at the ``await`` it is at."""

    reason: str
    kind: Literal["workflow_cancel_requested"] = "workflow_cancel_requested"


@dataclass(frozen=True)
class ExecutionTimeoutReached:
    """The run's ``execution_timeout`` (seconds from when it was due to start) has passed:
    a timer the backend set when it made the run. The task that finds it ends the run as
    timed out, running no workflow code; it never enters history itself."""

    timeout: float
    kind: Literal["execution_timeout_reached"] = "execution_timeout_reached"


@dataclass(frozen=True)
class ActivityCancelled:
    """The workflow stopped waiting for an activity (its task was cancelled): the activity
    task is dropped, a running attempt told, and a late outcome ignored."""

    seq: int
    kind: Literal["activity_cancelled"] = "activity_cancelled"


@dataclass(frozen=True)
class MarkerRecorded:
    """A fact the workflow code noted in its history, for its own replay to find (a
    ``side_effect``'s value, the branch a ``workflow.patched`` took); it writes nothing
    else."""

    seq: int
    name: str
    details: JSONValue = None
    kind: Literal["marker_recorded"] = "marker_recorded"


@dataclass(frozen=True)
class ChildWorkflowScheduled:
    """The workflow started a child: made in the transaction that records this, unless its
    id is taken (then a ``ChildWorkflowStartFailed`` comes back)."""

    seq: int
    workflow_id: str
    name: str
    args: list[JSONValue]
    version: str = ""
    execution_timeout: float | None = None
    parent_close_policy: Literal["terminate", "cancel", "abandon"] = "terminate"
    queue: str = "default"
    priority: int = 5
    kind: Literal["child_workflow_scheduled"] = "child_workflow_scheduled"


@dataclass(frozen=True)
class ChildWorkflowCancelRequested:
    """The workflow stopped waiting for a child (its task was cancelled): the child is
    asked to cancel."""

    seq: int
    workflow_id: str
    reason: str
    kind: Literal["child_workflow_cancel_requested"] = "child_workflow_cancel_requested"


@dataclass(frozen=True)
class EventSent:
    """An event for another workflow, delivered in the transaction that records this; an
    ``EventDelivered`` or ``EventDeliveryFailed`` comes back."""

    seq: int
    workflow_id: str
    name: str
    payload: JSONValue
    kind: Literal["event_sent"] = "event_sent"


@dataclass(frozen=True)
class ChildWorkflowStarted:
    seq: int
    workflow_id: str
    run_id: str
    kind: Literal["child_workflow_started"] = "child_workflow_started"


@dataclass(frozen=True)
class ChildWorkflowStartFailed:
    """The child's id was taken: it was not started."""

    seq: int
    workflow_id: str
    failure: Failure
    kind: Literal["child_workflow_start_failed"] = "child_workflow_start_failed"


@dataclass(frozen=True)
class ChildWorkflowClosed:
    """A child's last run ended (a run continued as new is not its end)."""

    seq: int
    workflow_id: str
    run_id: str
    status: str
    result: JSONValue = None
    failure: Failure | None = None
    kind: Literal["child_workflow_closed"] = "child_workflow_closed"


@dataclass(frozen=True)
class EventDelivered:
    seq: int
    kind: Literal["event_delivered"] = "event_delivered"


@dataclass(frozen=True)
class EventDeliveryFailed:
    """The target of an ``EventSent`` does not exist, or has ended."""

    seq: int
    failure: Failure
    kind: Literal["event_delivery_failed"] = "event_delivery_failed"


@dataclass(frozen=True)
class TerminationRequested:
    """The run's parent closed under the ``"terminate"`` policy: the task that finds this
    ends the run as terminated, running no workflow code; it never enters history itself."""

    reason: str
    requested_by: str = "parent"
    kind: Literal["termination_requested"] = "termination_requested"


@dataclass(frozen=True)
class WorkflowReset:
    """The run was made by a reset (``handle.reset``) from the first ``event`` events of
    run ``run_id``, which it copied as its own history: the first event of its first task,
    so that the task runs, on the code deployed now, at once. The workflow sees nothing."""

    run_id: str
    event: int
    reason: str
    kind: Literal["workflow_reset"] = "workflow_reset"


@dataclass(frozen=True)
class UpdateRequested:
    """A caller asked the workflow for an update (``handle.execute_update``): an inbox event,
    never a history one. The task that takes it runs the update's validator on the
    workflow's state then: accepted, it is recorded as ``UpdateAccepted``; rejected, it
    leaves history as it was."""

    update_id: str
    name: str
    args: list[JSONValue]
    kind: Literal["update_requested"] = "update_requested"


@dataclass(frozen=True)
class UpdateAccepted:
    """An update request the workflow took, as history keeps it: replay runs its handler
    again, and never its validator."""

    update_id: str
    name: str
    args: list[JSONValue]
    kind: Literal["update_accepted"] = "update_accepted"


@dataclass(frozen=True)
class UpdateCompleted:
    """An accepted update's answer: its handler returned ``result`` or raised ``failure``,
    or the workflow ended first (a ``failure`` of type ``"WorkflowAlreadyCompleted"``)."""

    update_id: str
    name: str
    result: JSONValue = None
    failure: Failure | None = None
    kind: Literal["update_completed"] = "update_completed"


@dataclass(frozen=True)
class UpdateRejected:
    """An update request the workflow refused before anything of it was recorded (its
    validator raised, no handler has its name, bad arguments, the workflow had finished).
    Never in history: only the caller's answer."""

    update_id: str
    name: str
    failure: Failure
    kind: Literal["update_rejected"] = "update_rejected"


@dataclass(frozen=True)
class WorkflowExecutionCompleted:
    result: JSONValue
    kind: Literal["workflow_completed"] = "workflow_completed"


@dataclass(frozen=True)
class WorkflowExecutionFailed:
    failure: Failure
    kind: Literal["workflow_failed"] = "workflow_failed"


@dataclass(frozen=True)
class WorkflowExecutionCancelled:
    """Asked to cancel, the workflow let the ``CancelledError`` escape."""

    reason: str
    kind: Literal["workflow_cancelled"] = "workflow_cancelled"


@dataclass(frozen=True)
class WorkflowContinuedAsNew:
    """The run ended and the next run of its id began, in the same transaction, with
    ``args`` and the events this run had not handled (``carried``)."""

    args: list[JSONValue]
    run_id: str
    """The next run's."""
    carried: list[EventReceived]
    version: str = ""
    kind: Literal["workflow_continued_as_new"] = "workflow_continued_as_new"


@dataclass(frozen=True)
class WorkflowExecutionTerminated:
    """Ended from outside (``terminate``, or its parent's close) with no workflow code run:
    written after the last task, not decided by the code, so replay stops here."""

    reason: str
    requested_by: str = "client"
    kind: Literal["workflow_terminated"] = "workflow_terminated"


@dataclass(frozen=True)
class WorkflowExecutionTimedOut:
    """Ended by its ``execution_timeout`` with no workflow code run; replay stops here."""

    timeout: float
    kind: Literal["workflow_timed_out"] = "workflow_timed_out"


Terminal: TypeAlias = (
    WorkflowExecutionCompleted
    | WorkflowExecutionFailed
    | WorkflowExecutionCancelled
    | WorkflowContinuedAsNew
)
"""The decision that ends a workflow: nothing follows it in history."""

Imposed: TypeAlias = WorkflowExecutionTerminated | WorkflowExecutionTimedOut
"""An ending that no workflow code decided; nothing follows it in history."""

Decision: TypeAlias = (
    ActivityScheduled
    | ActivityCancelled
    | TimerStarted
    | TimerCancelled
    | MarkerRecorded
    | ChildWorkflowScheduled
    | ChildWorkflowCancelRequested
    | EventSent
    | UpdateCompleted
    | Terminal
)
"""What a workflow decides in an activation; the worker turns these into writes."""

Incoming: TypeAlias = (
    WorkflowExecutionStarted
    | ActivityCompleted
    | ActivityFailed
    | TimerFired
    | EventReceived
    | WorkflowCancelRequested
    | ExecutionTimeoutReached
    | TerminationRequested
    | WorkflowReset
    | ChildWorkflowStarted
    | ChildWorkflowStartFailed
    | ChildWorkflowClosed
    | EventDelivered
    | EventDeliveryFailed
    | UpdateRequested
    | UpdateAccepted
)
"""What reaches a workflow from outside, through its inbox (an update request as history
keeps it, ``UpdateAccepted``, too)."""

UpdateOutcome: TypeAlias = UpdateCompleted | UpdateRejected
"""An update's answer, as stored for its caller."""

HistoryEvent: TypeAlias = WorkflowTaskStarted | Incoming | Decision | Imposed


_DECISIONS = get_args(Decision)
_TERMINALS = get_args(Terminal)
_INCOMING = get_args(Incoming)
_IMPOSED = get_args(Imposed)


def is_decision(event: HistoryEvent | None) -> TypeIs[Decision]:
    return isinstance(event, _DECISIONS)


def is_terminal(event: HistoryEvent | None) -> TypeIs[Terminal]:
    return isinstance(event, _TERMINALS)


def is_incoming(event: HistoryEvent | None) -> TypeIs[Incoming]:
    return isinstance(event, _INCOMING)


def is_imposed(event: HistoryEvent | None) -> TypeIs[Imposed]:
    return isinstance(event, _IMPOSED)


def decision_types() -> tuple[type, ...]:
    """Every kind of decision, as the ``Decision`` union lists them."""
    return tuple(_DECISIONS)


_EVENT_ADAPTER: TypeAdapter[HistoryEvent] = TypeAdapter(
    Annotated[HistoryEvent, Field(discriminator="kind")]
)
_EVENTS_ADAPTER: TypeAdapter[list[HistoryEvent]] = TypeAdapter(
    list[Annotated[HistoryEvent, Field(discriminator="kind")]]
)


def encode_event(event: HistoryEvent) -> str:
    """One event as a JSON document, the form it is stored in."""
    return _EVENT_ADAPTER.dump_json(event).decode()


def decode_event(data: str | bytes) -> HistoryEvent:
    return _EVENT_ADAPTER.validate_json(data)


def decode_incoming(data: str | bytes) -> Incoming:
    """An inbox event; anything else in an inbox row is corrupt data."""
    event = decode_event(data)
    if not is_incoming(event):
        raise ValueError(f"an inbox row holds a {event.kind} event")
    return event


_OUTCOME_ADAPTER: TypeAdapter[UpdateOutcome] = TypeAdapter(
    Annotated[UpdateOutcome, Field(discriminator="kind")]
)


def encode_outcome(outcome: UpdateOutcome) -> str:
    return _OUTCOME_ADAPTER.dump_json(outcome).decode()


def decode_outcome(data: str | bytes) -> UpdateOutcome:
    return _OUTCOME_ADAPTER.validate_json(data)


def encode_events(events: list[HistoryEvent]) -> str:
    return _EVENTS_ADAPTER.dump_json(events, indent=1).decode()


def decode_events(data: str | bytes) -> list[HistoryEvent]:
    return _EVENTS_ADAPTER.validate_json(data)
