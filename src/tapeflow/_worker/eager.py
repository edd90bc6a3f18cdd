"""Eager hand-offs inside one worker, each leased in the very transaction that makes the work:
a workflow task's commit takes the activities it scheduled that this worker runs, and an
activity's completion takes its workflow's task when this worker runs that workflow. The
work then starts at once, with no claim, no wake-up and no poll in between."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

from tapeflow._worker.poller import Poller
from tapeflow.backends.base import (
    ActivityTask,
    Continued,
    EagerActivities,
    ResumeWorkflow,
    WorkflowTask,
)
from tapeflow.history import ActivityCompleted, ActivityFailed, ActivityScheduled, Decision


class EagerDispatch:
    def __init__(
        self,
        names: frozenset[str],
        poller: Poller[ActivityTask],
        owner: str,
        lease: timedelta,
    ) -> None:
        self._names = names
        self._poller = poller
        self._owner = owner
        self._lease = lease

    def take(
        self, decisions: Sequence[Decision], handing_over: int = 0
    ) -> tuple[EagerActivities | None, int]:
        """Which new activities to lease in the commit, within the free activity slots (and
        those the caller's activity is handing over), and how many slots were held."""
        wanted = [
            d.seq for d in decisions if isinstance(d, ActivityScheduled) and d.name in self._names
        ]
        held = self._poller.reserve(len(wanted), handing_over) if wanted else 0
        if not held:
            return None, 0
        return EagerActivities(frozenset(wanted[:held]), self._owner, self._lease), held

    def run(self, tasks: Sequence[ActivityTask], held: int) -> None:
        """Start the tasks the commit leased to us; give back the slots left unused."""
        self._poller.adopt(tasks, held)


ContinueAfter = Callable[
    [ActivityTask, ActivityCompleted | ActivityFailed, ResumeWorkflow],
    Awaitable[Continued | None],
]
"""Runs the workflow's next task ahead with an activity's outcome (WorkflowTaskRunner)."""


class ResumeDispatch:
    def __init__(
        self,
        names: frozenset[str],
        poller: Poller[WorkflowTask],
        owner: str,
        lease: timedelta,
        continue_after: ContinueAfter,
    ) -> None:
        self._names = names
        self._poller = poller
        self._resume = ResumeWorkflow(owner, lease)
        self.continue_after = continue_after

    def take(self, task: ActivityTask) -> ResumeWorkflow | None:
        """Ask to continue the activity's workflow here, if this worker runs it and has room."""
        if task.workflow_name in self._names and self._poller.reserve(1):
            return self._resume
        return None

    def run(self, task: WorkflowTask | None, resume: ResumeWorkflow | None) -> None:
        if resume is not None:
            self._poller.adopt([task] if task else [], 1)
