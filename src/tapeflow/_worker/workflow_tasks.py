"""Runs one workflow task: find or rebuild the instance, activate it, commit in one go."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta

from tapeflow._definition import Definition
from tapeflow._engine.instance import TASK_FAILURES, Activation, WorkflowInstance
from tapeflow._engine.replay import replay_new
from tapeflow._worker.cache import WorkflowCache
from tapeflow._worker.persist import persist
from tapeflow.backends.base import Backend, WorkflowTask
from tapeflow.errors import LeaseLost, PayloadError
from tapeflow.history import HistoryEvent, WorkflowTaskStarted
from tapeflow.options import RetryPolicy

log = logging.getLogger("tapeflow.worker")

TASK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
)
"""Backoff for a workflow task that failed (non-determinism, a bug): retried until fixed."""


class WorkflowTaskRunner:
    def __init__(
        self,
        backend: Backend,
        workflows: Mapping[str, Definition],
        cache: WorkflowCache,
        lease: timedelta,
    ) -> None:
        self._backend = backend
        self._workflows = workflows
        self._cache = cache
        self._lease = lease

    async def run(self, task: WorkflowTask) -> None:
        instance: WorkflowInstance | None = None
        try:
            if task.poison is not None:
                raise PayloadError(task.poison)
            instance = await self._instance_for(task)
            at = max(task.claimed_at, instance.now)
            incoming = [item.event for item in task.inbox]
            decisions = instance.activate(Activation(at, incoming))
            events: list[HistoryEvent] = [WorkflowTaskStarted(at=at), *incoming, *decisions]
            consumed = [item.id for item in task.inbox]
            await persist(
                lambda: self._backend.commit_workflow_task(task, consumed, events),
                f"committing the workflow task of {task.workflow_id!r}",
                self._lease,
            )
        except LeaseLost as exc:
            log.warning("%s; the new holder goes on", exc)
            if instance is not None:
                instance.close()
        except Exception as exc:
            if instance is not None:
                instance.close()
            await self._give_back(task, exc)
        else:
            instance.history_length = task.history_length + len(events)
            self._cache.put(instance)

    async def _instance_for(self, task: WorkflowTask) -> WorkflowInstance:
        cached = self._cache.take(task.workflow_id, task.history_length)
        if cached is not None:
            return cached
        definition = self._workflows[task.workflow_name]
        history = (
            await persist(
                lambda: self._backend.load_history(task.workflow_id),
                f"loading the history of {task.workflow_id!r}",
                self._lease,
            )
            if task.history_length
            else []
        )
        return replay_new(definition, task.workflow_id, history)

    async def _give_back(self, task: WorkflowTask, exc: Exception) -> None:
        delay = TASK_RETRY.delay_after(task.failures + 1)
        log.error(
            "workflow task of %r failed (retry in %.0fs): %s: %s",
            task.workflow_id,
            delay.total_seconds(),
            type(exc).__name__,
            exc,
            exc_info=not isinstance(exc, TASK_FAILURES),
        )
        try:
            await self._backend.abandon_workflow_task(task, f"{type(exc).__name__}: {exc}", delay)
        except LeaseLost:
            pass
        except Exception:
            log.exception("releasing the workflow task of %r failed", task.workflow_id)
