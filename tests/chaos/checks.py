"""The invariants checked at the end of every chaos, restart and soak run, and the figures.

Read from the tables themselves (history with its sequence numbers, the workflows' rows, the
task tables) and from the side-effect ledger, never from what the workers say about
themselves.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tapeflow._definition import definition_of
from tapeflow._engine.replay import replay_new
from tapeflow.history import (
    ActivityCancelled,
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    ChildWorkflowClosed,
    ChildWorkflowScheduled,
    ChildWorkflowStartFailed,
    EventReceived,
    HistoryEvent,
    TimerCancelled,
    TimerFired,
    TimerStarted,
    WorkflowCancelRequested,
    WorkflowContinuedAsNew,
    WorkflowExecutionCancelled,
    WorkflowExecutionCompleted,
    WorkflowExecutionFailed,
    WorkflowExecutionStarted,
    WorkflowExecutionTerminated,
    WorkflowTaskStarted,
    decode_event,
)
from tests.chaos.inspector import WorkflowRow
from tests.chaos.ledger import Attempt, executions
from tests.chaos.workload import (
    ACTIVITIES,
    CHILD_STEPS,
    EVENT_NAME,
    LATE_EVENT_NAME,
    POISON_ATTEMPTS,
    POISON_SECONDS,
    RELAY_RUNS,
    WORK_SECONDS,
    WORKFLOWS,
    Expected,
    chaos_cleanup,
    chaos_parent,
    chaos_poisoned,
    chaos_relay,
    child_event,
    child_waits,
)

TERMINAL = (
    WorkflowExecutionCompleted,
    WorkflowExecutionFailed,
    WorkflowExecutionCancelled,
    WorkflowExecutionTerminated,
    WorkflowContinuedAsNew,
)
ENDINGS: dict[str, type[HistoryEvent]] = {
    "completed": WorkflowExecutionCompleted,
    "cancelled": WorkflowExecutionCancelled,
    "terminated": WorkflowExecutionTerminated,
}
"""The status a workflow must end with, and its last event."""
CLEANUP = definition_of(chaos_cleanup, "activity").name


@dataclass
class Outcome:
    violations: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def violate(self, message: str) -> None:
        self.violations.append(message)


@dataclass
class Answers:
    """What the client asked of each workflow, by id, and what it was answered: what the
    tables are held to (an unconfirmed request was looked up, so each is known)."""

    sends: dict[str, set[str]] = field(default_factory=dict)
    """The send ids of every attempt to send its "go" event (at least one)."""
    refused: set[str] = field(default_factory=set)
    """Its "go" event was refused as finished: only a stopped workflow's may be."""
    late: dict[str, set[str]] = field(default_factory=dict)
    """The send ids of the late events ``send_event`` accepted."""
    cancels: dict[str, bool] = field(default_factory=dict)
    """Each cancel asked: recorded (True) or refused as finished (False)."""
    terminates: dict[str, bool] = field(default_factory=dict)
    """Each terminate asked, likewise."""
    relayed: dict[str, list[tuple[str, bool]]] = field(default_factory=dict)
    """A relay's events, in the order sent, each with whether ``send_event`` accepted it
    (else it was refused as finished)."""

    def ending(self, workflow_id: str) -> str:
        """The status the answers call for: a recorded terminate wins, then a recorded cancel
        (the workflow lets it out after its cleanup); a refused one changes nothing."""
        if self.terminates.get(workflow_id):
            return "terminated"
        return "cancelled" if self.cancels.get(workflow_id) else "completed"


def percentile(values: Iterable[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


@dataclass
class Tally:
    """What the checks count along the way, for the figures."""

    late_received: int = 0
    poisoned_attempts: int = 0
    retried: int = 0
    timer_late: list[float] = field(default_factory=list)
    wake_late: list[float] = field(default_factory=list)
    scheduled: set[tuple[str, int]] = field(default_factory=set)
    """Every activity any history scheduled, as (run id, seq)."""
    cleanups: set[tuple[str, int]] = field(default_factory=set)
    endings: Counter[str] = field(default_factory=Counter)
    cancelled_at: Counter[str] = field(default_factory=Counter)
    composition: Counter[str] = field(default_factory=Counter)


def check_run(
    expected: Mapping[str, Expected],
    workflows: Mapping[str, list[WorkflowRow]],
    history_rows: Mapping[str, list[tuple[int, str]]],
    attempts: list[Attempt],
    answers: Answers,
    leftovers: Mapping[str, int],
) -> Outcome:
    """Every invariant of a finished run. ``expected`` says what each workflow id runs and
    its result (if it completes); ``workflows`` holds each id's runs, ``history_rows`` each
    run's history, by run id; ``answers`` says how each must have ended, which events must
    be in its history (each accepted one exactly once, no other) and which cancels."""
    out = Outcome()
    tally = Tally()
    ledger_rows: dict[tuple[str, int, int], list[Attempt]] = {}
    for attempt in attempts:
        ledger_rows.setdefault((attempt.run_id, attempt.seq, attempt.attempt), []).append(attempt)

    for workflow_id, wanted in expected.items():
        runs = workflows.get(workflow_id, [])
        if not runs:
            if wanted.kind != "child":  # a child may never have been started: its parent says
                out.violate(f"{workflow_id}: was never started")
            continue
        tapes = [_read_run(out, row, history_rows.get(row.run_id, [])) for row in runs]
        if any(tape is None for tape in tapes):
            continue
        histories = [tape for tape in tapes if tape is not None]
        ending = _ending(out, workflow_id, wanted, answers, runs, histories)
        tally.endings[f"{wanted.kind}:{runs[-1].status}"] += 1
        if wanted.kind != "child":
            tally.endings[runs[-1].status] += 1
        _check_runs(out, workflow_id, wanted, runs, histories, ending, answers)
        if wanted.kind == "relay":
            _check_relay(out, workflow_id, runs, histories, answers, ending, tally)
            for row, events in zip(runs, histories, strict=True):
                last = row is runs[-1]
                timers = _check_steps(out, workflow_id, events, ending if last else "completed", 1)
                _check_side_effects(out, row, events, ledger_rows, timers, tally)
                _check_replay(out, chaos_relay, row, events)
            continue
        row, events = runs[0], histories[0]
        if wanted.kind == "child":
            assert wanted.parent is not None
            waits = child_waits(wanted.number)
            sent = {child_event(wanted.index, wanted.number).send_id} if waits else set()
            tally.late_received += _check_events(
                out, workflow_id, events, answers, ending, sent, int(waits)
            )
        elif wanted.kind == "parent":
            tally.late_received += _check_events(
                out, workflow_id, events, answers, ending, set(), 0
            )
            _check_children(out, workflow_id, events, ending, expected, workflows, tally)
        else:
            sent = answers.sends.get(workflow_id, set())
            tally.late_received += _check_events(out, workflow_id, events, answers, ending, sent)
        cleanups = _check_cancel(out, workflow_id, events, answers, ending)
        tally.cleanups.update((row.run_id, seq) for seq in cleanups)
        if row.status == "cancelled":
            tally.cancelled_at[_cancelled_at(events)] += 1
        if wanted.kind == "poisoned":
            tally.scheduled.update(
                (row.run_id, e.seq) for e in events if isinstance(e, ActivityScheduled)
            )
            tally.poisoned_attempts += _check_poisoned(out, row, events, ledger_rows)
            _check_replay(out, chaos_poisoned, row, events)
            continue
        if wanted.kind == "parent":
            _check_replay(out, chaos_parent, row, events)
            continue
        steps = CHILD_STEPS if wanted.kind == "child" else ACTIVITIES
        timers = _check_steps(out, workflow_id, events, ending, steps)
        _check_side_effects(out, row, events, ledger_rows, timers, tally)
        _check_replay(out, WORKFLOWS[wanted.kind], row, events)

    for attempt in attempts:
        if (attempt.run_id, attempt.seq) not in tally.scheduled:
            out.violate(f"ledger: {attempt} ran an activity no history scheduled")
    for table, count in leftovers.items():
        if count:
            out.violate(f"{count} rows left in {table} after every workflow finished")
    _figures(out, expected, attempts, answers, tally)
    return out


def _read_run(
    out: Outcome, row: WorkflowRow, rows: list[tuple[int, str]]
) -> list[HistoryEvent] | None:
    """One run's history, decoded, numbered 1..n as long as its row says, started once and
    ended once, by its last event; None if unreadable."""
    name = f"{row.id} (run {row.run_number})"
    seqs = [seq for seq, _ in rows]
    if seqs != list(range(1, len(seqs) + 1)):
        out.violate(f"{name}: history sequence numbers not 1..n: {seqs[:5]}...")
    if len(seqs) != row.history_length:
        out.violate(f"{name}: {len(seqs)} history rows, length says {row.history_length}")
    try:
        events: list[HistoryEvent] = [decode_event(text) for _, text in rows]
    except Exception as exc:
        out.violate(f"{name}: unreadable history: {exc}")
        return None
    terminals = [i for i, e in enumerate(events) if isinstance(e, TERMINAL)]
    if len(terminals) != 1:
        out.violate(f"{name}: {len(terminals)} terminal events")
    elif terminals[0] != len(events) - 1:
        out.violate(f"{name}: {len(events) - 1 - terminals[0]} events after the end")
    starts = sum(isinstance(e, WorkflowExecutionStarted) for e in events)
    # A run terminated before its first task (a relay's run just made) never took its start
    # in: its history is the termination alone.
    unstarted = [type(e) for e in events] == [WorkflowExecutionTerminated]
    if starts != 1 and not unstarted:
        out.violate(f"{name}: {starts} start events")
    return events


def _ending(
    out: Outcome,
    workflow_id: str,
    wanted: Expected,
    answers: Answers,
    runs: list[WorkflowRow],
    histories: list[list[HistoryEvent]],
) -> str:
    """The status its last run must have: what the answers call for; for a child, completed
    if its parent completed, else completed or terminated with it (the policy's terminate,
    asked by the parent)."""
    if wanted.kind != "child":
        return answers.ending(workflow_id)
    assert wanted.parent is not None
    row = runs[-1]
    if row.parent_id != wanted.parent:
        out.violate(f"{workflow_id}: parent {row.parent_id}, not {wanted.parent}")
    if answers.ending(wanted.parent) == "completed" or row.status != "terminated":
        return "completed"
    final = histories[-1][-1] if histories[-1] else None
    if not isinstance(final, WorkflowExecutionTerminated) or final.requested_by != "parent":
        out.violate(f"{workflow_id}: terminated with {final!r}, not by its parent")
    return "terminated"


def _check_runs(
    out: Outcome,
    workflow_id: str,
    wanted: Expected,
    runs: list[WorkflowRow],
    histories: list[list[HistoryEvent]],
    ending: str,
    answers: Answers,
) -> None:
    """Every run but the last continued as new into the next; the last ended as ``ending``
    (with the expected result if it completed). Only a relay has more than one run: all
    RELAY_RUNS of them if it completed."""
    wanted_runs = (
        range(1, RELAY_RUNS + 1)
        if wanted.kind == "relay" and ending == "terminated"
        else range(RELAY_RUNS, RELAY_RUNS + 1)
        if wanted.kind == "relay"
        else range(1, 2)
    )
    if len(runs) not in wanted_runs or [r.run_number for r in runs] != list(
        range(1, len(runs) + 1)
    ):
        out.violate(f"{workflow_id}: runs {[r.run_number for r in runs]}, ended {ending}")
    for row, following, events in zip(runs, runs[1:], histories, strict=False):
        final = events[-1] if events else None
        if (
            row.status != "continued_as_new"
            or not isinstance(final, WorkflowContinuedAsNew)
            or final.run_id != following.run_id
        ):
            out.violate(
                f"{workflow_id}: run {row.run_number} {row.status}, ended with {final!r}, "
                f"not continued as new into run {following.run_id}"
            )
    row, events = runs[-1], histories[-1]
    final = events[-1] if events else None
    if row.status != ending:
        out.violate(
            f"{workflow_id}: status {row.status}, not {ending} (cancel recorded: "
            f"{answers.cancels.get(workflow_id)}, terminate recorded: "
            f"{answers.terminates.get(workflow_id)})"
        )
    if ending == "completed":
        result = wanted.result
        if not isinstance(final, WorkflowExecutionCompleted) or final.result != result:
            out.violate(f"{workflow_id}: ended with {final!r}, expected result {result}")
        if row.result is None or json.loads(row.result) != result:
            out.violate(f"{workflow_id}: stored result {row.result}, expected {result}")
    elif not isinstance(final, ENDINGS[ending]):
        out.violate(f"{workflow_id}: ended with {final!r}, expected {ending}")


def _check_side_effects(
    out: Outcome,
    row: WorkflowRow,
    events: list[HistoryEvent],
    ledger_rows: Mapping[tuple[str, int, int], list[Attempt]],
    timers: Mapping[int, datetime],
    tally: Tally,
) -> None:
    """Every recorded completion came from an attempt that really ran (the ledger saw it);
    how late the next task came after each completion and timer."""
    tally.scheduled.update((row.run_id, e.seq) for e in events if isinstance(e, ActivityScheduled))
    activation_at = None
    for event in events:
        if isinstance(event, WorkflowTaskStarted):
            activation_at = event.at
        elif isinstance(event, ActivityCompleted):
            ran = ledger_rows.get((row.run_id, event.seq, event.attempt))
            if not ran:
                out.violate(
                    f"{row.id} (run {row.run_number}): activity {event.seq} completed by "
                    f"attempt {event.attempt}, which the ledger never saw run"
                )
            elif activation_at is not None:
                done = ran[0].at + WORK_SECONDS
                tally.wake_late.append(activation_at.timestamp() - done)
            tally.retried += event.attempt > 1
        elif isinstance(event, TimerFired) and activation_at is not None:
            tally.timer_late.append((activation_at - timers[event.seq]).total_seconds())


def _check_children(
    out: Outcome,
    workflow_id: str,
    events: list[HistoryEvent],
    ending: str,
    expected: Mapping[str, Expected],
    workflows: Mapping[str, list[WorkflowRow]],
    tally: Tally,
) -> None:
    """A parent scheduled its children in order (all of them if it completed), each of
    which was started, and no other workflow names it its parent; each child's end came back
    exactly once (at most once if the parent was terminated first), for a child it
    scheduled, with the child's status and stored result."""
    ours = sorted((e.number, wid) for wid, e in expected.items() if e.parent == workflow_id)
    scheduled = {e.seq: e for e in events if isinstance(e, ChildWorkflowScheduled)}
    ids = [e.workflow_id for e in scheduled.values()]
    wanted = [wid for _, wid in ours]
    if ids != wanted[: len(ids)] or (ending == "completed" and ids != wanted):
        out.violate(f"{workflow_id}: scheduled children {ids}, wanted {wanted}")
    named = {wid for wid, runs in workflows.items() if runs[0].parent_id == workflow_id}
    if named != set(ids):
        out.violate(f"{workflow_id}: children {sorted(named)}, scheduled {ids}")
    for event in events:
        if isinstance(event, ChildWorkflowStartFailed):
            out.violate(f"{workflow_id}: child {event.workflow_id} not started: {event.failure}")
    closed = [e for e in events if isinstance(e, ChildWorkflowClosed)]
    counts = Counter(e.seq for e in closed)
    tally.composition["children_scheduled"] += len(scheduled)
    tally.composition["child_results_returned"] += len(closed)
    for seq, child in scheduled.items():
        if counts[seq] > 1 or (counts[seq] == 0 and ending == "completed"):
            out.violate(f"{workflow_id}: child {child.workflow_id} closed {counts[seq]} times")
    for event in closed:
        start = scheduled.get(event.seq)
        if start is None or start.workflow_id != event.workflow_id:
            out.violate(f"{workflow_id}: {event!r} for a child it never scheduled")
            continue
        runs = workflows.get(event.workflow_id)
        last = runs[-1] if runs else None
        stored = None if last is None or last.result is None else json.loads(last.result)
        if last is None or (event.run_id, event.status, event.result) != (
            last.run_id,
            last.status,
            stored,
        ):
            out.violate(f"{workflow_id}: {event!r} is not how its child ended: {last}")


def _check_relay(
    out: Outcome,
    workflow_id: str,
    runs: list[WorkflowRow],
    histories: list[list[HistoryEvent]],
    answers: Answers,
    ending: str,
    tally: Tally,
) -> None:
    """No event lost or doubled across continue-as-new. An event counts in the first run it
    is received in: a run's ``WorkflowContinuedAsNew.carried`` are the events it received
    but the one it took, which the next run receives again (each must be there, unless a
    terminate dropped that run's inbox). Every event accepted is received once in all, no
    other is, but a terminate drops what its last run had not received yet. (One refused as
    finished shows in the result, which has them all.)"""
    carried_in: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    for row, events in zip(runs, histories, strict=True):
        received = Counter(
            _send_id(e) for e in events if isinstance(e, EventReceived) and e.name == EVENT_NAME
        )
        dropped = row is runs[-1] and ending == "terminated"  # its inbox went with it
        if carried_in - received and not dropped:
            out.violate(
                f"{workflow_id}: run {row.run_number} did not receive what was carried to it: "
                f"{sorted(carried_in - received)}"
            )
        seen += received - carried_in
        final = events[-1] if events else None
        carried_in = Counter()
        if isinstance(final, WorkflowContinuedAsNew):
            carried_in = Counter(_send_id(e) for e in final.carried)
            tally.composition["relay_events_carried"] += len(final.carried)
            # A run takes one event: the others it received go on with the next run.
            if carried_in - received or received.total() != carried_in.total() + 1:
                out.violate(
                    f"{workflow_id}: run {row.run_number} received {dict(received)}, took one "
                    f"and carried {dict(carried_in)}"
                )
    answered = answers.relayed.get(workflow_id, [])
    accepted = [send_id for send_id, ok in answered if ok]
    refused = [send_id for send_id, ok in answered if not ok]
    # Sent one after the other: once one is refused as finished, so is every later one (a
    # workflow's end is for good; the end of a run it continued from is not its end).
    oks = [ok for _, ok in answered]
    if any(not ok and any(oks[n + 1 :]) for n, ok in enumerate(oks)):
        out.violate(
            f"{workflow_id}: an event refused as finished, a later one accepted: {answered}"
        )
    doubled = sorted(sid for sid, n in seen.items() if n > 1)
    unknown = sorted(set(seen) - set(accepted))
    missing = sorted(set(accepted) - set(seen))
    if (
        doubled
        or unknown
        or (missing and ending != "terminated")
        or len(set(accepted)) != len(accepted)
    ):
        out.violate(
            f"{workflow_id}: events received across its runs {dict(seen)}, accepted "
            f"{accepted} (doubled {doubled}, unknown {unknown}, missing {missing})"
        )
    tally.composition["relay_runs"] += len(runs)
    tally.composition["relay_events_accepted"] += len(accepted)
    tally.composition["relay_events_received"] += sum(seen.values())
    tally.composition["relay_events_refused_as_finished"] += len(refused)


def _send_id(event: EventReceived) -> str:
    payload = event.payload
    return str(payload.get("send_id")) if isinstance(payload, dict) else repr(payload)


def _figures(
    out: Outcome,
    expected: Mapping[str, Expected],
    attempts: list[Attempt],
    answers: Answers,
    tally: Tally,
) -> None:
    runs = executions(attempts)
    activities = len(tally.scheduled)
    duplicates = sum(runs.values()) - len(runs)
    kinds = Counter(e.kind for e in expected.values())
    endings = tally.endings
    out.figures.update(
        workflows=sum(n for k, n in kinds.items() if k != "child"),
        workflows_completed=endings["completed"],
        workflows_cancelled=endings["cancelled"],
        workflows_terminated=endings["terminated"],
        poisoned_workflows=kinds["poisoned"],
        poisoned_attempts=tally.poisoned_attempts,
        parents=kinds["parent"],
        parents_completed=endings["parent:completed"],
        parents_terminated=endings["parent:terminated"],
        children_planned=kinds["child"],
        children_started=sum(endings[f"child:{s}"] for s in ("completed", "terminated")),
        children_completed=endings["child:completed"],
        children_terminated_with_parent=endings["child:terminated"],
        **{k: tally.composition[k] for k in ("children_scheduled", "child_results_returned")},
        relays=kinds["relay"],
        relays_completed=endings["relay:completed"],
        relays_terminated=endings["relay:terminated"],
        **{
            k: tally.composition[k]
            for k in (
                "relay_runs",
                "relay_events_accepted",
                "relay_events_received",
                "relay_events_carried",
                "relay_events_refused_as_finished",
            )
        },
        cancels_asked=len(answers.cancels),
        cancels_recorded=sum(answers.cancels.values()),
        cancels_refused_as_finished=sum(not v for v in answers.cancels.values()),
        terminates_asked=len(answers.terminates),
        terminates_recorded=sum(answers.terminates.values()),
        terminates_refused_as_finished=sum(not v for v in answers.terminates.values()),
        events_refused_as_finished=len(answers.refused),
        cancels_reached_the_code_at=dict(sorted(tally.cancelled_at.items())),
        cleanup_activities=len(tally.cleanups),
        cleanup_executions=sum(runs[key] for key in tally.cleanups),
        late_events_accepted=sum(len(ids) for ids in answers.late.values()),
        late_events_in_history=tally.late_received,
        activities=activities,
        activity_executions=sum(runs.values()),
        duplicate_executions=duplicates,
        duplicate_share=duplicates / activities if activities else 0.0,
        activities_run_more_than_once=sum(1 for n in runs.values() if n > 1),
        completions_after_a_retry_or_takeover=tally.retried,
        timer_lateness_p50_s=percentile(tally.timer_late, 0.5),
        timer_lateness_p99_s=percentile(tally.timer_late, 0.99),
        timer_lateness_max_s=max(tally.timer_late, default=0.0),
        completion_to_next_task_p50_s=percentile(tally.wake_late, 0.5),
        completion_to_next_task_p99_s=percentile(tally.wake_late, 0.99),
        completion_to_next_task_max_s=max(tally.wake_late, default=0.0),
    )


def _check_events(
    out: Outcome,
    workflow_id: str,
    events: list[HistoryEvent],
    answers: Answers,
    ending: str,
    sent: set[str],
    goes: int = 1,
) -> int:
    """Its ``goes`` "go" events (one, or none: a parent; a child gets one from its parent)
    received, each one that was ``sent``, unless refused as finished; every accepted late
    event once, and no other. A terminate drops what is still in the inbox, so of a
    terminated workflow's accepted events some may be missing, but none twice. Returns the
    late events received."""
    received = [e for e in events if isinstance(e, EventReceived) and e.name == EVENT_NAME]
    refused = workflow_id in answers.refused
    if refused and ending == "completed":
        out.violate(f"{workflow_id}: finished before its event was delivered")
    wanted = {0} if refused else set(range(goes + 1)) if ending == "terminated" else {goes}
    if len(received) not in wanted:
        out.violate(f"{workflow_id}: {len(received)} events received (sends {sorted(sent)})")
    for go in received:
        if not isinstance(go.payload, dict) or go.payload.get("send_id") not in sent:
            out.violate(f"{workflow_id}: received an event nobody sent: {go.payload}")

    late_ids = [
        e.payload.get("send_id") if isinstance(e.payload, dict) else e.payload
        for e in events
        if isinstance(e, EventReceived) and e.name == LATE_EVENT_NAME
    ]
    accepted = answers.late.get(workflow_id, set())
    missing = accepted - set(late_ids)
    if (
        len(late_ids) != len(set(late_ids))
        or not set(late_ids) <= accepted
        or (missing and ending != "terminated")
    ):
        out.violate(
            f"{workflow_id}: late events in history {sorted(map(str, late_ids))}, "
            f"accepted {sorted(accepted)}"
        )
    return len(late_ids)


def _check_cancel(
    out: Outcome, workflow_id: str, events: list[HistoryEvent], answers: Answers, ending: str
) -> set[int]:
    """A recorded cancel is in history exactly once (a terminate may have dropped it from
    the inbox first), a refused one not at all; a cancelled workflow scheduled its cleanup
    once, after the request, and it completed once; no other workflow has one, but a cancelled
    one terminated during its cleanup. Returns the seqs of the cleanups scheduled."""
    requests = [i for i, e in enumerate(events) if isinstance(e, WorkflowCancelRequested)]
    recorded = answers.cancels.get(workflow_id, False)
    wanted = {0, 1} if recorded and ending == "terminated" else {1} if recorded else {0}
    if len(requests) not in wanted:
        out.violate(
            f"{workflow_id}: {len(requests)} cancel requests in history (recorded: "
            f"{answers.cancels.get(workflow_id)}, ended {ending})"
        )
    scheduled = [
        (i, e.seq)
        for i, e in enumerate(events)
        if isinstance(e, ActivityScheduled) and e.name == CLEANUP
    ]
    seqs = {seq for _, seq in scheduled}
    completed = [e for e in events if isinstance(e, ActivityCompleted) and e.seq in seqs]
    others = [
        e for e in events if isinstance(e, ActivityFailed | ActivityCancelled) and e.seq in seqs
    ]
    if ending == "cancelled":
        if len(scheduled) != 1 or len(completed) != 1 or others:
            out.violate(
                f"{workflow_id}: cleanup scheduled {len(scheduled)} times, completed "
                f"{len(completed)}, else {others!r}"
            )
    elif len(scheduled) > (1 if ending == "terminated" else 0) or others:
        out.violate(f"{workflow_id}: ended {ending} with cleanup {scheduled}, {others!r}")
    if scheduled and (not requests or scheduled[0][0] < requests[0]):
        out.violate(f"{workflow_id}: cleanup scheduled before any cancel request")
    return seqs


def _cancelled_at(events: list[HistoryEvent]) -> str:
    """Where a cancel reached the workflow's code, from the task that took it in: its first
    (with the start), at an activity or the timer (which it cancelled), or ``other`` (the
    wait for the event, or an await whose outcome came in that same task)."""
    tasks = [i for i, e in enumerate(events) if isinstance(e, WorkflowTaskStarted)]
    request = next((i for i, e in enumerate(events) if isinstance(e, WorkflowCancelRequested)), -1)
    began = max((i for i in tasks if i < request), default=-1)
    if began < 0:
        return "nowhere"  # no request, or none in a task: _check_cancel reports it
    if began == tasks[0]:
        return "first_task"
    ended = min((i for i in tasks if i > request), default=len(events))
    task = events[began:ended]
    if any(isinstance(e, ActivityCancelled) for e in task):
        return "activity"
    return "timer" if any(isinstance(e, TimerCancelled) for e in task) else "other"


def _check_steps(
    out: Outcome, workflow_id: str, events: list[HistoryEvent], ending: str, count: int
) -> dict[int, datetime]:
    """Of a completed workflow (or run), its ``count`` steps scheduled once and completed
    once each, and its timer (if any) fired once. Of a stopped one, none scheduled twice nor
    ended twice, none failed, and, if it was cancelled (it let the cancel out), each step and
    timer resolved: completed, fired or cancelled (an outcome already in the inbox may follow
    its cancel, dropped). Returns its timers' due times."""
    steps = {e.seq for e in events if isinstance(e, ActivityScheduled) and e.name != CLEANUP}
    scheduled = Counter(
        e.seq for e in events if isinstance(e, ActivityScheduled) and e.seq in steps
    )
    outcomes = Counter(
        e.seq
        for e in events
        if isinstance(e, ActivityCompleted | ActivityFailed) and e.seq in steps
    )
    dropped = Counter(e.seq for e in events if isinstance(e, ActivityCancelled))
    timers = {e.seq: e.fire_at for e in events if isinstance(e, TimerStarted)}
    fired = Counter(e.seq for e in events if isinstance(e, TimerFired))
    stopped = Counter(e.seq for e in events if isinstance(e, TimerCancelled))
    for event in events:
        if isinstance(event, ActivityFailed):
            out.violate(f"{workflow_id}: activity {event.seq} failed: {event.failure.message}")
    if ending == "completed":
        if len(scheduled) != count or any(n != 1 for n in scheduled.values()):
            out.violate(f"{workflow_id}: activities scheduled {dict(scheduled)}")
        if outcomes != scheduled or dropped:
            out.violate(
                f"{workflow_id}: outcomes {dict(outcomes)}, cancelled {dict(dropped)}, "
                f"do not match scheduled {dict(scheduled)}"
            )
        if set(fired) != set(timers) or any(n != 1 for n in fired.values()) or stopped:
            out.violate(
                f"{workflow_id}: timers started {sorted(timers)}, fired {dict(fired)}, "
                f"cancelled {dict(stopped)}"
            )
        return timers
    twice = [
        name
        for name, counts in (
            ("scheduled", scheduled),
            ("completed", outcomes),
            ("cancelled", dropped),
            ("fired", fired),
            ("timer cancelled", stopped),
        )
        if any(n > 1 for n in counts.values())
    ]
    if len(scheduled) > count or twice:
        out.violate(f"{workflow_id}: {len(scheduled)} steps scheduled; twice: {twice}")
    if not set(dropped) <= steps or not set(fired) | set(stopped) <= set(timers):
        out.violate(
            f"{workflow_id}: cancelled {dict(dropped)} or timers {dict(fired)}, "
            f"{dict(stopped)} never started"
        )
    if ending == "cancelled" and (
        steps != set(outcomes) | set(dropped) or set(timers) != set(fired) | set(stopped)
    ):
        out.violate(
            f"{workflow_id}: cancelled with steps {sorted(steps)} unresolved "
            f"(outcomes {dict(outcomes)}, cancelled {dict(dropped)}) or timers {sorted(timers)} "
            f"(fired {dict(fired)}, cancelled {dict(stopped)})"
        )
    return timers


def _check_poisoned(
    out: Outcome,
    row: WorkflowRow,
    events: list[HistoryEvent],
    ledger_rows: Mapping[tuple[str, int, int], list[Attempt]],
) -> int:
    """A poisoned workflow's first task to commit came once its poisoned time was over (the
    earlier ones failed, without taking their worker down), and its activity failed for good
    on its last attempt, which ran and ended in ``sys.exit``. Returns the attempts run."""
    workflow_id = row.id
    first = next((e for e in events if isinstance(e, WorkflowTaskStarted)), None)
    start = next((e for e in events if isinstance(e, WorkflowExecutionStarted)), None)
    if first is None or start is None or first.at < start.started_at + POISON_SECONDS:
        out.violate(f"{workflow_id}: a task committed while its code was poisoned")
    failed = [e for e in events if isinstance(e, ActivityFailed)]
    if len(failed) != 1 or failed[0].attempt != POISON_ATTEMPTS:
        out.violate(f"{workflow_id}: the poisoned activity ended with {failed!r}")
        return 0
    ran = [a for (run, _, _), rows in ledger_rows.items() if run == row.run_id for a in rows]
    attempts = sorted({a.attempt for a in ran})
    # An earlier attempt may have died with its worker before its side effect; the last one
    # ran (its sys.exit is the failure recorded), and none ran past the policy's maximum.
    if POISON_ATTEMPTS not in attempts or attempts[-1] > POISON_ATTEMPTS:
        out.violate(f"{workflow_id}: the ledger saw attempts {attempts}")
    return len(ran)


def _check_replay(
    out: Outcome, function: Any, row: WorkflowRow, events: list[HistoryEvent]
) -> None:
    workflow_id = row.id
    try:
        replay_new(definition_of(function, "workflow"), workflow_id, events, row.run_id).close()
    except Exception as exc:
        out.violate(f"{workflow_id}: replaying its history failed: {type(exc).__name__}: {exc}")
