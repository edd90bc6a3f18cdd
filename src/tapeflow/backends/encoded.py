"""A backend whose stored payloads go through a codec: ``connect(url, codec=...)``.

One wrapper around any backend, so both backends (and a third) encode the same way, and
every program that opens through ``connect`` (workers, clients, the CLI, the UI) reads
what the others wrote. What is written is encoded on its way in (a commit plan's events
and rows, a start's arguments, an event's payload, an activity's outcome, heartbeats,
schedules' arguments); what is read is decoded on its way out, so the engine, the client
and the debugger only ever see plain values. Payloads that are not envelopes (written
before the codec) read as themselves. Which fields are payloads: ``_envelopes``.

A describe shows what it cannot decode as the envelope it is (the converter refuses
to hand such a value to code: ``from_json``). A payload that cannot be decoded (its key is
not configured) never fails a workflow: a
workflow task whose inbox cannot be decoded is given back with the error shown
(``describe().task_error``) and retried with backoff, as is one whose history cannot
(the worker's handling of a ``CodecError``, which is no ``PayloadError``), and an activity
task is put back for a later attempt. Once the key is given, they run.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from tapeflow.backends._envelopes import Envelopes
from tapeflow.backends.base import (
    ActivityTask,
    Backend,
    Continued,
    InboxEvent,
    LeaseRef,
    NewWorkflow,
    Reclaimed,
    RunAhead,
    Take,
    UpdateRecord,
    WorkflowRecord,
    WorkflowTask,
    hand_offs,
)
from tapeflow.backends.plan import CommitPlan, Ending, NewInboxEvent, Receipt
from tapeflow.backends.reset import ResetPlan
from tapeflow.backends.schedules import (
    Decide,
    Fired,
    ScheduleRecord,
    Schedules,
    ScheduleState,
    ScheduleWrite,
    StoredSchedule,
)
from tapeflow.codec import PayloadCodec
from tapeflow.errors import CodecError, LeaseLost
from tapeflow.history import (
    ActivityCompleted,
    ActivityFailed,
    Failure,
    HistoryEvent,
    JSONValue,
    UpdateRequested,
)
from tapeflow.options import RetryPolicy

log = logging.getLogger("tapeflow.codec")

UNDECODABLE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
)
"""Backoff for a task whose stored payloads cannot be decoded yet (a failing workflow
task's): it waits for the key, at most a minute between tries."""


class EncodedBackend:
    """``backend`` with its payloads encoded by ``envelopes``; every other call passes
    through. It has the hand-off and schedule capabilities exactly when ``backend`` has
    them (``encoded``)."""

    def __init__(self, backend: Backend, envelopes: Envelopes) -> None:
        self._backend = backend
        self._envelopes = envelopes

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    async def __aenter__(self) -> EncodedBackend:
        await self._backend.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._backend.close()

    @property
    def wakes_other_processes(self) -> bool:
        return self._backend.wakes_other_processes

    # -- writes ----------------------------------------------------------------------------

    async def create_workflow(self, new: NewWorkflow, *, use_existing: bool = False) -> str:
        return await self._backend.create_workflow(self._new(new), use_existing=use_existing)

    async def send_event(
        self,
        workflow_id: str,
        name: str,
        payload: JSONValue,
        *,
        idempotency_key: str | None = None,
    ) -> None:
        encoded = self._envelopes.encode(payload)
        await self._backend.send_event(workflow_id, name, encoded, idempotency_key=idempotency_key)

    async def request_update(self, workflow_id: str, request: UpdateRequested) -> None:
        await self._backend.request_update(workflow_id, self._envelopes.encode_event(request))

    async def impose_ending(self, task: WorkflowTask, plan: CommitPlan) -> None:
        await self._backend.impose_ending(task, self._plan(plan))

    async def reset_workflow(self, plan: ResetPlan) -> None:
        ending = None if plan.ending is None else self._plan(plan.ending)
        encoded = replace(plan, run=self._new(plan.run), rows=self._plan(plan.rows), ending=ending)
        await self._backend.reset_workflow(encoded)

    async def commit_workflow_task(self, task: WorkflowTask, plan: CommitPlan) -> None:
        await self._backend.commit_workflow_task(task, self._plan(plan))

    async def complete_activity_task(
        self, task: ActivityTask, outcome: ActivityCompleted | ActivityFailed
    ) -> None:
        await self._backend.complete_activity_task(task, self._envelopes.encode_event(outcome))

    async def retry_activity_task(
        self,
        task: ActivityTask,
        failure: Failure,
        delay: timedelta,
        heartbeat_details: JSONValue = None,
    ) -> None:
        details = None if heartbeat_details is None else self._envelopes.encode(heartbeat_details)
        encoded = self._envelopes.encode_failure(failure)
        assert encoded is not None
        await self._backend.retry_activity_task(task, encoded, delay, details)

    async def extend_leases(
        self,
        leases: Sequence[LeaseRef],
        lease: timedelta,
        heartbeats: Mapping[str, JSONValue] | None = None,
    ) -> list[LeaseRef]:
        encoded = None
        if heartbeats is not None:
            encoded = {key: self._envelopes.encode(value) for key, value in heartbeats.items()}
        return await self._backend.extend_leases(leases, lease, encoded)

    # -- reads -----------------------------------------------------------------------------

    async def get_workflow(self, workflow_id: str, run_id: str | None = None) -> WorkflowRecord:
        return self._record(await self._backend.get_workflow(workflow_id, run_id))

    async def load_history(self, workflow_id: str, run_id: str | None = None) -> list[HistoryEvent]:
        events = await self._backend.load_history(workflow_id, run_id)
        try:
            return [self._envelopes.decode_event(event) for event in events]
        except CodecError as exc:
            raise CodecError(f"the history of {workflow_id!r} cannot be decoded: {exc}") from None

    async def get_update(self, workflow_id: str, update_id: str) -> UpdateRecord | None:
        found = await self._backend.get_update(workflow_id, update_id)
        if found is None or found.outcome is None:
            return found
        return replace(found, outcome=self._envelopes.decode_event(found.outcome))

    async def claim_workflow_tasks(self, *args: Any, **kwargs: Any) -> list[WorkflowTask]:
        return await self._readable(await self._backend.claim_workflow_tasks(*args, **kwargs))

    async def claim_activity_tasks(self, *args: Any, **kwargs: Any) -> list[ActivityTask]:
        return await self._runnable(await self._backend.claim_activity_tasks(*args, **kwargs))

    # -- the conversions -------------------------------------------------------------------

    def _new(self, new: NewWorkflow) -> NewWorkflow:
        text = self._envelopes.encode_event_text
        return replace(
            new,
            args=self._envelopes.encode_each(new.args),
            events=tuple(text(event) for event in new.events),
            receipt=None if new.receipt is None else (text(new.receipt[0]), text(new.receipt[1])),
        )

    def _plan(self, plan: CommitPlan) -> CommitPlan:
        """``plan`` with every payload of its rows encoded; its variables stay clear (lists
        filter by them in SQL), and so does all that a backend reads (kinds, seqs, times)."""
        on = self._envelopes
        ending = plan.ending
        return replace(
            plan,
            history=tuple(on.encode_event_text(event) for event in plan.history),
            inbox=tuple(self._inbox_row(row) for row in plan.inbox),
            activities=tuple(replace(a, args=on.encode_each_text(a.args)) for a in plan.activities),
            workflows=tuple(self._new(new) for new in plan.workflows),
            ending=None if ending is None else self._ending(ending),
            updates=tuple(
                replace(u, outcome=on.encode_outcome_text(u.outcome)) for u in plan.updates
            ),
        )

    def _inbox_row(self, row: NewInboxEvent) -> NewInboxEvent:
        text = self._envelopes.encode_event_text
        receipt = row.receipt
        if receipt is not None:
            receipt = Receipt(text(receipt.delivered), text(receipt.missing), text(receipt.closed))
        return replace(row, event=text(row.event), receipt=receipt)

    def _ending(self, ending: Ending) -> Ending:
        on = self._envelopes
        return replace(
            ending,
            result=on.encode_text(ending.result),
            failure=on.encode_failure_text(ending.failure),
        )

    def _record(self, record: WorkflowRecord) -> WorkflowRecord:
        """A describe: what cannot be decoded is shown encoded, so that an operator still
        sees the run, and why its task fails, before the key is configured."""
        on = self._envelopes
        return replace(
            record,
            args=[on.decode_or_keep(arg) for arg in record.args],
            result=on.decode_or_keep(record.result),
            failure=on.decode_failure_or_keep(record.failure),
        )

    def _task(self, task: WorkflowTask) -> WorkflowTask:
        inbox = [InboxEvent(i.id, self._envelopes.decode_event(i.event)) for i in task.inbox]
        return replace(task, inbox=inbox)

    def _activity(self, task: ActivityTask) -> ActivityTask:
        on = self._envelopes
        return replace(
            task,
            args=on.decode_each(task.args),
            heartbeat_details=on.decode(task.heartbeat_details),
        )

    async def _readable(self, tasks: Iterable[WorkflowTask]) -> list[WorkflowTask]:
        """The claimed tasks decoded, but those that cannot be (``_decoded``)."""
        return [found for task in tasks if (found := await self._decoded(task)) is not None]

    async def _decoded(self, task: WorkflowTask) -> WorkflowTask | None:
        """``task`` with its inbox decoded; None if that cannot be done: then the task is
        given back, to be tried again later, its error shown."""
        try:
            return self._task(task)
        except CodecError as exc:
            error = f"CodecError: the inbox of {task.workflow_id!r} cannot be decoded: {exc}"
            delay = UNDECODABLE_RETRY.delay_after(task.failures + 1)
            log.error("%s (retry in %.0fs)", error, delay.total_seconds())
            with contextlib.suppress(LeaseLost):  # taken over meanwhile: its new holder tries
                await self._backend.abandon_workflow_task(task, error, delay)
            return None

    async def _runnable(self, tasks: Iterable[ActivityTask]) -> list[ActivityTask]:
        """The claimed activity tasks decoded; one that cannot be is put back for a later
        attempt (its error recorded as the attempt's), and not returned."""
        runnable = []
        for task in tasks:
            try:
                runnable.append(self._activity(task))
            except CodecError as exc:
                message = f"the arguments of activity task {task.id} cannot be decoded: {exc}"
                delay = UNDECODABLE_RETRY.delay_after(task.attempt)
                log.error("%s (retry in %.0fs)", message, delay.total_seconds())
                await self._backend.retry_activity_task(
                    task, Failure(CodecError.__name__, message), delay
                )
        return runnable


class _EncodedHandOffs(EncodedBackend):
    """The hand-off capability, encoded as the core is."""

    async def commit_and_take(
        self, task: WorkflowTask, plan: CommitPlan, take: Take
    ) -> list[ActivityTask]:
        capability = hand_offs(self._backend)
        assert capability is not None
        taken = await capability.commit_and_take(task, self._plan(plan), take)
        return [self._activity(activity) for activity in taken]

    async def complete_and_continue(
        self,
        task: ActivityTask,
        outcome: ActivityCompleted | ActivityFailed,
        take: Take,
        ahead: RunAhead | None = None,
    ) -> Continued:
        capability = hand_offs(self._backend)
        assert capability is not None
        if ahead is not None:
            ahead = replace(ahead, plan=self._plan(ahead.plan))
        outcome = self._envelopes.encode_event(outcome)
        done = await capability.complete_and_continue(task, outcome, take, ahead)
        resumed = None if done.resumed is None else await self._decoded(done.resumed)
        activities = [self._activity(activity) for activity in done.activities]
        return replace(done, activities=activities, resumed=resumed)

    async def reclaim(self, run_id: str, take: Take) -> Reclaimed:
        capability = hand_offs(self._backend)
        assert capability is not None
        found = await capability.reclaim(run_id, take)
        task = found.workflow_task
        return Reclaimed(
            None if task is None else await self._decoded(task),
            [self._activity(activity) for activity in found.activities],
        )


class _EncodedSchedules(EncodedBackend):
    """The schedules capability: a schedule's arguments are a start's, encoded alike."""

    @property
    def _schedules(self) -> Schedules:
        assert isinstance(self._backend, Schedules)
        return self._backend

    async def create_schedule(self, make: Callable[[datetime], StoredSchedule]) -> StoredSchedule:
        made = await self._schedules.create_schedule(lambda now: self._stored(make(now)))
        return self._read(made)

    async def change_schedule(self, schedule_id: str, decide: Decide) -> list[str] | None:
        return await self._schedules.change_schedule(schedule_id, self._decide(decide))

    async def fire_schedules(self, schedule_ids: Sequence[str], decide: Decide) -> Fired:
        return await self._schedules.fire_schedules(schedule_ids, self._decide(decide))

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord:
        found = await self._schedules.get_schedule(schedule_id)
        return replace(found, schedule=self._read(found.schedule))

    async def list_schedules(self) -> list[ScheduleRecord]:
        found = await self._schedules.list_schedules()
        return [replace(record, schedule=self._read(record.schedule)) for record in found]

    def _stored(self, schedule: StoredSchedule) -> StoredSchedule:
        return replace(schedule, args=self._envelopes.encode_each(schedule.args))

    def _read(self, schedule: StoredSchedule) -> StoredSchedule:
        """Arguments it cannot decode are kept encoded: a start made of them is still
        decodable where the key is (``Envelopes.encode`` passes an envelope on)."""
        return replace(schedule, args=[self._envelopes.decode_or_keep(a) for a in schedule.args])

    def _decide(self, decide: Decide) -> Decide:
        """``decide`` seeing the schedule decoded, its write encoded."""

        def decided(state: ScheduleState) -> ScheduleWrite | None:
            write = decide(replace(state, schedule=self._read(state.schedule)))
            if write is None:
                return None
            starts = tuple(replace(s, workflow=self._new(s.workflow)) for s in write.starts)
            return replace(write, schedule=self._stored(write.schedule), starts=starts)

        return decided


@functools.cache
def _wrapper_class(with_hand_offs: bool, with_schedules: bool) -> type[EncodedBackend]:
    bases = [
        base
        for base, wanted in (
            (_EncodedHandOffs, with_hand_offs),
            (_EncodedSchedules, with_schedules),
        )
        if wanted
    ]
    if not bases:
        return EncodedBackend
    return type("EncodedBackend", tuple(bases), {"__doc__": EncodedBackend.__doc__})


def encoded(backend: Backend, codecs: Sequence[PayloadCodec]) -> Backend:
    """``backend`` with its payloads encoded by ``codecs`` in order (``[]``: as it is)."""
    if not codecs:
        return backend
    wrapper = _wrapper_class(hand_offs(backend) is not None, isinstance(backend, Schedules))
    made: Backend = wrapper(backend, Envelopes(codecs))
    return made
