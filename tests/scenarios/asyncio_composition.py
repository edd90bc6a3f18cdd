"""Plain asyncio inside workflows: wait, TaskGroup, Event, Queue, timeout and sleep behave
as usual, deterministically, with every wait on time a durable timer."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import tapeflow
from tapeflow import activity, workflow

HOUR = timedelta(hours=1)


@activity.defn
def echo(text: str) -> str:
    return text


@activity.defn
def triple(n: int) -> int:
    return 3 * n


@activity.defn
def refuse(reason: str) -> None:
    raise tapeflow.NonRetryableError(reason, type="Refused")


@workflow.defn
async def first_completed() -> list[str]:
    """Two races with ``asyncio.wait(FIRST_COMPLETED)``: an activity against an hour-long
    timer, then an event that never comes against a short ``asyncio.sleep``."""
    winners: list[str] = []

    act = workflow.execute_activity(echo, "activity")
    hour: asyncio.Future[Any] = asyncio.ensure_future(workflow.sleep(HOUR))
    done, pending = await asyncio.wait({act, hour}, return_when=asyncio.FIRST_COMPLETED)
    winners.append(act.result() if act in done else "hour")
    for loser in pending:
        loser.cancel()

    event: asyncio.Future[Any] = asyncio.ensure_future(workflow.wait_event("never"))
    short: asyncio.Future[Any] = asyncio.ensure_future(asyncio.sleep(0.1))
    done, pending = await asyncio.wait({event, short}, return_when=asyncio.FIRST_COMPLETED)
    winners.append("event" if event in done else "short timer")
    for loser in pending:
        loser.cancel()
    return winners


@dataclass(frozen=True)
class PipelineResult:
    items: list[int]
    counted_by_watcher: int


@workflow.defn
async def pipeline(count: int) -> PipelineResult:
    """Three tasks in a TaskGroup: a producer feeds activity results through a Queue to a
    consumer, which sets an Event that a watcher waits for."""
    queue: asyncio.Queue[int | None] = asyncio.Queue()
    consumed = asyncio.Event()
    items: list[int] = []

    async def produce() -> None:
        for i in range(count):
            await queue.put(await workflow.execute_activity(triple, i))
        await queue.put(None)

    async def consume() -> None:
        while (item := await queue.get()) is not None:
            items.append(item)
        consumed.set()

    async def watch() -> int:
        await consumed.wait()
        return len(items)

    async with asyncio.TaskGroup() as group:
        group.create_task(produce())
        group.create_task(consume())
        watcher = group.create_task(watch())
    return PipelineResult(items=items, counted_by_watcher=watcher.result())


@workflow.defn
async def task_group_failure() -> str:
    """A failing child cancels its sibling (an hour-long timer) and surfaces in an
    ExceptionGroup."""

    async def refused() -> None:
        await workflow.execute_activity(refuse, "no thanks")

    outcome = "not refused"
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(workflow.sleep(HOUR))
            group.create_task(refused())
    except* tapeflow.ActivityError as caught:
        outcome = "; ".join(f"{e}" for e in caught.exceptions)
    return outcome


@dataclass(frozen=True)
class TimeoutReport:
    first: str
    ping: str


@workflow.defn
async def timeouts() -> TimeoutReport:
    """``asyncio.timeout`` around ``wait_event``: once expiring, once not. The "ping" that
    comes after the first wait gave up is kept for the second."""
    try:
        async with asyncio.timeout(0.2):
            await workflow.wait_event("ping")
        first = "ping came"
    except TimeoutError:
        first = "timed out"
    async with asyncio.timeout(HOUR.total_seconds()):
        ping: str = await workflow.wait_event("ping", type=str)
    return TimeoutReport(first=first, ping=ping)


@dataclass(frozen=True)
class ClockReport:
    workflow_id: str
    name: str
    version: str
    started_at: datetime
    is_replaying: bool
    times: list[datetime]
    """``workflow.now()`` at the start, after ``asyncio.sleep(0.2)``, after a 0.1 s
    ``workflow.sleep``."""
    loop_time: float
    """``asyncio``'s loop time at the end: the workflow's time too."""


@workflow.defn
async def clock_and_info() -> ClockReport:
    workflow.set_var("replaying_at_start", workflow.is_replaying())
    times = [workflow.now()]
    await asyncio.sleep(0.2)
    times.append(workflow.now())
    await workflow.sleep(timedelta(milliseconds=100))
    times.append(workflow.now())
    info = workflow.info()  # read in the workflow's last activation: live, not replayed
    return ClockReport(
        workflow_id=info.workflow_id,
        name=info.name,
        version=info.version,
        started_at=info.started_at,
        is_replaying=info.is_replaying,
        times=times,
        loop_time=asyncio.get_running_loop().time(),
    )
