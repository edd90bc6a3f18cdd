"""Property: every event that ``send_event`` accepted is in the workflow's history exactly
once, in the order sent, whatever it is interleaved with: workflow tasks that wait, schedule
an activity or end the workflow; activity outcomes recorded alone, resumed or run ahead to
the workflow's end; workers killed holding a lease and replaced by new ones. Refused sends
happen only once the workflow has ended.

Hypothesis draws the interleavings; each example drives one workflow through the backend's
own protocol, as workers would, so every ordering of these writes is reachable."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tapeflow
from tapeflow.backends.base import NewWorkflow, RunAhead, Take, WorkflowTask
from tapeflow.backends.plan import plan_commit
from tapeflow.errors import LeaseLost, UnseenEvents
from tapeflow.history import (
    ActivityCompleted,
    ActivityScheduled,
    EventReceived,
    HistoryEvent,
    WorkflowExecutionCompleted,
    WorkflowTaskStarted,
)
from tests.conformance.plugin import capability

LEASE = timedelta(milliseconds=150)
WORKERS = ("a", "b")

Op = tuple[str, int, str]
"""(what, which worker slot, how): see ``_play``."""

OPS: st.SearchStrategy[Op] = st.sampled_from(
    [
        *[("send", 0, "")] * 4,  # the racing writer, drawn most often
        *[("claim", slot, "") for slot in (0, 1)],
        *[("commit", slot, how) for slot in (0, 1) for how in ("wait", "end", "schedule")],
        *[("activity", slot, how) for slot in (0, 1) for how in ("alone", "resume", "end")],
        *[("kill", slot, "") for slot in (0, 1)],
    ]
)


@dataclass
class _Run:
    backend: tapeflow.Backend
    workflow_id: str = field(default_factory=lambda: f"prop-{uuid.uuid4().hex[:12]}")
    owners: list[str] = field(default_factory=lambda: [f"{w}-0" for w in WORKERS])
    held: list[WorkflowTask | None] = field(default_factory=lambda: [None, None])
    accepted: list[int] = field(default_factory=list)
    sent: int = 0
    seq: int = 0

    async def send(self) -> None:
        self.sent += 1
        try:
            await self.backend.send_event(self.workflow_id, "e", self.sent)
        except tapeflow.WorkflowAlreadyCompleted:
            record = await self.backend.get_workflow(self.workflow_id)
            assert record.status.finished, "a send was refused while the workflow ran"
        else:
            self.accepted.append(self.sent)

    async def claim(self, slot: int) -> None:
        if self.held[slot] is None:
            found = await self.backend.claim_workflow_tasks(["prop"], self.owners[slot], LEASE, 1)
            self.held[slot] = found[0] if found else None

    async def commit(self, slot: int, how: str) -> None:
        task, self.held[slot] = self.held[slot], None
        if task is None:
            return
        decisions: list[HistoryEvent] = []
        if how == "end":
            decisions.append(WorkflowExecutionCompleted(result=None))
        elif how == "schedule":
            self.seq += 1
            decisions.append(ActivityScheduled(seq=self.seq, name="noop", args=[]))
        events = [WorkflowTaskStarted(at=task.claimed_at), *(i.event for i in task.inbox)]
        try:
            plan = plan_commit([*events, *decisions], [i.id for i in task.inbox])
            await self.backend.commit_workflow_task(task, plan)
        except (LeaseLost, UnseenEvents):  # refused: given back, as a worker does
            with contextlib.suppress(LeaseLost):
                await self.backend.abandon_workflow_task(task, None, timedelta(0))

    async def activity(self, slot: int, how: str) -> None:
        owner = self.owners[slot]
        found = await self.backend.claim_activity_tasks(["noop"], owner, LEASE, 1)
        if not found:
            return
        [attempt] = found
        outcome = ActivityCompleted(seq=attempt.seq, result=None, attempt=attempt.attempt)
        resume = Take(owner=owner, lease=LEASE) if self.held[slot] is None else None
        try:
            if how == "end" and resume is not None:
                length = (await self.backend.get_workflow(self.workflow_id)).history_length
                ahead: list[HistoryEvent] = [
                    WorkflowTaskStarted(at=datetime.now(UTC)),
                    outcome,
                    WorkflowExecutionCompleted(result=None),
                ]
                done = await capability(self.backend).complete_and_continue(
                    attempt, outcome, resume, RunAhead(length, plan_commit(ahead))
                )
                self.held[slot] = done.resumed
            elif how == "resume" and resume is not None:
                done = await capability(self.backend).complete_and_continue(
                    attempt, outcome, resume
                )
                if done.resumed is not None:
                    self.held[slot] = done.resumed
            else:
                await self.backend.complete_activity_task(attempt, outcome)
        except LeaseLost:
            pass

    async def kill(self, slot: int) -> None:
        """The worker dies holding its lease; a new one (a new owner) takes its place."""
        if self.held[slot] is not None:
            self.held[slot] = None
            await asyncio.sleep(LEASE.total_seconds())
        generation = int(self.owners[slot].rpartition("-")[2]) + 1
        self.owners[slot] = f"{WORKERS[slot]}-{generation}"

    async def finish(self) -> list[HistoryEvent]:
        """Let the workers end the workflow, then return its history. One more event
        first, so that a workflow task is due (as the event a workflow waits for)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        self.held = [None, None]
        await self.send()
        while not (await self.backend.get_workflow(self.workflow_id)).status.finished:
            assert loop.time() < deadline, "the workflow could not be ended"
            for slot in (0, 1):
                await self.claim(slot)
                await self.commit(slot, "end")
            await asyncio.sleep(0.02)
        return await self.backend.load_history(self.workflow_id)


async def _play(backend: tapeflow.Backend, ops: list[Op]) -> None:
    run = _Run(backend)
    await backend.create_workflow(
        NewWorkflow(id=run.workflow_id, name="prop", version="", args=[], start_at=None)
    )
    for what, slot, how in ops:
        match what:
            case "send":
                await run.send()
            case "claim":
                await run.claim(slot)
            case "commit":
                await run.commit(slot, how)
            case "activity":
                await run.activity(slot, how)
            case "kill":
                await run.kill(slot)
    events = await run.finish()
    received = [e.payload for e in events if isinstance(e, EventReceived)]
    assert received == run.accepted, "accepted events missing, repeated or out of order"
    endings = [i for i, e in enumerate(events) if isinstance(e, WorkflowExecutionCompleted)]
    assert endings == [len(events) - 1], "history goes on after the workflow ended"


def test_every_accepted_event_is_in_history_exactly_once(backend_url: str) -> None:
    with asyncio.Runner() as runner:
        backend = runner.run(_open(backend_url))
        try:

            @settings(
                max_examples=60,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            )
            @given(st.lists(OPS, max_size=24))
            def interleaving(ops: list[Op]) -> None:
                runner.run(_play(backend, ops))

            interleaving()
        finally:
            runner.run(backend.close())


async def _open(url: str) -> tapeflow.Backend:
    return await tapeflow.connect(url)
