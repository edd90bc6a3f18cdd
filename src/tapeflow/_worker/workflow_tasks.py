"""Runs one workflow task: find or rebuild the instance, activate it, commit in one go."""

from __future__ import annotations

import logging
from datetime import timedelta

from tapeflow._engine.instance import WorkflowInstance
from tapeflow._engine.task_failures import TASK_FAILURES
from tapeflow._worker.cache import WorkflowCache
from tapeflow._worker.log_context import worker_logger
from tapeflow._worker.metrics import Metrics, now
from tapeflow._worker.retrying import retry_while_unavailable
from tapeflow._worker.workflow_steps import HandOver, WorkflowSteps, trace_parent
from tapeflow.backends.base import Backend, TaskKind, WorkflowTask
from tapeflow.backends.plan import plan_commit
from tapeflow.errors import LeaseLost, PayloadError, UnseenEvents
from tapeflow.history import (
    ExecutionTimeoutReached,
    Failure,
    HistoryEvent,
    Imposed,
    TerminationRequested,
    UpdateRequested,
    WorkflowExecutionFailed,
    WorkflowExecutionTerminated,
    WorkflowExecutionTimedOut,
    WorkflowTaskStarted,
)
from tapeflow.options import RetryPolicy

log = worker_logger()

TASK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
)
"""Backoff for a workflow task that failed (non-determinism, a bug): retried until fixed."""


def _imposed(task: WorkflowTask) -> Imposed | None:
    """The ending the task's inbox imposes, if any: its execution timeout was reached, or
    its parent closed under the "terminate" policy."""
    for item in task.inbox:
        match item.event:
            case ExecutionTimeoutReached(timeout=timeout):
                return WorkflowExecutionTimedOut(timeout=timeout)
            case TerminationRequested(reason=reason, requested_by=requested_by):
                return WorkflowExecutionTerminated(reason=reason, requested_by=requested_by)
    return None


class WorkflowTaskRunner:
    """A task whose workflow code fails (non-determinism, a bug, code that blocks past the
    task timeout on its workflow thread) fails visibly and is retried with backoff, its lease
    released, while the worker goes on."""

    def __init__(
        self,
        backend: Backend,
        steps: WorkflowSteps,
        cache: WorkflowCache,
        lease: timedelta,
        metrics: Metrics,
    ) -> None:
        self._metrics = metrics
        self._backend = backend
        self._steps = steps
        self._cache = cache
        self._lease = lease

    async def run(self, task: WorkflowTask, hand: HandOver) -> None:
        started = now()
        try:
            await self._run(task, hand)
        finally:
            self._metrics.workflow_task(task.workflow_name, now() - started)

    async def _run(self, task: WorkflowTask, hand: HandOver) -> None:
        instance: WorkflowInstance | None = None
        try:
            if task.poison is not None:
                await self._fail_unreadable(task, task.poison, hand)
                return
            if (ending := _imposed(task)) is not None:
                await self._impose(task, ending, hand)
                return
            instance = self._cache.take(task.run_id, task.history_length)
            try:
                history = [] if instance is not None else await self._history(task)
            except PayloadError as exc:  # a stored event cannot be read
                await self._fail_unreadable(task, str(exc), hand)
                return
            incoming = [item.event for item in task.inbox]
            with self._steps.tracing.workflow_task(
                task.workflow_name,
                task.workflow_id,
                task.run_id,
                trace_parent(instance, history, incoming),
            ) as span:
                step = await self._steps.activate(task, instance, history)
                instance = step.instance
                consumed = [item.id for item in task.inbox]
                changed = instance.changed_vars()
                plan = plan_commit(
                    step.events,
                    consumed,
                    task,
                    task.parent,
                    changed,
                    step.rejected,
                    trace_context=span.carried,
                )
                writing = now()
                await self._steps.commit(task, plan, step.decisions, hand)
                self._metrics.commit_seconds(TaskKind.WORKFLOW, now() - writing)
                self._steps.traced(span, step, plan)
        except (LeaseLost, UnseenEvents) as exc:  # refused, nothing written: run it again
            unseen = isinstance(exc, UnseenEvents)  # a race the design expects: no warning
            log.log(logging.DEBUG if unseen else logging.WARNING, "%s; it runs again", exc)
            if instance is not None:
                instance.close()
            await self._release(task, None, timedelta(0))
        except Exception as exc:
            if instance is not None:
                instance.close()
            await self._give_back(task, exc)
        else:
            instance.history_length = task.history_length + len(step.events)
            self._cache.put(instance)

    async def _impose(self, task: WorkflowTask, ending: Imposed, hand: HandOver) -> None:
        """The run ends as ``ending`` says (timed out, terminated), no code of it run (its
        cached instance is dropped), whatever else its inbox holds."""
        cached = self._cache.take_latest(task.run_id)
        if cached is not None:
            cached.close()
        plan = plan_commit([ending], [item.id for item in task.inbox], task, task.parent)
        await self._steps.commit(task, plan, [], hand)

    async def _fail_unreadable(self, task: WorkflowTask, why: str, hand: HandOver) -> None:
        """Stored data of the workflow cannot be read (a corrupt row): no task of it can
        ever run, so the workflow fails, visibly, once, instead of failing its task in a
        retry loop. The events of its inbox that can be read go into its history first, so
        none is lost (but update requests, which no code took: their callers see the run
        end); the unreadable ones are named in the failure."""
        log.error("workflow %r fails: %s", task.workflow_id, why)
        failure = Failure(type=PayloadError.__name__, message=why)
        events: list[HistoryEvent] = [
            WorkflowTaskStarted(at=task.claimed_at),
            *(item.event for item in task.inbox if not isinstance(item.event, UpdateRequested)),
            WorkflowExecutionFailed(failure=failure),
        ]
        consumed = [item.id for item in task.inbox] + list(task.unreadable)
        await self._steps.commit(task, plan_commit(events, consumed, task, task.parent), [], hand)

    async def _history(self, task: WorkflowTask) -> list[HistoryEvent]:
        if not task.history_length:
            return []
        return await retry_while_unavailable(
            lambda: self._backend.load_history(task.workflow_id, task.run_id),
            f"loading the history of {task.workflow_id!r}",
            self._lease,
        )

    async def _give_back(self, task: WorkflowTask, exc: Exception) -> None:
        self._metrics.workflow_task_failed(task.workflow_name)
        delay = TASK_RETRY.delay_after(task.failures + 1)
        log.error(
            "workflow task of %r failed (retry in %.0fs): %s: %s",
            task.workflow_id,
            delay.total_seconds(),
            type(exc).__name__,
            exc,
            exc_info=not isinstance(exc, TASK_FAILURES),
        )
        await self._release(task, f"{type(exc).__name__}: {exc}", delay)

    async def _release(self, task: WorkflowTask, error: str | None, delay: timedelta) -> None:
        """Give the task's lease back, if it is still ours, so the task runs again after
        ``delay`` rather than once the lease runs out. The release is fenced: after a
        refused commit (events came while it ran, or history moved on under a claim that
        read an old state) it gives the lease back; one another worker holds is left alone."""
        try:
            await self._backend.abandon_workflow_task(task, error, delay)
        except LeaseLost:
            pass
        except Exception:
            log.exception("releasing the workflow task of %r failed", task.workflow_id)
