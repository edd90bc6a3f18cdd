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
from typing import Any

from tapeflow._definition import definition_of
from tapeflow._engine.replay import replay_new
from tapeflow.history import (
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    EventReceived,
    HistoryEvent,
    TimerFired,
    TimerStarted,
    WorkflowExecutionCompleted,
    WorkflowExecutionFailed,
    WorkflowExecutionStarted,
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
    chaos_flow,
    chaos_poisoned,
)

TERMINAL = (WorkflowExecutionCompleted, WorkflowExecutionFailed)


@dataclass
class Outcome:
    violations: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def violate(self, message: str) -> None:
        self.violations.append(message)


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
    sends: Mapping[str, set[str]],
    leftovers: Mapping[str, int],
    late: Mapping[str, set[str]] | None = None,
) -> Outcome:
    """Every invariant of a finished run. ``expected`` maps each workflow id to its result,
    ``sends`` to the send ids of the events the client sent it (at least one), ``late`` to
    the send ids of the late events ``send_event`` accepted: each is in history exactly once,
    and no other late event is."""
    out = Outcome()
    accepted_late = late or {}
    late_received = 0
    poisoned_attempts = 0
    ledger_rows: dict[tuple[str, int, int], list[Attempt]] = {}
    for attempt in attempts:
        ledger_rows.setdefault((attempt.workflow_id, attempt.seq, attempt.attempt), []).append(
            attempt
        )
    scheduled_all: set[tuple[str, int]] = set()
    timer_late: list[float] = []
    wake_late: list[float] = []
    retried = 0

    for workflow_id, result in expected.items():
        row = workflows.get(workflow_id)
        if row is None:
            out.violate(f"{workflow_id}: was never started")
            continue
        if row.status != "completed":
            out.violate(f"{workflow_id}: status {row.status}, not completed")
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
        if not isinstance(final, WorkflowExecutionCompleted) or final.result != result:
            out.violate(f"{workflow_id}: ended with {final!r}, expected result {result}")
        if row.result is None or json.loads(row.result) != result:
            out.violate(f"{workflow_id}: stored result {row.result}, expected {result}")
        starts = sum(isinstance(e, WorkflowExecutionStarted) for e in events)
        if starts != 1:
            out.violate(f"{workflow_id}: {starts} start events")

        received = [e for e in events if isinstance(e, EventReceived) and e.name == EVENT_NAME]
        sent = sends.get(workflow_id, set())
        if len(received) != 1:
            out.violate(f"{workflow_id}: {len(received)} events received (sends {sorted(sent)})")
        for go in received:
            if not isinstance(go.payload, dict) or go.payload.get("send_id") not in sent:
                out.violate(f"{workflow_id}: received an event nobody sent: {go.payload}")

        late_ids = [
            e.payload.get("send_id") if isinstance(e.payload, dict) else e.payload
            for e in events
            if isinstance(e, EventReceived) and e.name == LATE_EVENT_NAME
        ]
        late_received += len(late_ids)
        wanted = accepted_late.get(workflow_id, set())
        if len(late_ids) != len(set(late_ids)) or set(late_ids) != wanted:
            out.violate(
                f"{workflow_id}: late events in history {sorted(map(str, late_ids))}, "
                f"accepted {sorted(wanted)}"
            )

        scheduled = Counter(e.seq for e in events if isinstance(e, ActivityScheduled))
        outcomes = Counter(
            e.seq for e in events if isinstance(e, ActivityCompleted | ActivityFailed)
        )
        if workflow_id.startswith(POISONED_PREFIX):
            poisoned_attempts += _check_poisoned(out, workflow_id, events, ledger_rows)
            scheduled_all.update((workflow_id, seq) for seq in scheduled)
            _check_replay(out, chaos_poisoned, workflow_id, events)
            continue
        if len(scheduled) != ACTIVITIES or any(n != 1 for n in scheduled.values()):
            out.violate(f"{workflow_id}: activities scheduled {dict(scheduled)}")
        if outcomes != scheduled:
            out.violate(
                f"{workflow_id}: outcomes {dict(outcomes)} do not match scheduled {dict(scheduled)}"
            )
        scheduled_all.update((workflow_id, seq) for seq in scheduled)
        for event in events:
            if isinstance(event, ActivityFailed):
                out.violate(f"{workflow_id}: activity {event.seq} failed: {event.failure.message}")
        timers = {e.seq: e.fire_at for e in events if isinstance(e, TimerStarted)}
        fired = Counter(e.seq for e in events if isinstance(e, TimerFired))
        if set(fired) != set(timers) or any(n != 1 for n in fired.values()):
            out.violate(f"{workflow_id}: timers started {sorted(timers)}, fired {dict(fired)}")

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
        poisoned_workflows=sum(w.startswith(POISONED_PREFIX) for w in expected),
        poisoned_attempts=poisoned_attempts,
        late_events_accepted=sum(len(ids) for ids in accepted_late.values()),
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
