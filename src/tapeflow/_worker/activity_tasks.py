"""Runs one activity attempt and records its outcome: a result, a final failure, or a retry."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Mapping
from concurrent.futures import Executor
from datetime import UTC, datetime, timedelta
from typing import Any

from tapeflow import _activity_context
from tapeflow._activity_context import ActivityContext, ActivityInfo
from tapeflow._definition import Definition
from tapeflow._worker.process_pool import ProcessPool
from tapeflow._worker.retrying import retry_while_unavailable
from tapeflow._worker.workflow_steps import HandOver, WorkflowSteps
from tapeflow.backends.base import ActivityTask, Backend
from tapeflow.converter import Signature
from tapeflow.errors import ActivityTaskGone, LeaseLost, NonRetryableError, PayloadError
from tapeflow.history import ActivityCompleted, ActivityFailed, Failure
from tapeflow.options import RetryPolicy, clamp_delay

log = logging.getLogger("tapeflow.worker")

FINAL_ERRORS = (NonRetryableError, PayloadError)
"""Failures that another attempt would only repeat."""

GIVE_UP_SECONDS = 5.0
"""Longest a stopping worker tries to release the lease of an attempt it gives up on."""


class ActivityTaskRunner:
    """Whatever an activity raises, SystemExit and KeyboardInterrupt included, is a failed
    attempt under its retry policy: user code never stops the worker. Only a cancellation
    of the worker's own task (``stop()`` past its grace period) goes on up."""

    def __init__(
        self,
        backend: Backend,
        activities: Mapping[str, Definition],
        default_retry: RetryPolicy,
        executor: Executor,
        lease: timedelta,
        steps: WorkflowSteps | None,
    ) -> None:
        self._lease = lease
        self._steps = steps
        """This worker's workflow steps, when it runs workflows too: an outcome then goes
        on with the workflow's next task at once (see ``WorkflowSteps.complete``)."""
        self._backend = backend
        self._activities = activities
        self._default_retry = default_retry
        self._executor = executor
        self._running: dict[str, ActivityContext] = {}

    def cancel(self, task_id: str) -> None:
        """The attempt of this activity task no longer counts (the workflow cancelled it,
        or ended, or the lease is gone): tell it. An async activity's task is cancelled;
        a sync one sees ActivityCancelled at its next ``activity.heartbeat()``."""
        context = self._running.get(task_id)
        if context is None or context.cancelled:
            return
        context.cancelled = True
        if context.task is not None:
            context.task.cancel()

    def take_heartbeats(self) -> dict[str, Any]:
        """Heartbeat details recorded since the last call, by task id, for the lease renewal."""
        beats = {}
        for task_id, context in list(self._running.items()):
            pending, details = context.take_heartbeat()
            if pending:
                beats[task_id] = details
        return beats

    async def run(self, task: ActivityTask, hand: HandOver) -> None:
        context = ActivityContext(
            ActivityInfo(
                workflow_id=task.workflow_id,
                run_id=task.run_id,
                activity_name=task.name,
                seq=task.seq,
                attempt=task.attempt,
                scheduled_by=task.workflow_name,
                heartbeat_details=task.heartbeat_details,
            )
        )
        outcome: ActivityCompleted | ActivityFailed
        definition = self._activities[task.name]
        self._running[str(task.id)] = context
        if definition.is_async:
            context.task = asyncio.current_task()
        try:
            try:
                result = await self._invoke(definition, task, context)
                outcome = ActivityCompleted(seq=task.seq, result=result, attempt=task.attempt)
            except FINAL_ERRORS as exc:
                outcome = self._failed(task, exc)
            except BaseException as exc:  # SystemExit, a stray CancelledError: an attempt failed
                if context.cancelled and isinstance(exc, asyncio.CancelledError):
                    current = asyncio.current_task()
                    if current is not None and current.uncancel() == 0:  # only we cancelled
                        self._discard(task)
                        return
                if _cancelled(exc):
                    await self._give_up(task, context)
                    raise
                if context.cancelled:
                    self._discard(task)
                    return
                policy = RetryPolicy.from_json(task.retry) if task.retry else self._default_retry
                if not policy.allows_another(task.attempt):
                    outcome = self._failed(task, exc)
                else:
                    delay = policy.delay_after(task.attempt)
                    if context.next_attempt_at is not None:  # the activity's own override
                        delay = clamp_delay(context.next_attempt_at - datetime.now(UTC))
                    log.info(
                        "activity %r of %r failed on attempt %d, retrying in %.3fs: %s",
                        task.name,
                        task.workflow_id,
                        task.attempt,
                        delay.total_seconds(),
                        exc,
                    )
                    _, details = context.take_heartbeat()
                    failure = Failure.from_exception(exc)
                    await retry_while_unavailable(
                        lambda: self._backend.retry_activity_task(task, failure, delay, details),
                        f"scheduling the retry of activity task {task.id}",
                        self._lease,
                    )
                    return
            if context.cancelled:  # it ended on its own before the cancel reached it
                if context.task is not None and context.task.cancelling():
                    context.task.uncancel()  # the request it never saw
                self._discard(task)
                return
            await self._complete(task, outcome, hand)
        except ActivityTaskGone as exc:  # cancelled before this worker was told
            log.info("%s; its outcome is discarded", exc)
        except LeaseLost as exc:
            log.warning("%s; its outcome is discarded", exc)
        finally:
            context.task = None
            self._running.pop(str(task.id), None)

    @staticmethod
    def _discard(task: ActivityTask) -> None:
        log.info(
            "activity %r of %r: attempt %d was cancelled; its outcome is discarded",
            task.name,
            task.workflow_id,
            task.attempt,
        )

    async def _give_up(self, task: ActivityTask, context: ActivityContext) -> None:
        """The worker stops past its grace period with this attempt still running: release
        its lease (the attempt counts as failed, its heartbeat kept) so that another worker
        retries it now rather than once the lease runs out. Bounded: the worker is stopping."""
        failure = Failure(
            type="WorkerStopped",
            message="the worker stopped while this attempt ran, past its shutdown_grace",
            traceback=None,
        )
        _, details = context.take_heartbeat()
        try:
            async with asyncio.timeout(GIVE_UP_SECONDS):
                await self._backend.retry_activity_task(task, failure, timedelta(0), details)
        except (Exception, TimeoutError) as exc:  # its lease runs out instead
            log.warning("releasing the lease of activity task %s failed: %s", task.id, exc)
        else:
            log.warning(
                "activity %r of %r was still running when the worker stopped: attempt %d is "
                "given up and released for another worker",
                task.name,
                task.workflow_id,
                task.attempt,
            )

    async def _complete(
        self, task: ActivityTask, outcome: ActivityCompleted | ActivityFailed, hand: HandOver
    ) -> None:
        if self._steps is not None:
            await self._steps.complete(task, outcome, hand)
            return
        await retry_while_unavailable(
            lambda: self._backend.complete_activity_task(task, outcome),
            f"recording the outcome of activity task {task.id}",
            self._lease,
        )

    async def _invoke(
        self, definition: Definition, task: ActivityTask, context: ActivityContext
    ) -> Any:
        """Run the attempt and encode its result as JSON. A sync activity's result is encoded
        where it ran (its thread or process), off the worker's loop; an async one's on the
        loop, where it was built, so encoding takes no longer than building it did."""
        if task.poison is not None:
            raise PayloadError(task.poison)
        args = definition.signature.decode_args(task.args)
        _activity_context.current.set(context)
        loop = asyncio.get_running_loop()
        if definition.is_async:
            return definition.signature.encode_result(await definition.function(*args))
        if isinstance(self._executor, ProcessPool):
            ok, value, child = await loop.run_in_executor(
                self._executor, _call_in_process, definition.signature, args, context.info
            )
            context.next_attempt_at = child.next_attempt_at
            if child.heartbeat_pending:
                context.record_heartbeat(child.heartbeat)
            if not ok:
                raise value
            return value
        run = contextvars.copy_context().run
        return await loop.run_in_executor(
            self._executor, run, _call_and_encode, definition.signature, args
        )

    @staticmethod
    def _failed(task: ActivityTask, exc: BaseException) -> ActivityFailed:
        return ActivityFailed(
            seq=task.seq, failure=Failure.from_exception(exc), attempt=task.attempt
        )


def _call_and_encode(signature: Signature, args: list[Any]) -> Any:
    return signature.encode_result(signature.function(*args))


def _call_in_process(
    signature: Signature, args: list[Any], info: ActivityInfo
) -> tuple[bool, Any, ActivityContext]:
    """Runs in a pool process: the activity context is rebuilt there and carried back (retry
    override, heartbeat), since context variables do not cross processes. The result comes
    back as JSON, so a value that cannot be stored fails here, not in pickling."""
    context = ActivityContext(info)
    _activity_context.current.set(context)
    try:
        return True, _call_and_encode(signature, args), context
    except BaseException as exc:  # sys.exit() too: a failed attempt, not a dead pool process
        return False, exc, context


def _cancelled(exc: BaseException) -> bool:
    """Whether ``exc`` is this task being cancelled (the worker stopping), which must go on
    up, rather than a CancelledError the activity raised or let out on its own."""
    task = asyncio.current_task()
    return isinstance(exc, asyncio.CancelledError) and task is not None and task.cancelling() > 0
