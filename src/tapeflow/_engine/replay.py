"""Replaying a tape: cut the history into activations and check each decision against it.

A decision that differs from the recorded one (another activity, other arguments, another
timer, a missing or an extra command) raises NonDeterminismError naming the history event,
and the patches involved: a patch marker left unmatched, a patch replayed down its old
branch before the point where the code went another way.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from tapeflow._definition import Definition
from tapeflow._engine.instance import Activation, WorkflowInstance
from tapeflow._engine.patches import Patches, patch_of
from tapeflow.errors import NonDeterminismError
from tapeflow.history import (
    ActivityCancelled,
    ActivityScheduled,
    ChildWorkflowCancelRequested,
    ChildWorkflowScheduled,
    Decision,
    EventSent,
    HistoryEvent,
    Incoming,
    MarkerRecorded,
    TimerCancelled,
    TimerStarted,
    UpdateCompleted,
    WorkflowTaskStarted,
    is_decision,
    is_imposed,
)


@dataclass
class RecordedActivation:
    activation: Activation
    position: int
    """Where its WorkflowTaskStarted stands in history."""
    decisions: list[tuple[int, Decision]] = field(default_factory=list)
    """Each recorded decision with its position (1-based sequence number) in history."""


def split_activations(history: Sequence[HistoryEvent]) -> Iterator[RecordedActivation]:
    current: RecordedActivation | None = None
    incoming: list[Incoming] = []
    positions: list[int] = []
    recorded: list[Decision] = []
    for position, event in enumerate(history, start=1):
        if is_imposed(event):  # ended from outside: no task follows, nothing to check
            if position != len(history):
                raise NonDeterminismError(
                    f"history event #{position} ({event.kind}) ends the run, yet history goes on"
                )
            break
        if isinstance(event, WorkflowTaskStarted):
            if current is not None:
                yield current
            incoming, positions, recorded = [], [], []
            current = RecordedActivation(
                Activation(event.at, incoming, True, position, positions, recorded), position
            )
        elif current is None:
            raise NonDeterminismError(
                f"history event #{position} ({event.kind}) comes before any workflow task"
            )
        elif is_decision(event):
            current.decisions.append((position, event))
            recorded.append(event)
        else:
            if current.decisions:
                raise NonDeterminismError(
                    f"history event #{position} ({event.kind}) follows the decisions of its task"
                )
            incoming.append(event)
            positions.append(position)
    if current is not None:
        yield current


def replay(instance: WorkflowInstance, history: Sequence[HistoryEvent]) -> None:
    """Bring a fresh instance up to the end of ``history``, checking every decision.

    On a NonDeterminismError, ``instance.history_length`` still counts the events of the
    tasks that replayed consistently (the debugger shows the workflow as of there)."""
    for recorded in split_activations(history):
        emitted = instance.activate(recorded.activation)
        end = recorded.position + len(recorded.activation.events) + len(recorded.decisions)
        check_decisions(
            recorded.decisions, emitted, instance.workflow_id, history, end, instance.patches
        )
        instance.history_length = end
    instance.history_length = len(history)


def replay_new(
    definition: Definition, workflow_id: str, history: Sequence[HistoryEvent], run_id: str = ""
) -> WorkflowInstance:
    """A fresh instance brought up to the end of ``history``."""
    instance = WorkflowInstance(definition, workflow_id, run_id)
    try:
        replay(instance, history)
    except BaseException:
        instance.close()
        raise
    return instance


def check_decisions(
    recorded: list[tuple[int, Decision]],
    emitted: list[Decision],
    workflow_id: str,
    history: Sequence[HistoryEvent],
    end: int,
    patches: Patches | None = None,
) -> None:
    """Compare one activation's decisions; ``end`` is the position of its last event."""
    for index in range(max(len(recorded), len(emitted))):
        expected: Decision | None = None
        if index >= len(recorded):
            where = end + 1 + index - len(recorded)
            there = history[where - 1].kind if where <= len(history) else "the end of history"
            problem = (
                f"history event #{where} is {there}, but on replay "
                f"the code decided {describe(emitted[index])}, which its history does not have"
            )
        elif index >= len(emitted):
            position, expected = recorded[index]
            problem = (
                f"history event #{position} is {describe(expected)}, "
                "but on replay the code did not decide it"
            )
        elif not same_decision(recorded[index][1], emitted[index]):
            position, expected = recorded[index]
            problem = (
                f"history event #{position} is {describe(expected)}, "
                f"but on replay the code decided {describe(emitted[index])}"
            )
        else:
            continue
        seq = getattr(expected or emitted[index], "seq", None)
        hints = "".join(f"; {hint}" for hint in _patch_hints(expected, seq, patches))
        raise NonDeterminismError(f"workflow {workflow_id!r}: {problem}{hints}")


def _patch_hints(expected: Decision | None, seq: int | None, patches: Patches | None) -> list[str]:
    """What patches have to do with a mismatch at ``seq`` (None: the workflow's end), where
    history has ``expected``: the calls that match its patch marker, and the patches that
    replayed down their old branch up to there."""
    hints: list[str] = []
    patch_id = patch_of(expected)
    if patch_id is not None:
        hints.append(
            f"a marker of patch {patch_id!r} is matched by workflow.patched({patch_id!r}) "
            f"or workflow.deprecate_patch({patch_id!r}) at that point of the code"
        )
    if patches is not None:
        hints += patches.missed(seq)
    return hints


def same_decision(recorded: Decision, emitted: Decision) -> bool:
    if type(recorded) is not type(emitted):
        return False
    match recorded, emitted:
        case ActivityScheduled(), ActivityScheduled():
            return (recorded.seq, recorded.name, recorded.args) == (
                emitted.seq,
                emitted.name,
                emitted.args,
            )
        case TimerStarted(), TimerStarted():
            return (recorded.seq, recorded.fire_at) == (emitted.seq, emitted.fire_at)
        case TimerCancelled(), TimerCancelled():
            return recorded.seq == emitted.seq
        case ActivityCancelled(), ActivityCancelled():
            return recorded.seq == emitted.seq
        case MarkerRecorded(), MarkerRecorded():
            return (recorded.seq, recorded.name, patch_of(recorded)) == (
                emitted.seq,
                emitted.name,
                patch_of(emitted),
            )
        case ChildWorkflowScheduled(), ChildWorkflowScheduled():
            return (recorded.seq, recorded.workflow_id, recorded.name, recorded.args) == (
                emitted.seq,
                emitted.workflow_id,
                emitted.name,
                emitted.args,
            )
        case ChildWorkflowCancelRequested(), ChildWorkflowCancelRequested():
            return recorded.seq == emitted.seq
        case EventSent(), EventSent():
            return (recorded.seq, recorded.workflow_id, recorded.name) == (
                emitted.seq,
                emitted.workflow_id,
                emitted.name,
            )
        case UpdateCompleted(), UpdateCompleted():  # an answer told is the same answer
            return (recorded.update_id, recorded.failure is None) == (
                emitted.update_id,
                emitted.failure is None,
            )
    return True  # the workflow's end: its kind is what must match


def describe(decision: Decision) -> str:
    match decision:
        case ActivityScheduled(seq=seq, name=name, args=args):
            text = f"activity_scheduled seq {seq} {name!r} with args {args!r}"
        case TimerStarted(seq=seq, fire_at=fire_at):
            text = f"timer_started seq {seq} due at {fire_at.isoformat()}"
        case TimerCancelled(seq=seq):
            text = f"timer_cancelled seq {seq}"
        case ActivityCancelled(seq=seq):
            text = f"activity_cancelled seq {seq}"
        case MarkerRecorded(seq=seq) if (patch_id := patch_of(decision)) is not None:
            text = f"marker_recorded seq {seq} of patch {patch_id!r}"
        case MarkerRecorded(seq=seq, name=name):
            text = f"marker_recorded seq {seq} {name!r}"
        case ChildWorkflowScheduled(seq=seq, workflow_id=child, name=name, args=args):
            text = f"child_workflow_scheduled seq {seq} {name!r} id {child!r} with args {args!r}"
        case ChildWorkflowCancelRequested(seq=seq, workflow_id=child):
            text = f"child_workflow_cancel_requested seq {seq} id {child!r}"
        case EventSent(seq=seq, workflow_id=target, name=name):
            text = f"event_sent seq {seq} {name!r} to {target!r}"
        case UpdateCompleted(update_id=update_id, name=name, failure=failure):
            how = "returned" if failure is None else f"raised {failure.type}"
            text = f"update_completed {name!r} ({update_id}) that {how}"
        case _:
            text = decision.kind
    return text if len(text) < 300 else text[:297] + "..."
