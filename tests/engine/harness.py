"""Drive the pure engine by hand: no database, no worker, no wall clock.

``Run`` plays the part of a worker with a sticky cache: it feeds one activation at a time
to a live ``WorkflowInstance`` and writes down the history a worker would commit
(``WorkflowTaskStarted``, the events handed in as history keeps them, then the decisions).
``replay_decisions`` plays the part of a worker without a cache: a fresh instance fed that
history.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tapeflow._definition import Definition, definition_of
from tapeflow._engine.instance import Activation, WorkflowInstance
from tapeflow._engine.replay import replay_new, split_activations
from tapeflow.history import (
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    Decision,
    EventReceived,
    Failure,
    HistoryEvent,
    Incoming,
    TimerCancelled,
    TimerFired,
    TimerStarted,
    WorkflowExecutionStarted,
    is_terminal,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
"""Workflow time of the first activation in every hand-built history."""

WORKFLOW_ID = "wf-1"


def at(seconds: float) -> datetime:
    """``T0`` plus ``seconds``."""
    return T0 + timedelta(seconds=seconds)


def definition(workflow: Callable[..., Any]) -> Definition:
    return definition_of(workflow, "workflow")


def started(
    workflow: Callable[..., Any], *args: Any, version: str = "1", when: datetime = T0
) -> WorkflowExecutionStarted:
    """The start event of ``workflow(*args)``, its arguments encoded as a client would."""
    found = definition(workflow)
    return WorkflowExecutionStarted(
        name=found.name,
        version=version,
        args=found.signature.encode_args(args),
        started_at=when,
    )


def failure(type: str, message: str) -> Failure:
    return Failure(type=type, message=message, traceback=f"Traceback: {type}: {message}")


class Run:
    """One workflow run live, activation by activation, recording its history.

    Given a ``history`` (written by other code, say: before a deploy), the run is picked
    up where it stands, as a worker without the instance in its cache would: replayed to
    the end of it, decisions checked, then going on from there."""

    def __init__(
        self,
        workflow: Callable[..., Any],
        workflow_id: str = WORKFLOW_ID,
        history: Sequence[HistoryEvent] = (),
    ) -> None:
        self.definition = definition(workflow)
        self.workflow = workflow
        self.workflow_id = workflow_id
        self.instance = replay_new(self.definition, workflow_id, history)
        self.history: list[HistoryEvent] = list(history)
        self.activations: list[list[Decision]] = []
        self.now = self.instance.now if history else T0

    def start(self, *args: Any, when: datetime = T0, version: str = "1") -> list[Decision]:
        return self.step(when, started(self.workflow, *args, version=version, when=when))

    def step(self, when: datetime, *events: Incoming) -> list[Decision]:
        """One workflow task at ``when`` handing ``events`` in; returns its decisions."""
        self.now = when
        decisions = self.instance.activate(Activation(when, list(events)))
        self.history += self.instance.task_events(events, decisions)
        self.instance.history_length = len(self.history)  # as a worker's commit sets it
        self.activations.append(decisions)
        return decisions

    def later(self, seconds: float, *events: Incoming) -> list[Decision]:
        """One workflow task ``seconds`` after the previous one."""
        return self.step(self.now + timedelta(seconds=seconds), *events)

    @property
    def vars(self) -> dict[str, Any]:
        return self.instance.vars

    def replayed(self) -> WorkflowInstance:
        """A fresh instance brought up to the end of this run's history (decisions checked)."""
        return replay_new(self.definition, self.workflow_id, self.history)

    def close(self) -> None:
        self.instance.close()


def replay_decisions(
    workflow: Callable[..., Any],
    history: Sequence[HistoryEvent],
    workflow_id: str = WORKFLOW_ID,
) -> tuple[list[list[Decision]], WorkflowInstance]:
    """Feed ``history`` to a fresh instance; the decisions of each activation, unchecked."""
    instance = WorkflowInstance(definition(workflow), workflow_id)
    emitted = [instance.activate(recorded.activation) for recorded in split_activations(history)]
    return emitted, instance


def terminal(decisions: Sequence[Decision]) -> Decision | None:
    ends = [d for d in decisions if is_terminal(d)]
    assert len(ends) <= 1, decisions
    return ends[0] if ends else None


@dataclass
class Simulation:
    """A tiny deterministic stand-in for the worker and the backend, for longer workflows.

    Each task hands in at most ``batch`` outcomes: activities finish (``respond`` says how)
    one second after being scheduled, in the order they were scheduled; when none is
    waiting, the earliest of the due timers and the scripted events comes next, the clock
    jumping to its time.
    """

    run: Run
    respond: Callable[[ActivityScheduled], Incoming]
    events: list[tuple[float, EventReceived]] = field(default_factory=list)
    batch: int = 1
    max_steps: int = 10_000

    def go(self, *args: Any) -> Decision:
        activities: list[ActivityScheduled] = []
        timers: dict[int, datetime] = {}
        script = sorted(
            ((at(s), i, e) for i, (s, e) in enumerate(self.events)), key=lambda t: (t[0], t[1])
        )
        decisions = self.run.start(*args)
        for _ in range(self.max_steps):
            for decision in decisions:
                if isinstance(decision, ActivityScheduled):
                    activities.append(decision)
                elif isinstance(decision, TimerStarted):
                    timers[decision.seq] = decision.fire_at
                elif isinstance(decision, TimerCancelled):
                    del timers[decision.seq]
            end = terminal(decisions)
            if end is not None:
                return end
            if activities:
                taken, activities = activities[: self.batch], activities[self.batch :]
                decisions = self.run.later(1, *(self.respond(a) for a in taken))
                continue
            next_timer = min(timers.items(), key=lambda item: (item[1], item[0]), default=None)
            if script and (next_timer is None or script[0][0] <= next_timer[1]):
                when, _, event = script.pop(0)
                decisions = self.run.step(max(when, self.run.now), event)
            elif next_timer is not None:
                seq, fire_at = next_timer
                del timers[seq]
                decisions = self.run.step(max(fire_at, self.run.now), TimerFired(seq=seq))
            else:
                raise AssertionError(f"the workflow waits for nothing: {self.run.history[-3:]}")
        raise AssertionError("the simulation did not end")


def complete(scheduled: ActivityScheduled, result: Any, attempt: int = 1) -> ActivityCompleted:
    return ActivityCompleted(seq=scheduled.seq, result=result, attempt=attempt)


def fail(scheduled: ActivityScheduled, type: str, message: str, attempt: int = 1) -> ActivityFailed:
    return ActivityFailed(seq=scheduled.seq, failure=failure(type, message), attempt=attempt)
