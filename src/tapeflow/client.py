"""Starting workflows, sending them events, and waiting for their results."""

from __future__ import annotations

import asyncio
import copy
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, get_args, overload

from tapeflow._definition import call_of
from tapeflow._engine.updates import ENDED_FIRST
from tapeflow._listing import (
    Statuses,
    WorkflowPage,
    check_limit,
    decode_cursor,
    encode_cursor,
    run_filter,
    visibility,
)
from tapeflow._tracing import Tracing, check_tracing, tracing_for
from tapeflow._validate import (
    check_bool,
    check_choice,
    check_int,
    check_moment,
    check_name,
    check_reason,
    check_seconds,
    check_timedelta,
    check_timeout,
    fail,
)
from tapeflow._waiting import available, wait_until
from tapeflow.backends.base import (
    Backend,
    IdReuse,
    NewWorkflow,
    UpdateRecord,
    VarValue,
    WorkflowRecord,
    WorkflowStatus,
    imposed_on,
)
from tapeflow.backends.plan import plan_commit
from tapeflow.backends.queue_limits import declare
from tapeflow.backends.reset import plan_reset
from tapeflow.backends.schedules import DEFAULT_CATCHUP_WINDOW, Overlap, ScheduleSpec
from tapeflow.backends.wakeups import finished_topic, update_topic
from tapeflow.converter import from_json, to_json
from tapeflow.errors import (
    LeaseLost,
    UpdateFailed,
    WorkflowAlreadyCompleted,
    WorkflowCancelled,
    WorkflowFailed,
    WorkflowNotFound,
    WorkflowTerminated,
    WorkflowTimedOut,
)
from tapeflow.history import (
    EventReceived,
    Failure,
    HistoryEvent,
    UpdateCompleted,
    UpdateOutcome,
    UpdateRejected,
    UpdateRequested,
    WorkflowExecutionTerminated,
    encode_event,
)
from tapeflow.options import MAX_RETENTION
from tapeflow.queues import (
    DEFAULT_PRIORITY,
    DEFAULT_QUEUE,
    Queue,
    QueueLike,
    check_priority,
    queue_name,
)
from tapeflow.schedules import (
    ScheduleDescription,
    ScheduleHandle,
    create_schedule,
    list_schedules,
)

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

R = TypeVar("R")
log = logging.getLogger("tapeflow.client")

DELETE_BATCH = 100
"""Workflows deleted per transaction by ``delete_closed`` (and a worker's retention)."""

DELETE_TURN = 0.2
"""Seconds ``delete_closed`` waits for another process deleting to end its batch."""

HINT_AFTER = 3.0
"""Seconds ``result()`` waits before it logs why the workflow may not be running (once)."""

IdConflict = Literal["fail", "use_existing"]
"""What a start does when its id is taken (its latest run is unfinished, or ended and
``id_reuse`` does not allow a new one): raise WorkflowAlreadyExists, or return a handle on
that run."""


class WorkflowHandle(Generic[R]):
    """A started workflow, by id: it acts on the workflow's latest run. ``result()`` waits
    for it to end."""

    def __init__(
        self,
        backend: Backend,
        workflow_id: str,
        result_type: object = Any,
        run_id: str | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self._backend = backend
        self._tracing = tracing or Tracing()
        self.id = workflow_id
        self.run_id = run_id
        """The run this handle started (or found, with ``id_conflict="use_existing"``), if
        it came from ``start_workflow`` (``describe().run_id`` is the latest)."""
        self._result_type = result_type

    def __repr__(self) -> str:
        return f"WorkflowHandle({self.id!r})"

    async def describe(self) -> WorkflowRecord:
        """Status, times, result or failure, as stored now, and a ``hint`` if no worker
        seems to run it. Raises WorkflowNotFound."""
        return await self._backend.get_workflow(self.id)

    async def history(self, run_id: str | None = None) -> list[HistoryEvent]:
        """The committed history of the workflow's latest run (or of the run ``run_id``),
        in order, as typed events (``tapeflow.history``). Raises WorkflowNotFound."""
        run = None if run_id is None else check_name(run_id, "run_id")
        return await self._backend.load_history(self.id, run)

    async def result(self, *, timeout: timedelta | float | None = None) -> R:
        """Wait for the workflow to end and return its result (the annotated type).

        Raises WorkflowFailed if it failed, WorkflowNotFound at once for an unknown id, and
        TimeoutError if ``timeout`` passes first. Still waiting after ``HINT_AFTER`` seconds
        for a workflow no worker runs, it logs so (``tapeflow.client``, once).
        """
        seconds = None if timeout is None else check_seconds(timeout, "result timeout")
        waiting_since = time.monotonic()
        hint_at: float | None = waiting_since + HINT_AFTER  # None once logged
        deadline = None if seconds is None else waiting_since + seconds

        async def ended() -> WorkflowRecord | None:
            nonlocal hint_at
            record = await available(lambda: self._backend.get_workflow(self.id), deadline)
            if record is not None and record.status.finished:
                return record
            hint = None if record is None else record.hint
            if hint is not None and hint_at is not None and time.monotonic() >= hint_at:
                log.warning("workflow %r is waiting: %s", self.id, hint)
                hint_at = None
            return None

        def hint_due() -> float | None:  # look again when the hint is due
            return None if hint_at is None else hint_at - time.monotonic()

        record = await wait_until(
            self._backend,
            [finished_topic(self.id)],
            ended,  # WorkflowNotFound at once
            deadline,
            f"workflow {self.id!r} did not finish within {seconds}s",
            hint_due,
        )
        return self._outcome(record)

    async def execute_update(
        self,
        name: str,
        *args: Any,
        update_id: str | None = None,
        result_type: object = Any,
        timeout: timedelta | float | None = None,
    ) -> Any:
        """Ask the running workflow for the update ``name`` (its ``workflow.on_update``
        handler) with ``args``, and return the handler's result once it has run, decoded
        as ``result_type`` (as ``result()`` decodes the workflow's); the handler's
        annotations decode ``args``.

        Raises UpdateFailed if the update was rejected (by its validator, or for want of a
        handler of that name: nothing of it is recorded), if its handler raised, or if the
        workflow ended before it answered (``type`` ``"WorkflowAlreadyCompleted"``); the
        workflow goes on. Raises WorkflowNotFound, WorkflowAlreadyCompleted if the
        workflow has ended (nothing is sent), and TimeoutError if ``timeout`` passes first
        (the update goes on: ask again with its ``update_id`` for its answer).

        An ``update_id`` makes the update happen at most once: a call with one the workflow
        id has had (in any of its runs) sends nothing and returns that update's answer
        (the first call's arguments are the ones that counted). Without one, a new one is
        made (``start_update`` returns it)."""
        seconds = None if timeout is None else check_seconds(timeout, "update timeout")
        update_id = await self.start_update(name, *args, update_id=update_id)
        deadline = None if seconds is None else time.monotonic() + seconds

        async def read() -> UpdateRecord:
            found = await self._backend.get_update(self.id, update_id)
            if found is None:  # deleted since
                raise WorkflowNotFound(self.id)
            return found

        async def answered() -> UpdateOutcome | None:
            found = await available(read, deadline)
            if found is None:  # the backend is unavailable: look again
                return None
            if found.outcome is not None or not found.run_status.finished:
                return found.outcome
            ended = found.run_status.value.replace("_", " ")
            why = f"the workflow {ended} before it answered the update"
            return UpdateCompleted(update_id, name, failure=Failure(ENDED_FIRST, why))

        outcome: UpdateOutcome = await wait_until(
            self._backend,
            [update_topic(self.id), finished_topic(self.id)],
            answered,
            deadline,
            f"update {name!r} of workflow {self.id!r} had no answer within {seconds}s",
        )
        return self._answer(outcome, result_type)

    async def start_update(self, name: str, *args: Any, update_id: str | None = None) -> str:
        """Send the update as ``execute_update`` does, without waiting for its answer, and
        return its update id: ``execute_update`` with it waits for that answer."""
        name = check_name(name, "update name")
        request = UpdateRequested(
            update_id=check_name(
                str(uuid.uuid4()) if update_id is None else update_id, "update id"
            ),
            name=name,
            args=[to_json(a, what=f"argument {i} of update {name!r}") for i, a in enumerate(args)],
        )
        await self._backend.request_update(self.id, request)
        return request.update_id

    def _answer(self, outcome: UpdateOutcome, result_type: object) -> Any:
        """The handler's result, or its failure raised."""
        failure = outcome.failure
        if failure is None:
            assert isinstance(outcome, UpdateCompleted)
            return from_json(outcome.result, result_type, what=f"result of update {outcome.name!r}")
        raise UpdateFailed(
            self.id,
            outcome.update_id,
            outcome.name,
            failure.type,
            failure.message,
            rejected=isinstance(outcome, UpdateRejected),
            traceback=failure.traceback,
        )

    async def send_event(
        self, name: str, payload: Any = None, *, idempotency_key: str | None = None
    ) -> None:
        """As ``Client.send_event``."""
        await send_event(self._backend, self.id, name, payload, idempotency_key, self._tracing)

    async def cancel(self, reason: str = "") -> None:
        """Ask the workflow to cancel: recorded in its history once (a second call does
        nothing), it raises ``asyncio.CancelledError`` in the workflow at its current
        ``await``. The workflow may clean up (activities, timers and events still work) and
        end ``cancelled`` by letting the error out, or catch it and go on. Raises
        WorkflowNotFound, and WorkflowAlreadyCompleted if it has ended: a cancel is either
        recorded or refused, never lost."""
        await self._backend.request_cancel(self.id, check_reason(reason, "cancel reason"))

    async def terminate(self, reason: str = "") -> None:
        """End the workflow now, as ``terminated``: no workflow code runs, its pending
        activities are cancelled (a running attempt is told) and its timers dropped, and
        events still in its inbox are discarded. Raises WorkflowNotFound, and
        WorkflowAlreadyCompleted if it has ended."""
        ended = WorkflowExecutionTerminated(check_reason(reason, "terminate reason"))
        while True:
            record = await self._backend.get_workflow(self.id)
            if record.status.finished:
                raise WorkflowAlreadyCompleted(self.id, record.status)
            run = imposed_on(record)
            try:
                await self._backend.impose_ending(run, plan_commit([ended], (), run, run.parent))
                return
            except LeaseLost:  # a task committed meanwhile, or the run ended: look again
                continue

    async def reset(self, event: int, reason: str = "") -> WorkflowHandle[R]:
        """Start the workflow again from its latest run's first ``event`` events, on the
        code deployed now: how a failed workflow, or one whose task fails (non-determinism,
        a bug), is recovered once a fix is deployed. ``event`` must end a workflow task
        (see ``tapeflow.backends.reset`` for what the new run gets of what came after).

        The new run is the id's next (``describe().previous_run_id`` names the old one);
        its history begins with a copy of those events, then a ``WorkflowReset`` with the
        ``reason``. The old run, if still open, is terminated in the same transaction
        (``requested_by`` ``"reset"``). Returns a handle on the new run. Raises
        WorkflowNotFound, and InvalidArgument (nothing written) if ``event`` ends no task,
        naming the nearest that do."""
        reason = check_reason(reason, "reset reason")
        while True:
            record = await self._backend.get_workflow(self.id)
            history = await self._backend.load_history(self.id, record.run_id)
            plan = plan_reset(record, history, event, reason, datetime.now(UTC))
            try:
                await self._backend.reset_workflow(plan)
            except LeaseLost:  # a task committed meanwhile, or a run began: look again
                continue
            moved = copy.copy(self)  # of the same class, as the client made it
            moved.run_id = plan.run.run_id
            return moved

    async def delete(self) -> None:
        """Delete the workflow, closed: all its runs and all they own (history, inbox,
        tasks, event idempotency keys), for good. Raises WorkflowNotFound, and
        WorkflowStillOpen if its latest run has not ended (nothing is deleted)."""
        await self._backend.delete_workflow(self.id)

    def _outcome(self, record: WorkflowRecord) -> R:
        if record.failure is not None:
            failure = record.failure
            error = _FAILED_AS.get(record.status, WorkflowFailed)
            raise error(self.id, failure.type, failure.message, failure.traceback)
        value: R = from_json(record.result, self._result_type, what=f"result of {self.id!r}")
        return value


_FAILED_AS: dict[WorkflowStatus, type[WorkflowFailed]] = {
    WorkflowStatus.CANCELLED: WorkflowCancelled,
    WorkflowStatus.TERMINATED: WorkflowTerminated,
    WorkflowStatus.TIMED_OUT: WorkflowTimedOut,
}


class Client:
    def __init__(self, backend: Backend, *, tracing: bool | TracerProvider = True) -> None:
        """``tracing`` as ``WorkerOptions.tracing``: spans for starts and events sent, whose
        context the started workflows carry."""
        check_tracing(tracing, "Client tracing")
        self.backend = backend
        self._tracing = tracing_for(tracing)
        self._declared: dict[str, Queue] = {}
        """The queues this client declared, as it declared them: each is stored once."""

    @overload
    async def start_workflow(
        self,
        workflow: Callable[..., Awaitable[R]],
        *args: Any,
        id: str | None = None,
        version: str = "",
        start_at: datetime | None = None,
        execution_timeout: timedelta | None = None,
        id_conflict: IdConflict = "fail",
        id_reuse: IdReuse = "reject",
        start_event: tuple[str, Any] | None = None,
        queue: QueueLike = DEFAULT_QUEUE,
        priority: int = DEFAULT_PRIORITY,
    ) -> WorkflowHandle[R]: ...
    @overload
    async def start_workflow(
        self,
        workflow: str,
        *args: Any,
        id: str | None = None,
        version: str = "",
        start_at: datetime | None = None,
        execution_timeout: timedelta | None = None,
        id_conflict: IdConflict = "fail",
        id_reuse: IdReuse = "reject",
        start_event: tuple[str, Any] | None = None,
        queue: QueueLike = DEFAULT_QUEUE,
        priority: int = DEFAULT_PRIORITY,
    ) -> WorkflowHandle[Any]: ...
    async def start_workflow(
        self,
        workflow: Callable[..., Awaitable[Any]] | str,
        *args: Any,
        id: str | None = None,
        version: str = "",
        start_at: datetime | None = None,
        execution_timeout: timedelta | None = None,
        id_conflict: IdConflict = "fail",
        id_reuse: IdReuse = "reject",
        start_event: tuple[str, Any] | None = None,
        queue: QueueLike = DEFAULT_QUEUE,
        priority: int = DEFAULT_PRIORITY,
    ) -> WorkflowHandle[Any]:
        """Create a workflow (it runs once a worker that has registered it is up).

        ``workflow`` is a ``@workflow.defn`` function, whose annotations check ``args``, or a
        registered name, its arguments then taken as plain JSON. ``start_at`` (tz-aware)
        delays the start. ``execution_timeout``, measured on the database's clock from when
        it is due to start, ends it as ``timed_out`` (``result()`` raises WorkflowTimedOut)
        with no more of its code run.

        An id whose latest run has ended may start a new run if ``id_reuse`` allows:
        ``"reject"`` never, ``"allow"`` always, ``"allow_failed"`` unless it completed.
        Otherwise the id is taken, and ``id_conflict`` says what happens: ``"fail"`` raises
        WorkflowAlreadyExists, ``"use_existing"`` returns a handle on the id's latest run,
        open or closed (of many concurrent starts of one id, one creates it). So that an
        event sent right after a start cannot miss the run, ``start_event=(name, payload)``
        delivers it in the start's transaction, to the run created or found; a closed run
        found cannot take it (WorkflowAlreadyCompleted).

        It runs on ``queue`` (a ``tapeflow.Queue``, declared here if this client has not
        yet declared it so, or a queue's name), served only by workers that list it; in a
        queue with limits it waits ``pending`` for admission, by ``priority`` (1 to 10, 1
        first) and then by start time. Raises WorkflowAlreadyExists,
        WorkflowAlreadyCompleted, PayloadError, InvalidArgument; on any error nothing is
        written.
        """
        workflow_id = check_name(id if id is not None else str(uuid.uuid4()), "workflow id")
        check_name(version, "version", allow_empty=True)
        if start_at is not None:
            check_moment(start_at, "start_at")
        check_timeout(execution_timeout, "execution_timeout")
        conflict: IdConflict = check_choice(id_conflict, "id_conflict", get_args(IdConflict))
        reuse: IdReuse = check_choice(id_reuse, "id_reuse", get_args(IdReuse))
        events = () if start_event is None else (_start_event(start_event),)
        placement = queue_name(queue), check_priority(priority)
        call = call_of(workflow, "workflow", args)
        if isinstance(queue, Queue) and self._declared.get(queue.name) != queue:
            await declare(self.backend, [queue])
            self._declared[queue.name] = queue
        with self._tracing.start_workflow(call.name, workflow_id) as span:
            new = NewWorkflow(
                id=workflow_id,
                name=call.name,
                version=version,
                args=call.args,
                start_at=start_at,
                execution_timeout=execution_timeout,
                id_reuse=reuse,
                events=events,
                queue=placement[0],
                priority=placement[1],
                trace_context=span.carried,
            )
            existing = conflict == "use_existing"
            run_id = await self.backend.create_workflow(new, use_existing=existing)
            span.ended("started" if run_id == new.run_id else "found")
        return self._handle(workflow_id, call.result_hint, run_id)

    async def create_schedule(
        self,
        schedule_id: str,
        workflow: Callable[..., Awaitable[Any]] | str,
        *args: Any,
        cron: str | None = None,
        every: timedelta | None = None,
        timezone: str = "UTC",
        overlap: Overlap = "skip",
        catchup_window: timedelta = DEFAULT_CATCHUP_WINDOW,
        paused: bool = False,
    ) -> ScheduleHandle:
        """Store a schedule that starts ``workflow(*args)`` at every due time of ``cron`` (a
        cron expression read in ``timezone``, an IANA name) or of ``every`` (an interval,
        counted from the Unix epoch): the workers that run the workflow fire it, each due
        time once, with the workflow id ``"{schedule_id}@{due time in UTC, ISO 8601}"``.

        ``overlap`` says what a due time does while a run the schedule started is open:
        ``"skip"`` it (counted), ``"buffer_one"`` (keep one, started once no run is open),
        ``"allow_all"``, or ``"cancel_other"`` (ask the open runs to cancel, and start).
        Due times missed while no worker ran are started if within ``catchup_window``;
        older ones are skipped and counted (``describe()``). ``paused`` stores it paused.
        Raises ScheduleAlreadyExists, InvalidArgument (a bad cron expression or time zone,
        both or neither of ``cron`` and ``every``, an unknown ``overlap``), PayloadError; on
        any error nothing is written."""
        spec = ScheduleSpec(cron, every, timezone, overlap, catchup_window)
        return await create_schedule(self.backend, schedule_id, workflow, args, spec, paused)

    def get_schedule(self, schedule_id: str) -> ScheduleHandle:
        """A handle on a schedule (``await`` it to check that the schedule exists)."""
        return ScheduleHandle(self.backend, check_name(schedule_id, "schedule id"))

    async def list_schedules(self) -> list[ScheduleDescription]:
        """Every schedule, by id, as ``ScheduleHandle.describe`` gives it."""
        return await list_schedules(self.backend)

    @overload
    def get_handle(self, workflow_id: str) -> WorkflowHandle[Any]: ...
    @overload
    def get_handle(self, workflow_id: str, *, result_type: type[R]) -> WorkflowHandle[R]: ...
    def get_handle(self, workflow_id: str, *, result_type: object = Any) -> WorkflowHandle[Any]:
        """A handle on an existing workflow; ``result_type`` decodes its result."""
        return self._handle(check_name(workflow_id, "workflow id"), result_type)

    def _handle(
        self, workflow_id: str, result_type: object, run_id: str | None = None
    ) -> WorkflowHandle[Any]:
        """Every handle this client gives out is made here: a test environment's client
        makes handles whose waits move its virtual clock (``tapeflow.testing``)."""
        return WorkflowHandle(self.backend, workflow_id, result_type, run_id, self._tracing)

    async def send_event(
        self,
        workflow_id: str,
        name: str,
        payload: Any = None,
        *,
        idempotency_key: str | None = None,
    ) -> None:
        """Deliver an external event to the workflow's latest run. A send retried with the
        same ``idempotency_key`` (after a timeout, say) delivers at most once: a key the
        workflow id has had (in any of its runs) delivers nothing and returns. Raises
        WorkflowNotFound, WorkflowAlreadyCompleted."""
        await send_event(self.backend, workflow_id, name, payload, idempotency_key, self._tracing)

    async def describe(self, workflow_id: str) -> WorkflowRecord:
        """As ``WorkflowHandle.describe``: the workflow's latest run as stored now."""
        return await self.backend.get_workflow(check_name(workflow_id, "workflow id"))

    async def delete_closed(self, older_than: timedelta, *, batch: int = DELETE_BATCH) -> int:
        """Delete every workflow whose latest run ended more than ``older_than`` ago (by
        the backend's clock), as ``WorkflowHandle.delete`` does, ``batch`` per transaction
        so that no write waits long behind it; returns how many. Waits its turn while
        another process (a worker's ``retention``) is doing it."""
        check_timedelta(older_than, "older_than", maximum=MAX_RETENTION)
        check_int(batch, "batch", minimum=1)
        deleted = 0
        while True:
            done = await self.backend.delete_closed(older_than, batch)
            if done is None:  # another is at it: take turns
                await asyncio.sleep(DELETE_TURN)
                continue
            deleted += done
            if done < batch:
                return deleted

    async def list_workflows(
        self,
        *,
        status: Statuses = None,
        name: str | None = None,
        id_prefix: str | None = None,
        started_after: datetime | None = None,
        started_before: datetime | None = None,
        vars: Mapping[str, VarValue] | None = None,
        all_runs: bool = False,
        limit: int = 100,
        cursor: str | None = None,
    ) -> WorkflowPage:
        """A page of up to ``limit`` workflows (at most 1000), newest first, each the
        latest run of its id (every run with ``all_runs``), that match all the filters
        given: ``status`` (one, or several), workflow ``name``, ``id_prefix``, created
        at or after ``started_after`` and before ``started_before``, and ``vars``
        (variables set with ``workflow.set_var`` equal to these JSON scalars). Pass a
        page's ``next_cursor`` as ``cursor`` for the next page: paging neither repeats
        nor skips a workflow while others start. Raises InvalidArgument."""
        where = run_filter(status, name, id_prefix, started_after, started_before, vars, all_runs)
        size = check_limit(limit)
        after = None if cursor is None else decode_cursor(cursor)
        found = await visibility(self.backend).list_runs(where, size + 1, after)
        more = len(found) > size
        page = found[:size]
        return WorkflowPage(page, encode_cursor(page[-1]) if more else None)

    @overload
    async def count_workflows(
        self,
        *,
        status: Statuses = None,
        name: str | None = None,
        id_prefix: str | None = None,
        started_after: datetime | None = None,
        started_before: datetime | None = None,
        vars: Mapping[str, VarValue] | None = None,
        all_runs: bool = False,
        group_by_status: Literal[False] = False,
    ) -> int: ...
    @overload
    async def count_workflows(
        self,
        *,
        status: Statuses = None,
        name: str | None = None,
        id_prefix: str | None = None,
        started_after: datetime | None = None,
        started_before: datetime | None = None,
        vars: Mapping[str, VarValue] | None = None,
        all_runs: bool = False,
        group_by_status: Literal[True],
    ) -> dict[WorkflowStatus, int]: ...
    async def count_workflows(
        self,
        *,
        status: Statuses = None,
        name: str | None = None,
        id_prefix: str | None = None,
        started_after: datetime | None = None,
        started_before: datetime | None = None,
        vars: Mapping[str, VarValue] | None = None,
        all_runs: bool = False,
        group_by_status: bool = False,
    ) -> int | dict[WorkflowStatus, int]:
        """How many workflows ``list_workflows`` with these filters would give in all;
        with ``group_by_status``, by status (statuses with none left out). Raises
        InvalidArgument."""
        where = run_filter(status, name, id_prefix, started_after, started_before, vars, all_runs)
        grouped = check_bool(group_by_status, "group_by_status")
        counts = await visibility(self.backend).count_runs(where)
        return counts if grouped else sum(counts.values())


async def send_event(
    backend: Backend,
    workflow_id: str,
    name: str,
    payload: Any,
    idempotency_key: str | None,
    tracing: Tracing,
) -> None:
    workflow_id, name = check_name(workflow_id, "workflow id"), check_name(name, "event name")
    with tracing.send_event(name, workflow_id):
        await backend.send_event(
            workflow_id,
            name,
            to_json(payload, what=f"payload of event {name!r}"),
            idempotency_key=None
            if idempotency_key is None
            else check_name(idempotency_key, "idempotency key"),
        )


def _start_event(start_event: object) -> str:
    """A ``start_event=(name, payload)``, checked and encoded as its inbox event."""
    if not isinstance(start_event, tuple) or len(start_event) != 2:
        fail("start_event", start_event, "a (name, payload) tuple")
    name, payload = start_event
    name = check_name(name, "start_event name")
    return encode_event(
        EventReceived(name=name, payload=to_json(payload, what=f"payload of event {name!r}"))
    )
