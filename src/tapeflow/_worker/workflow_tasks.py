"""Runs one workflow task: find or rebuild the instance, activate it, commit in one go."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from tapeflow._definition import Definition
from tapeflow._engine.instance import TASK_FAILURES, Activation, WorkflowInstance
from tapeflow._engine.replay import replay_new
from tapeflow._worker.cache import WorkflowCache
from tapeflow._worker.eager import EagerDispatch
from tapeflow._worker.persist import persist
from tapeflow.backends.base import ActivityTask, Backend, EagerActivities, WorkflowTask
from tapeflow.errors import LeaseLost, PayloadError, WorkflowSandboxError
from tapeflow.history import Decision, HistoryEvent, WorkflowTaskStarted
from tapeflow.options import RetryPolicy

log = logging.getLogger("tapeflow.worker")

TASK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
)
"""Backoff for a workflow task that failed (non-determinism, a bug): retried until fixed."""


class WorkflowTaskRunner:
    """Workflow code runs on a thread of its own, so code that blocks (``time.sleep``, a busy
    loop) is caught by ``task_timeout`` instead of freezing the worker: the task fails
    visibly and its lease is released while the worker goes on."""

    def __init__(
        self,
        backend: Backend,
        workflows: Mapping[str, Definition],
        cache: WorkflowCache,
        lease: timedelta,
        task_timeout: timedelta,
        threads: int,
    ) -> None:
        self.eager: EagerDispatch | None = None
        """Set when this worker also runs activities: it then takes its own at once."""
        self._backend = backend
        self._workflows = workflows
        self._cache = cache
        self._lease = lease
        self._timeout = task_timeout.total_seconds()
        self._engine = ThreadPoolExecutor(threads, thread_name_prefix="tapeflow-workflow")

    def close(self) -> None:
        self._engine.shutdown(wait=False, cancel_futures=True)

    async def run(self, task: WorkflowTask) -> None:
        instance: WorkflowInstance | None = None
        try:
            if task.poison is not None:
                raise PayloadError(task.poison)
            instance = self._cache.take(task.workflow_id, task.history_length)
            history = [] if instance is not None else await self._history(task)
            instance, decisions = await self._in_thread(task, instance, history)
            incoming = [item.event for item in task.inbox]
            at = instance.now
            events: list[HistoryEvent] = [WorkflowTaskStarted(at=at), *incoming, *decisions]
            consumed = [item.id for item in task.inbox]
            await self._commit(task, consumed, events, decisions)
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

    async def _commit(
        self,
        task: WorkflowTask,
        consumed: list[int],
        events: list[HistoryEvent],
        decisions: list[Decision],
    ) -> None:
        eager, held = self.eager.take(decisions) if self.eager else (None, 0)
        taken: list[ActivityTask] = []
        try:
            taken = await persist(
                lambda: self._backend.commit_workflow_task(task, consumed, events, eager),
                f"committing the workflow task of {task.workflow_id!r}",
                self._lease,
            )
        except Exception:
            if eager is not None:  # the commit may have happened, its answer lost
                taken = await self._reclaim(task.workflow_id, eager)
            raise
        finally:
            if self.eager is not None:
                self.eager.run(taken, held)

    async def _reclaim(self, workflow_id: str, eager: EagerActivities) -> list[ActivityTask]:
        try:
            return await persist(
                lambda: self._backend.reclaim_eager_activities(workflow_id, eager),
                f"reclaiming the eager activities of {workflow_id!r}",
                self._lease,
            )
        except Exception:
            log.exception("reclaiming the eager activities of %r failed", workflow_id)
            return []  # they run elsewhere once their lease runs out

    async def _history(self, task: WorkflowTask) -> list[HistoryEvent]:
        if not task.history_length:
            return []
        return await persist(
            lambda: self._backend.load_history(task.workflow_id),
            f"loading the history of {task.workflow_id!r}",
            self._lease,
        )

    async def _in_thread(
        self, task: WorkflowTask, instance: WorkflowInstance | None, history: list[HistoryEvent]
    ) -> tuple[WorkflowInstance, list[Decision]]:
        """Replay (on a cache miss) and activate on the engine thread, within the timeout."""

        def work() -> tuple[WorkflowInstance, list[Decision]]:
            live = instance or replay_new(
                self._workflows[task.workflow_name], task.workflow_id, history
            )
            at = max(task.claimed_at, live.now)
            try:
                return live, live.activate(Activation(at, [i.event for i in task.inbox]))
            except BaseException:
                live.close()
                raise

        future = asyncio.get_running_loop().run_in_executor(self._engine, work)
        try:
            return await asyncio.wait_for(future, self._timeout)
        except TimeoutError:
            raise WorkflowSandboxError(
                f"workflow code of {task.workflow_id!r} ran {self._timeout:g}s without "
                "awaiting anything: a blocking call (time.sleep, I/O) or a busy loop? "
                "Blocking work belongs in an activity"
            ) from None

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
