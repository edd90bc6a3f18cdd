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
    EventReceived,
    HistoryEvent,
    TimerCancelled,
    TimerFired,
    TimerStarted,
    WorkflowCancelRequested,
    WorkflowExecutionCancelled,
    WorkflowExecutionCompleted,
    WorkflowExecutionFailed,
    WorkflowExecutionStarted,
    WorkflowExecutionTerminated,
    WorkflowTaskStarted,
    decode_event,
)
from tests.chaos.inspector import WorkflowRow
from tests.chaos.ledger import Attempt
from tests.chaos.workload import (
    ACTIVITIES,
    EVENT_NAME,
    LATE_EVENT_NAME,
    POISON_ATTEMPTS,
    POISON_SECONDS,
    POISONED_PREFIX,
    WORK_SECONDS,
    chaos_cleanup,
    chaos_flow,
    chaos_poisoned,
)

TERMINAL = (
    WorkflowExecutionCompleted,
    WorkflowExecutionFailed,
    WorkflowExecutionCancelled,
    WorkflowExecutionTerminated,
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


def check_run(
    expected: Mapping[str, int],
    workflows: Mapping[str, WorkflowRow],
    history_rows: Mapping[str, list[tuple[int, str]]],
    attempts: list[Attempt],
    answers: Answers,
    leftovers: Mapping[str, int],
) -> Outcome:
    """Every invariant of a finished run. ``expected`` maps each workflow id to its result
    (if it completes); ``answers`` says how each must have ended, which events must be in its
    history (each accepted one exactly once, no other) and which cancels."""
    out = Outcome()
    late_received = 0
    poisoned_attempts = 0
    ledger_rows: dict[tuple[str, int, int], list[Attempt]] = {}
    for attempt in attempts:
        ledger_rows.setdefault((attempt.workflow_id, attempt.seq, attempt.attempt), []).append(
            attempt
        )
    scheduled_all: set[tuple[str, int]] = set()
    cleanups: set[tuple[str, int]] = set()
    endings: Counter[str] = Counter()
    cancelled_at: Counter[str] = Counter()
    timer_late: list[float] = []
    wake_late: list[float] = []
    retried = 0

    for workflow_id, result in expected.items():
        row = workflows.get(workflow_id)
        if row is None:
            out.violate(f"{workflow_id}: was never started")
            continue
        ending = answers.ending(workflow_id)
        endings[row.status] += 1
        if row.status != ending:
            out.violate(
                f"{workflow_id}: status {row.status}, not {ending} (cancel recorded: "
                f"{answers.cancels.get(workflow_id)}, terminate recorded: "
                f"{answers.terminates.get(workflow_id)})"
            )
        rows = history_rows.get(workflow_id, [])
        seqs = [seq for seq, _ in rows]
        if seqs != list(range(1, len(seqs) + 1)):
            out.violate(f"{workflow_id}: history sequence numbers not 1..n: {seqs[:5]}...")
        if len(seqs) != row.history_length:
            out.violate(
                f"{workflow_id}: {len(seqs)} history rows, length says {row.history_length}"
            )
        try:
            events: list[HistoryEvent] = [decode_event(text) for _, text in rows]
        except Exception as exc:
            out.violate(f"{workflow_id}: unreadable history: {exc}")
            continue

        terminals = [i for i, e in enumerate(events) if isinstance(e, TERMINAL)]
        if len(terminals) != 1:
            out.violate(f"{workflow_id}: {len(terminals)} terminal events")
        elif terminals[0] != len(events) - 1:
            out.violate(f"{workflow_id}: {len(events) - 1 - terminals[0]} events after the end")
        final = events[terminals[-1]] if terminals else None
        if ending == "completed":
            if not isinstance(final, WorkflowExecutionCompleted) or final.result != result:
                out.violate(f"{workflow_id}: ended with {final!r}, expected result {result}")
            if row.result is None or json.loads(row.result) != result:
                out.violate(f"{workflow_id}: stored result {row.result}, expected {result}")
        elif not isinstance(final, ENDINGS[ending]):
            out.violate(f"{workflow_id}: ended with {final!r}, expected {ending}")
        starts = sum(isinstance(e, WorkflowExecutionStarted) for e in events)
        if starts != 1:
            out.violate(f"{workflow_id}: {starts} start events")

        late_received += _check_events(out, workflow_id, events, answers, ending)
        cleanups.update(_check_cancel(out, workflow_id, events, answers, ending))
        if row.status == "cancelled":
            cancelled_at[_cancelled_at(events)] += 1

        scheduled = Counter(e.seq for e in events if isinstance(e, ActivityScheduled))
        scheduled_all.update((workflow_id, seq) for seq in scheduled)
        if workflow_id.startswith(POISONED_PREFIX):
            poisoned_attempts += _check_poisoned(out, workflow_id, events, ledger_rows)
            _check_replay(out, chaos_poisoned, workflow_id, events)
            continue
        timers = _check_steps(out, workflow_id, events, ending)

        # Side effects: every recorded completion came from an attempt that really ran.
        activation_at = None
        for event in events:
            if isinstance(event, WorkflowTaskStarted):
                activation_at = event.at
            elif isinstance(event, ActivityCompleted):
                ran = ledger_rows.get((workflow_id, event.seq, event.attempt))
                if not ran:
                    out.violate(
                        f"{workflow_id}: activity {event.seq} completed by attempt "
                        f"{event.attempt}, which the ledger never saw run"
                    )
                elif activation_at is not None:
                    done = ran[0].at + WORK_SECONDS
                    wake_late.append(activation_at.timestamp() - done)
                retried += event.attempt > 1
            elif isinstance(event, TimerFired) and activation_at is not None:
                timer_late.append((activation_at - timers[event.seq]).total_seconds())

        _check_replay(out, chaos_flow, workflow_id, events)

    for attempt in attempts:
        if (attempt.workflow_id, attempt.seq) not in scheduled_all:
            out.violate(f"ledger: {attempt} ran an activity no history scheduled")
    for table, count in leftovers.items():
        if count:
            out.violate(f"{count} rows left in {table} after every workflow finished")

    runs = Counter((a.workflow_id, a.seq) for a in attempts)
    activities = len(scheduled_all)
    duplicates = sum(runs.values()) - len(runs)
    out.figures.update(
        workflows=len(expected),
        workflows_completed=endings["completed"],
        workflows_cancelled=endings["cancelled"],
        workflows_terminated=endings["terminated"],
        poisoned_workflows=sum(w.startswith(POISONED_PREFIX) for w in expected),
        poisoned_attempts=poisoned_attempts,
        cancels_asked=len(answers.cancels),
        cancels_recorded=sum(answers.cancels.values()),
        cancels_refused_as_finished=sum(not v for v in answers.cancels.values()),
        terminates_asked=len(answers.terminates),
        terminates_recorded=sum(answers.terminates.values()),
        terminates_refused_as_finished=sum(not v for v in answers.terminates.values()),
        events_refused_as_finished=len(answers.refused),
        cancels_reached_the_code_at=dict(sorted(cancelled_at.items())),
        cleanup_activities=len(cleanups),
        cleanup_executions=sum(runs[key] for key in cleanups),
        late_events_accepted=sum(len(ids) for ids in answers.late.values()),
        late_events_in_history=late_received,
        activities=activities,
        activity_executions=sum(runs.values()),
        duplicate_executions=duplicates,
        duplicate_share=duplicates / activities if activities else 0.0,
        activities_run_more_than_once=sum(1 for n in runs.values() if n > 1),
        completions_after_a_retry_or_takeover=retried,
        timer_lateness_p50_s=percentile(timer_late, 0.5),
        timer_lateness_p99_s=percentile(timer_late, 0.99),
        timer_lateness_max_s=max(timer_late, default=0.0),
        completion_to_next_task_p50_s=percentile(wake_late, 0.5),
        completion_to_next_task_p99_s=percentile(wake_late, 0.99),
        completion_to_next_task_max_s=max(wake_late, default=0.0),
    )
    return out


def _check_events(
    out: Outcome, workflow_id: str, events: list[HistoryEvent], answers: Answers, ending: str
) -> int:
    """Its "go" event received once, one that was sent, unless refused as finished; every
    accepted late event once, and no other. A terminate drops what is still in the inbox, so
    of a terminated workflow's accepted events some may be missing, but none twice. Returns
    the late events received."""
    received = [e for e in events if isinstance(e, EventReceived) and e.name == EVENT_NAME]
    sent = answers.sends.get(workflow_id, set())
    refused = workflow_id in answers.refused
    if refused and ending == "completed":
        out.violate(f"{workflow_id}: finished before its event was delivered")
    wanted = {0} if refused else {0, 1} if ending == "terminated" else {1}
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
) -> set[tuple[str, int]]:
    """A recorded cancel is in history exactly once (a terminate may have dropped it from
    the inbox first), a refused one not at all; a cancelled workflow scheduled its cleanup
    once, after the request, and it completed once; no other workflow has one, but a cancelled
    one terminated during its cleanup. Returns the cleanups scheduled, as (id, seq)."""
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
    return {(workflow_id, seq) for seq in seqs}


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
    out: Outcome, workflow_id: str, events: list[HistoryEvent], ending: str
) -> dict[int, datetime]:
    """Of a completed workflow, the ten steps scheduled once and completed once each, and
    its timer fired once. Of a stopped one, none scheduled twice nor ended twice, none
    failed, and, if it was cancelled (it let the cancel out), each step and timer resolved:
    completed, fired or cancelled (an outcome already in the inbox may follow its cancel,
    dropped). Returns its timers' due times."""
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
        if len(scheduled) != ACTIVITIES or any(n != 1 for n in scheduled.values()):
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
    if len(scheduled) > ACTIVITIES or twice:
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
    workflow_id: str,
    events: list[HistoryEvent],
    ledger_rows: Mapping[tuple[str, int, int], list[Attempt]],
) -> int:
    """A poisoned workflow's first task to commit came once its poisoned time was over (the
    earlier ones failed, without taking their worker down), and its activity failed for good
    on its last attempt, which ran and ended in ``sys.exit``. Returns the attempts run."""
    first = next((e for e in events if isinstance(e, WorkflowTaskStarted)), None)
    start = next((e for e in events if isinstance(e, WorkflowExecutionStarted)), None)
    if first is None or start is None or first.at < start.started_at + POISON_SECONDS:
        out.violate(f"{workflow_id}: a task committed while its code was poisoned")
    failed = [e for e in events if isinstance(e, ActivityFailed)]
    if len(failed) != 1 or failed[0].attempt != POISON_ATTEMPTS:
        out.violate(f"{workflow_id}: the poisoned activity ended with {failed!r}")
        return 0
    ran = [a for (wid, seq, _), rows in ledger_rows.items() if wid == workflow_id for a in rows]
    attempts = sorted({a.attempt for a in ran})
    # An earlier attempt may have died with its worker before its side effect; the last one
    # ran (its sys.exit is the failure recorded), and none ran past the policy's maximum.
    if POISON_ATTEMPTS not in attempts or attempts[-1] > POISON_ATTEMPTS:
        out.violate(f"{workflow_id}: the ledger saw attempts {attempts}")
    return len(ran)


def _check_replay(
    out: Outcome, function: Any, workflow_id: str, events: list[HistoryEvent]
) -> None:
    try:
        replay_new(definition_of(function, "workflow"), workflow_id, events).close()
    except Exception as exc:
        out.violate(f"{workflow_id}: replaying its history failed: {type(exc).__name__}: {exc}")
