"""Activating a workflow and writing what it decided: the code both task runners share.

A workflow task runs a step when it is claimed; an activity's completion runs the
workflow's next step ahead, on the cached instance, and writes it with the outcome. Either
way the step is activated here, on the workflow threads, and written here: through the
core protocol, or, where the backend has the ``HandOffs`` capability, taking for this
worker the work the write makes (its eager activities, the workflow's next task).

What a write takes goes into the ``HandOver`` of the task that wrote it; the worker starts
it once that task ends, in the slots reserved for it here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from tapeflow._definition import Definition
from tapeflow._engine.instance import Activation, WorkflowInstance
from tapeflow._engine.replay import replay_new
from tapeflow._tracing import SpanHandle, TraceContext, Tracing
from tapeflow._worker.cache import WorkflowCache
from tapeflow._worker.clock import BackendClock
from tapeflow._worker.log_context import worker_logger
from tapeflow._worker.metrics import Metrics
from tapeflow._worker.retrying import retry_while_unavailable
from tapeflow._worker.slots import Slots
from tapeflow._worker.workflow_threads import ThreadRefused, ThreadTimeout, WorkflowThreads
from tapeflow.backends._rows import FAILURE
from tapeflow.backends.base import (
    ActivityTask,
    Backend,
    HandOffs,
    Reclaimed,
    RunAhead,
    Take,
    WorkflowStatus,
    WorkflowTask,
)
from tapeflow.backends.clock import LocalClock
from tapeflow.backends.plan import CommitPlan, OfRun, plan_commit
from tapeflow.errors import WorkflowSandboxError
from tapeflow.history import (
    ActivityCompleted,
    ActivityFailed,
    Decision,
    EventSent,
    HistoryEvent,
    Incoming,
    UpdateRejected,
    WorkflowExecutionStarted,
)
from tapeflow.queues import DEFAULT_QUEUE

log = worker_logger()
W = TypeVar("W")


@dataclass
class HandOver:
    """What one task's own writes leased to this worker, started once the task ends, and
    the slots reserved for it (the ones left unused are given back then)."""

    workflow_tasks: list[WorkflowTask] = field(default_factory=list)
    activity_tasks: list[ActivityTask] = field(default_factory=list)
    workflow_slots: int = 0
    activity_slots: int = 0


@dataclass(frozen=True)
class Step:
    """One activation's result, ready to write."""

    instance: WorkflowInstance
    events: list[HistoryEvent]
    """WorkflowTaskStarted, the incoming events as history keeps them, then the decisions
    (``WorkflowInstance.task_events``)."""
    decisions: list[Decision]
    rejected: list[UpdateRejected]
    """The update requests it rejected: consumed, in no history, answered by the plan."""


@dataclass(frozen=True)
class Taking:
    """Where this worker takes the work its writes make: the backend's capability, and the
    slots (with the names they run) of each kind it runs."""

    backend: HandOffs
    owner: str
    lease: timedelta
    activity_slots: Slots | None
    activity_names: frozenset[str]
    workflow_slots: Slots | None
    workflow_names: frozenset[str]
    queues: frozenset[str]
    """The queues the worker serves: it takes only work of those (and activities of the
    default queue alone, the one queue sure to have no limits)."""


class WorkflowSteps:
    def __init__(
        self,
        backend: Backend,
        workflows: Mapping[str, Definition],
        cache: WorkflowCache,
        threads: WorkflowThreads,
        task_timeout: timedelta,
        lease: timedelta,
        taking: Taking | None,
    ) -> None:
        self._backend = backend
        self._workflows = workflows
        self._cache = cache
        self._threads = threads
        self._timeout = task_timeout.total_seconds()
        self._lease = lease
        self._taking = taking
        self._clock = BackendClock(backend.clock if isinstance(backend, LocalClock) else None)
        self.metrics = Metrics()
        """Told of each run's start and end (set by the worker's ``Running``)."""
        self.tracing = Tracing()
        """Makes each step's span (set by the worker's ``Running``)."""
        self.on_committed: Callable[[str, CommitPlan], None] = lambda run_id, plan: None
        """Told each plan this worker committed, by run id: its running attempts of the
        activities the plan cancels (all of the run's, if it ends) stop at once, not at
        the next lease renewal."""

    # -- activation ------------------------------------------------------------------------

    async def activate(
        self,
        task: WorkflowTask,
        instance: WorkflowInstance | None,
        history: list[HistoryEvent],
    ) -> Step:
        """The claimed task's step, on ``instance`` (cached) or one replayed from
        ``history``."""
        self._clock.observe(task.claimed_at)
        incoming = [item.event for item in task.inbox]
        step = await self._step(
            task.workflow_id, task.run_id, task.workflow_name, instance, history, task.claimed_at,
            incoming,
        )  # fmt: skip
        step.instance.parent = task.parent  # for the tasks it runs ahead
        return step

    async def _step(
        self,
        workflow_id: str,
        run_id: str,
        workflow_name: str,
        instance: WorkflowInstance | None,
        history: list[HistoryEvent],
        at: datetime,
        incoming: Sequence[Incoming],
    ) -> Step:
        """Replay (on a cache miss) and activate on a workflow thread, within the timeout."""

        def work() -> tuple[WorkflowInstance, list[Decision]]:
            definition = self._workflows[workflow_name]
            live = instance or replay_new(definition, workflow_id, history, run_id)
            try:
                return live, live.activate(Activation(max(at, live.now), incoming))
            except BaseException:
                live.close()
                raise

        try:
            live, decisions = await self._threads.run(work, run_id)
        except ThreadTimeout:
            raise WorkflowSandboxError(
                f"workflow code of {workflow_id!r} ran {self._timeout:g}s without "
                "awaiting anything: a blocking wait (a lock, a queue) or a busy loop? "
                "Blocking work belongs in an activity"
            ) from None
        except ThreadRefused as exc:
            raise WorkflowSandboxError(f"workflow task of {workflow_id!r} not run: {exc}") from None
        return Step(live, live.task_events(incoming, decisions), decisions, live.rejected_updates())

    # -- writing a workflow task -----------------------------------------------------------

    async def commit(
        self, task: WorkflowTask, plan: CommitPlan, decisions: Sequence[Decision], hand: HandOver
    ) -> None:
        """Write the task's plan, taking its new activities for this worker where it can."""
        what = f"committing the workflow task of {task.workflow_id!r}"
        taking = self._taking
        if taking is None:
            await self._retrying(lambda: self._backend.commit_workflow_task(task, plan), what)
            self._committed(task, task.history_length, plan)
            return
        take = self._take(taking, plan, hand, handing_over=0)
        try:
            taken = await self._retrying(
                lambda: taking.backend.commit_and_take(task, plan, take), what
            )
        except Exception:
            if take.activities:  # the commit may have happened, its answer lost
                hand.activity_tasks.extend((await self._reclaim(task.run_id, take)).activities)
            raise
        hand.activity_tasks.extend(taken)
        self._committed(task, task.history_length, plan)

    def _take(self, taking: Taking, plan: CommitPlan, hand: HandOver, handing_over: int) -> Take:
        """Which new activities to take, within the free activity slots (and those the
        caller's own activity is handing over); the slots held go into ``hand``."""
        wanted = [
            a.seq
            for a in plan.activities
            if a.name in taking.activity_names
            and a.queue == DEFAULT_QUEUE
            and DEFAULT_QUEUE in taking.queues
        ]
        slots = taking.activity_slots
        held = slots.reserve(len(wanted), handing_over) if slots and wanted else 0
        hand.activity_slots += held
        return Take(taking.owner, taking.lease, frozenset(wanted[:held]))

    # -- writing an activity's outcome -----------------------------------------------------

    async def complete(
        self,
        activity: ActivityTask,
        outcome: ActivityCompleted | ActivityFailed,
        hand: HandOver,
    ) -> None:
        """Record the activity's outcome. Where this worker runs the workflow too, the
        workflow's next task is taken in the same write: run ahead and committed with the
        outcome when the instance is cached, else leased to run here at once."""
        what = f"recording the outcome of activity task {activity.id}"
        taking = self._taking
        slots = taking.workflow_slots if taking else None
        if (
            taking is None
            or slots is None
            or activity.workflow_name not in taking.workflow_names
            or activity.workflow_queue not in taking.queues
            or not slots.reserve(1)
        ):
            await self._retrying(
                lambda: self._backend.complete_activity_task(activity, outcome), what
            )
            return
        hand.workflow_slots += 1
        ahead = await self._run_ahead(activity, outcome)
        take = Take(taking.owner, taking.lease)
        if ahead is not None:
            take = self._take(taking, ahead[2], hand, handing_over=1)
        run_ahead = None if ahead is None else RunAhead(ahead[0], ahead[2])
        try:
            done = await self._retrying(
                lambda: taking.backend.complete_and_continue(activity, outcome, take, run_ahead),
                what,
            )
        except Exception:
            if ahead is not None:
                ahead[1].instance.close()
            reclaimed = await self._reclaim(activity.run_id, take)  # recorded, its answer lost?
            hand.activity_tasks.extend(reclaimed.activities)
            if reclaimed.workflow_task is not None:
                hand.workflow_tasks.append(reclaimed.workflow_task)
            raise
        hand.activity_tasks.extend(done.activities)
        if done.resumed is not None:
            hand.workflow_tasks.append(done.resumed)
        if ahead is None:
            return
        length, step, plan = ahead
        if done.committed:
            step.instance.history_length = length + len(step.events)
            self._cache.put(step.instance)
            self._committed(activity, length, plan)
        else:
            step.instance.close()

    async def _run_ahead(
        self, activity: ActivityTask, outcome: ActivityCompleted | ActivityFailed
    ) -> tuple[int, Step, CommitPlan] | None:
        """The workflow's next step on its cached instance fed only the activity's outcome,
        with the history length it follows; None when there is nothing to run ahead (no
        cached instance, no backend time read yet, or the step failed: the task, run as
        usual, then fails visibly)."""
        now = self._clock.now()
        instance = self._cache.take_latest(activity.run_id) if now is not None else None
        if instance is None or now is None:
            return None
        length = instance.history_length
        with self.tracing.workflow_task(
            activity.workflow_name, activity.workflow_id, activity.run_id, instance.trace_context
        ) as span:
            try:
                step = await self._step(
                    activity.workflow_id, activity.run_id, activity.workflow_name, instance, [],
                    now, [outcome],
                )  # fmt: skip
            except Exception as exc:  # closed by _step
                span.ended("task_failed", exc)
                return None
            changed = instance.changed_vars()
            plan = plan_commit(
                step.events, (), activity, instance.parent, changed, trace_context=span.carried
            )
            self.traced(span, step, plan)
        return length, step, plan

    # -- tracing ---------------------------------------------------------------------------

    def traced(self, span: SpanHandle, step: Step, plan: CommitPlan) -> None:
        """End a step's span with what the step decided: the events it sent, each as a
        span of its own, and the run's ending (a failure marks the span failed)."""
        for decision in step.decisions:
            if isinstance(decision, EventSent):
                with self.tracing.send_event(decision.name, decision.workflow_id):
                    pass
        ending = plan.ending
        if ending is None:
            span.ended("running")
            return
        failed = ending.status is WorkflowStatus.FAILED
        failure = None
        if failed and ending.failure is not None:
            failure = FAILURE.validate_json(ending.failure)
        span.ended(
            ending.status.value,
            None if failure is None else f"{failure.type}: {failure.message}",
        )

    # -- plumbing --------------------------------------------------------------------------

    def _committed(self, run: OfRun, history_length: int, plan: CommitPlan) -> None:
        _log_committed(run, history_length, plan)
        self.metrics.committed(run.workflow_name, history_length, plan)
        self.on_committed(run.run_id, plan)

    async def _reclaim(self, run_id: str, take: Take) -> Reclaimed:
        assert self._taking is not None
        backend = self._taking.backend
        try:
            return await self._retrying(
                lambda: backend.reclaim(run_id, take), f"reclaiming what {run_id!r} leased to us"
            )
        except Exception:
            log.exception("reclaiming what run %r leased to this worker failed", run_id)
            return Reclaimed(None, [])  # claimed again once its lease runs out

    async def _retrying(self, write: Callable[[], Awaitable[W]], what: str) -> W:
        return await retry_while_unavailable(write, what, self._lease)


def _log_committed(run: OfRun, history_length: int, plan: CommitPlan) -> None:
    """A workflow's lifecycle, as the commits of its tasks make it: its start (its first
    task), its end with its error, going on as a new run."""
    about_it: dict[str, object] = {"activity": None, "attempt": None}  # even run ahead
    if history_length == 0:
        log.info("workflow %r (%s) started", run.workflow_id, run.workflow_name, extra=about_it)
    ending = plan.ending
    if ending is None:
        return
    if ending.status in (WorkflowStatus.COMPLETED, WorkflowStatus.CONTINUED_AS_NEW):
        said = "completed" if ending.status is WorkflowStatus.COMPLETED else "continued as new"
        log.info("workflow %r %s", run.workflow_id, said, extra=about_it)
        return
    failure = None if ending.failure is None else FAILURE.validate_json(ending.failure)
    log.warning(
        "workflow %r %s: %s%s",
        run.workflow_id,
        ending.status.value,
        "" if failure is None else f"{failure.type}: {failure.message}",
        f"\n{failure.traceback}" if failure is not None and failure.traceback else "",
        extra=about_it,
    )


def trace_parent(
    instance: WorkflowInstance | None, history: Sequence[HistoryEvent], incoming: Sequence[Incoming]
) -> TraceContext | None:
    """The trace context a run's start carried, known before its step runs: on the cached
    instance, else at the head of its history (after the first task's start), or (its first
    task) among its new events."""
    if instance is not None:
        return instance.trace_context
    for event in (*history[:2], *incoming):
        if isinstance(event, WorkflowExecutionStarted):
            return event.trace_context
    return None
