"""Runs one activity attempt and records its outcome: a result, a final failure, or a retry."""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Mapping
from concurrent.futures import Executor
from datetime import UTC, datetime, timedelta
from typing import Any

from tapeflow import _activity_context
from tapeflow._activity_context import ActivityContext, ActivityInfo
from tapeflow._definition import Definition
from tapeflow._tracing import SpanHandle, Tracing
from tapeflow._worker.log_context import worker_logger
from tapeflow._worker.metrics import Metrics, now
from tapeflow._worker.process_pool import ProcessPool
from tapeflow._worker.retrying import retry_while_unavailable
from tapeflow._worker.workflow_steps import HandOver, WorkflowSteps
from tapeflow.backends.base import ActivityTask, ActivityTimeouts, Backend, TaskKind
from tapeflow.backends.plan import CommitPlan
from tapeflow.converter import Signature
from tapeflow.errors import ActivityTaskGone, LeaseLost, NonRetryableError, PayloadError
from tapeflow.history import ActivityCompleted, ActivityFailed, Failure
from tapeflow.options import RetryPolicy, clamp_delay

log = worker_logger()

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
        metrics: Metrics,
        tracing: Tracing,
    ) -> None:
        self._metrics = metrics
        self._tracing = tracing
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
        if context is None or context.cancelled or context.ended:
            return
        context.cancelled = True
        if context.task is not None:
            context.task.cancel()

    def still_running(self, task_id: str) -> bool:
        """Whether an attempt of this task runs here and has not ended yet."""
        context = self._running.get(task_id)
        return context is not None and not context.ended

    def cancel_for(self, run_id: str, plan: CommitPlan) -> None:
        """Tell this worker's running attempts that a plan just committed for their run
        cancelled them (all of the run's, if it ended)."""
        if not self._running or not (plan.cancelled_activities or plan.ending):
            return
        cancelled = set(plan.cancelled_activities)
        for task_id, context in list(self._running.items()):
            info = context.info
            if info.run_id == run_id and (plan.ending is not None or info.seq in cancelled):
                self.cancel(task_id)

    def take_heartbeats(self) -> dict[str, Any]:
        """Heartbeat details recorded since the last call, by task id, for the lease renewal."""
        beats = {}
        for task_id, context in list(self._running.items()):
            pending, details = context.take_heartbeat()
            if pending:
                beats[task_id] = details
        return beats

    async def run(self, task: ActivityTask, hand: HandOver) -> None:
        with self._tracing.activity_attempt(
            task.name, task.attempt, task.workflow_id, task.run_id, task.trace_context
        ) as span:
            await self._run(task, hand, span)

    async def _run(self, task: ActivityTask, hand: HandOver, span: SpanHandle) -> None:
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
        ended = "discarded"  # what the metrics are told, unless an outcome is recorded
        error: BaseException | None = None  # what the attempt's span records
        try:
            try:
                result = await self._attempt(definition, task, context)
                outcome = ActivityCompleted(seq=task.seq, result=result, attempt=task.attempt)
            except FINAL_ERRORS as exc:
                error = exc
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
                if context.cancelled and not context.timed_out:
                    self._discard(task)
                    return
                final = await self._retry(task, context, exc)
                error = final or exc
                if final is None:
                    ended = "retried"
                    return
                outcome = self._failed(task, final)
            if context.cancelled and not context.timed_out:  # it ended before being told
                current = asyncio.current_task()
                if context.task is current and current is not None and current.cancelling():
                    current.uncancel()  # the request it never saw
                self._discard(task)
                return
            if isinstance(outcome, ActivityFailed):
                _log_final_failure(task, outcome.failure)
            await self._complete(task, outcome, hand)
            ended = "failed" if isinstance(outcome, ActivityFailed) else "completed"
        except ActivityTaskGone as exc:  # cancelled before this worker was told
            log.info("%s; its outcome is discarded", exc)
        except LeaseLost as exc:
            log.warning("%s; its outcome is discarded", exc)
        finally:
            context.task = None
            self._running.pop(str(task.id), None)
            self._metrics.activity_ended(task.name, ended)
            span.ended(ended, error if ended in ("retried", "failed") else None)

    async def _retry(
        self, task: ActivityTask, context: ActivityContext, exc: BaseException
    ) -> BaseException | None:
        """Schedule another attempt after a failed one if the retry policy allows it and it
        would start before the schedule-to-close deadline (None); else the final failure."""
        if context.timed_out == "schedule_to_close_timeout":
            return exc
        policy = self._policy(task)
        if not policy.allows_another(task.attempt):
            return exc
        delay = policy.delay_after(task.attempt)
        if context.next_attempt_at is not None:  # the activity's own override
            delay = clamp_delay(context.next_attempt_at - datetime.now(UTC))
        left = _schedule_left(task)
        if left is not None and left - timedelta(seconds=context.elapsed()) <= delay:
            limit = task.timeouts.schedule_to_close if task.timeouts else None
            final = _timed_out("schedule_to_close_timeout", limit)
            return TimeoutError(f"{final}: the next attempt would start past it ({exc})")
        log.info(
            "activity %r of %r failed on attempt %d, retrying at %s (in %.3fs): %s",
            task.name,
            task.workflow_id,
            task.attempt,
            (datetime.now(UTC) + delay).isoformat(timespec="milliseconds"),
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
        return None

    def _policy(self, task: ActivityTask) -> RetryPolicy:
        return RetryPolicy.from_json(task.retry) if task.retry else self._default_retry

    async def _attempt(
        self, definition: Definition, task: ActivityTask, context: ActivityContext
    ) -> Any:
        """The attempt's result; once it returns or raises, a cancel has nothing left to
        tell (its own commit's, say, must not reach the worker's task)."""
        try:
            return await self._within_limits(definition, task, context)
        finally:
            context.ended = True
            self._metrics.activity_ran(task.name, context.elapsed())

    async def _within_limits(
        self, definition: Definition, task: ActivityTask, context: ActivityContext
    ) -> Any:
        """Run the attempt within its time limits, if it has any: past one, it is told as
        if cancelled and TimeoutError raised at once (an attempt that ignores being told
        runs on, its outcome discarded)."""
        if task.attempt > 1 and not self._policy(task).allows_another(task.attempt - 1):
            raise NonRetryableError(  # the attempts before were lost with their workers
                f"attempt {task.attempt - 1} ended without an outcome (its worker was lost) "
                "and the retry policy allows no more",
                type="AttemptsExhausted",
            )
        limits = task.timeouts
        if limits is None:
            return await self._invoke(definition, task, context)
        left = _schedule_left(task)
        if left is not None and left <= timedelta(0):
            context.timed_out = "schedule_to_close_timeout"
            raise _timed_out(context.timed_out, limits.schedule_to_close)
        attempt = asyncio.create_task(self._invoke(definition, task, context))
        if definition.is_async:
            context.task = attempt
        try:
            passed = await _first_limit_passed(attempt, context, limits, left)
        except asyncio.CancelledError:  # the worker stops, or this attempt is cancelled
            attempt.cancel()
            raise
        if passed is None:
            return attempt.result()
        attempt.add_done_callback(_quietly)
        context.timed_out = passed
        self.cancel(str(task.id))
        seconds = {
            "start_to_close_timeout": limits.start_to_close,
            "heartbeat_timeout": limits.heartbeat,
            "schedule_to_close_timeout": limits.schedule_to_close,
        }[passed]
        raise _timed_out(passed, seconds)

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
        """Record the outcome (with the workflow's next step run ahead, where this worker
        runs the workflow too: its commit latency includes that step)."""
        writing = now()
        if self._steps is not None:
            await self._steps.complete(task, outcome, hand)
        else:
            await retry_while_unavailable(
                lambda: self._backend.complete_activity_task(task, outcome),
                f"recording the outcome of activity task {task.id}",
                self._lease,
            )
        self._metrics.commit_seconds(TaskKind.ACTIVITY, now() - writing)

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


def _timed_out(limit: str, seconds: float | None) -> TimeoutError:
    """The failure of an attempt past one of its activity's timeouts; past
    ``schedule_to_close_timeout`` the activity fails for good."""
    return TimeoutError(f"the attempt ran past its {limit} of {seconds or 0:g}s")


def _schedule_left(task: ActivityTask) -> timedelta | None:
    """How long the activity had left before its schedule-to-close deadline when this
    attempt was leased, by the backend's clock (all of it for an attempt its workflow's
    worker took as it scheduled it)."""
    limits = task.timeouts
    if limits is None or limits.schedule_to_close is None:
        return None
    if task.leased_at is None or limits.schedule_deadline is None:
        return timedelta(seconds=limits.schedule_to_close)
    return limits.schedule_deadline - task.leased_at


async def _first_limit_passed(
    attempt: asyncio.Task[Any],
    context: ActivityContext,
    limits: ActivityTimeouts,
    schedule_left: timedelta | None,
) -> str | None:
    """Wait for the attempt, or until one of its limits passes: which one, or None if the
    attempt ended first. The heartbeat limit moves with each ``activity.heartbeat()``."""
    while True:
        deadlines = {}
        if limits.start_to_close is not None:
            deadlines["start_to_close_timeout"] = context.started + limits.start_to_close
        if schedule_left is not None:
            deadlines["schedule_to_close_timeout"] = context.started + schedule_left.total_seconds()
        if limits.heartbeat is not None:
            deadlines["heartbeat_timeout"] = context.last_beat + limits.heartbeat
        passed, due = min(deadlines.items(), key=lambda item: item[1])
        wait = due - time.monotonic()
        if wait <= 0:
            return passed
        await asyncio.wait([attempt], timeout=wait)
        if attempt.done():
            return None


def _quietly(attempt: asyncio.Task[Any]) -> None:
    """A timed-out attempt that ended later: its outcome is discarded, unread."""
    if not attempt.cancelled():
        attempt.exception()


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


def _log_final_failure(task: ActivityTask, failure: Failure) -> None:
    """An activity failed for good: its error goes to its workflow, and to the log."""
    log.warning(
        "activity %r of %r failed for good on attempt %d: %s: %s%s",
        task.name,
        task.workflow_id,
        task.attempt,
        failure.type,
        failure.message,
        f"\n{failure.traceback}" if failure.traceback else "",
    )
