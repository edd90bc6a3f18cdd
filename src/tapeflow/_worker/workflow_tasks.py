"""Runs one workflow task: find or rebuild the instance, activate it, commit in one go."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TypeVar

from tapeflow._definition import Definition
from tapeflow._engine.instance import TASK_FAILURES, Activation, WorkflowInstance
from tapeflow._engine.replay import replay_new
from tapeflow._worker.cache import WorkflowCache
from tapeflow._worker.clock import BackendClock
from tapeflow._worker.eager import EagerDispatch
from tapeflow._worker.poller import Poller
from tapeflow._worker.retrying import retry_while_unavailable
from tapeflow._worker.workflow_threads import ThreadRefused, ThreadTimeout, WorkflowThreads
from tapeflow.backends.base import (
    ActivityTask,
    Backend,
    Continuation,
    Continued,
    EagerActivities,
    ResumeWorkflow,
    WorkflowTask,
)
from tapeflow.errors import LeaseLost, PayloadError, UnseenEvents, WorkflowSandboxError
from tapeflow.history import (
    ActivityCompleted,
    ActivityFailed,
    Decision,
    Failure,
    HistoryEvent,
    Incoming,
    WorkflowExecutionFailed,
    WorkflowTaskStarted,
)
from tapeflow.options import RetryPolicy

log = logging.getLogger("tapeflow.worker")
W = TypeVar("W")

TASK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
)
"""Backoff for a workflow task that failed (non-determinism, a bug): retried until fixed."""

WORKFLOW_THREADS = 2
"""WorkflowThreads threads share the GIL, so more do not run more at once; two keep a long replay
from holding up every other activation."""


class WorkflowTaskRunner:
    """Workflow code runs on a thread of its own, so code that blocks (a wait on a lock, a busy
    loop) is caught by ``task_timeout`` instead of freezing the worker: the task fails
    visibly and its lease is released while the worker goes on.

    The thread stays stuck, though, taking its share of the GIL. So a workflow whose
    earlier code is still stuck here is not run again here (its task fails and backs off
    as any other), and with ``max_abandoned`` threads stuck this worker claims no workflow
    tasks at all until one returns: its poller is held, and ``refusal`` says why."""

    def __init__(
        self,
        backend: Backend,
        workflows: Mapping[str, Definition],
        cache: WorkflowCache,
        lease: timedelta,
        task_timeout: timedelta,
        threads: int,
        max_abandoned: int,
    ) -> None:
        self.eager: EagerDispatch | None = None
        """Set when this worker also runs activities: it then takes its own at once."""
        self.poller: Poller[WorkflowTask] | None = None
        """The poller claiming this runner's tasks, held while too many threads are stuck."""
        self._backend = backend
        self._workflows = workflows
        self._cache = cache
        self._lease = lease
        self._timeout = task_timeout.total_seconds()
        self._max_abandoned = max_abandoned
        self._threads = WorkflowThreads(
            min(threads, WORKFLOW_THREADS),
            self._timeout,
            max_abandoned,
            on_abandoned=self._abandoned_changed,
        )
        self._held = False
        self._clock = BackendClock()

    def close(self) -> None:
        self._threads.close()

    @property
    def abandoned_threads(self) -> int:
        """Threads still stuck in workflow code that ran past the task timeout."""
        return self._threads.abandoned

    @property
    def refusal(self) -> str | None:
        """Why this worker takes no workflow tasks now; None while it takes them."""
        if not self._threads.full:
            return None
        return (
            f"{self._threads.abandoned} threads are stuck in workflow code that ran past "
            f"{self._timeout:g}s without awaiting (max_abandoned_workflow_threads="
            f"{self._max_abandoned}); workflow tasks are taken again once one returns"
        )

    def _abandoned_changed(self) -> None:
        reason = self.refusal
        if (reason is not None) == self._held:
            return
        self._held = reason is not None
        if reason is not None:
            log.error("this worker takes no workflow tasks: %s", reason)
        else:
            log.warning("a stuck workflow thread returned: this worker takes workflow tasks again")
        if self.poller is not None:
            self.poller.hold(self._held)

    async def run(self, task: WorkflowTask) -> None:
        instance: WorkflowInstance | None = None
        self._clock.observe(task.claimed_at)
        try:
            if task.poison is not None:
                await self._fail_unreadable(task, task.poison)
                return
            instance = self._cache.take(task.workflow_id, task.history_length)
            try:
                history = [] if instance is not None else await self._history(task)
            except PayloadError as exc:  # a stored event cannot be read
                await self._fail_unreadable(task, str(exc))
                return
            incoming = [item.event for item in task.inbox]
            instance, decisions = await self._activate(
                task.workflow_id, task.workflow_name, instance, history, task.claimed_at, incoming
            )
            at = instance.now
            events: list[HistoryEvent] = [WorkflowTaskStarted(at=at), *incoming, *decisions]
            consumed = [item.id for item in task.inbox]
            await self._commit(task, consumed, events, decisions)
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
            instance.history_length = task.history_length + len(events)
            self._cache.put(instance)

    async def _commit(
        self,
        task: WorkflowTask,
        consumed: list[int],
        events: list[HistoryEvent],
        decisions: list[Decision],
    ) -> None:
        await self._write_with_eager(
            task.workflow_id,
            decisions,
            lambda eager: self._backend.commit_workflow_task(task, consumed, events, eager),
            lambda taken: taken,
            f"committing the workflow task of {task.workflow_id!r}",
        )

    async def _write_with_eager(
        self,
        workflow_id: str,
        decisions: list[Decision],
        write: Callable[[EagerActivities | None], Awaitable[W]],
        leased: Callable[[W], list[ActivityTask]],
        what: str,
        handing_over: int = 0,
    ) -> W:
        """Persist a write that may lease the new activities to this worker (``leased`` says
        which it did), then run them; if its answer is lost, take them back by owner."""
        eager, held = self.eager.take(decisions, handing_over) if self.eager else (None, 0)
        taken: list[ActivityTask] = []
        try:
            written = await retry_while_unavailable(lambda: write(eager), what, self._lease)
            taken = leased(written)
            return written
        except Exception:
            if eager is not None:  # the commit may have happened, its answer lost
                taken = await self._reclaim(workflow_id, eager)
            raise
        finally:
            if self.eager is not None:
                self.eager.run(taken, held)

    async def _reclaim(self, workflow_id: str, eager: EagerActivities) -> list[ActivityTask]:
        try:
            return await retry_while_unavailable(
                lambda: self._backend.reclaim_eager_activities(workflow_id, eager),
                f"reclaiming the eager activities of {workflow_id!r}",
                self._lease,
            )
        except Exception:
            log.exception("reclaiming the eager activities of %r failed", workflow_id)
            return []  # they run elsewhere once their lease runs out

    async def _fail_unreadable(self, task: WorkflowTask, why: str) -> None:
        """Stored data of the workflow cannot be read (a corrupt row): no task of it can
        ever run, so the workflow fails, visibly, once, instead of failing its task in a
        retry loop. The events of its inbox that can be read go into its history first, so
        none is lost; the unreadable ones are named in the failure."""
        log.error("workflow %r fails: %s", task.workflow_id, why)
        incoming = [item.event for item in task.inbox]
        failure = Failure(type=PayloadError.__name__, message=why)
        events: list[HistoryEvent] = [
            WorkflowTaskStarted(at=task.claimed_at),
            *incoming,
            WorkflowExecutionFailed(failure=failure),
        ]
        consumed = [item.id for item in task.inbox] + list(task.unreadable)
        await self._commit(task, consumed, events, [])

    async def _history(self, task: WorkflowTask) -> list[HistoryEvent]:
        if not task.history_length:
            return []
        return await retry_while_unavailable(
            lambda: self._backend.load_history(task.workflow_id),
            f"loading the history of {task.workflow_id!r}",
            self._lease,
        )

    async def _activate(
        self,
        workflow_id: str,
        workflow_name: str,
        instance: WorkflowInstance | None,
        history: list[HistoryEvent],
        at: datetime,
        incoming: Sequence[Incoming],
    ) -> tuple[WorkflowInstance, list[Decision]]:
        """Replay (on a cache miss) and activate on the engine thread, within the timeout."""

        def work() -> tuple[WorkflowInstance, list[Decision]]:
            live = instance or replay_new(self._workflows[workflow_name], workflow_id, history)
            try:
                return live, live.activate(Activation(max(at, live.now), incoming))
            except BaseException:
                live.close()
                raise

        try:
            return await self._threads.run(work, workflow_id)
        except ThreadTimeout:
            raise WorkflowSandboxError(
                f"workflow code of {workflow_id!r} ran {self._timeout:g}s without "
                "awaiting anything: a blocking wait (a lock, a queue) or a busy loop? "
                "Blocking work belongs in an activity"
            ) from None
        except ThreadRefused as exc:
            raise WorkflowSandboxError(f"workflow task of {workflow_id!r} not run: {exc}") from None

    async def continue_after(
        self,
        activity: ActivityTask,
        outcome: ActivityCompleted | ActivityFailed,
        resume: ResumeWorkflow,
    ) -> Continued | None:
        """Run the workflow's next task at once, on its cached instance fed only the
        activity's outcome, and commit it with the outcome in one transaction: one write
        and no hand-off per activity. None when there is nothing to run ahead (no cached
        instance, or no backend time read yet): the caller records the outcome alone. The
        backend falls back to that too if the task is held or the history moved on."""
        now = self._clock.now()
        instance = self._cache.take_latest(activity.workflow_id) if now is not None else None
        if instance is None or now is None:
            return None
        length = instance.history_length
        try:
            instance, decisions = await self._activate(
                activity.workflow_id, activity.workflow_name, instance, [], now, [outcome]
            )
        except Exception:  # the task, run as usual, fails visibly (closed by _activate)
            return None
        events = [WorkflowTaskStarted(at=instance.now), outcome, *decisions]
        try:
            done = await self._write_with_eager(
                activity.workflow_id,
                decisions,
                lambda eager: self._backend.continue_after_activity(
                    activity, outcome, Continuation(resume, length, events, eager)
                ),
                lambda done: done.eager,
                f"recording the outcome of activity task {activity.id}",
                handing_over=1,  # the activity's slot frees as this returns: the next may have it
            )
        except Exception:
            instance.close()
            raise
        if done.committed:
            instance.history_length = length + len(events)
            self._cache.put(instance)
        else:
            instance.close()
        return done

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
