"""The workflows and activities the suite runs: as small as a step can be, so what is
measured is tapeflow (claims, commits, replay, wake-ups), not the work."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from tapeflow import activity, workflow


@activity.defn
async def step(value: int) -> int:
    """An activity that does nothing but hand its input back, on the worker's own loop."""
    return value + 1


@workflow.defn
async def one_step(value: int) -> int:
    """One activity, then the result."""
    return await workflow.execute_activity(step, value)


@workflow.defn
async def sequential(steps: int) -> int:
    """``steps`` activities, one after the other."""
    return await _chain(step, steps)


@workflow.defn
async def sleeper(milliseconds: int) -> float:
    """Sleep on a durable timer; return how late (ms) the workflow resumed after its due time.

    Both instants are workflow time, which a worker takes from the backend's clock when it
    claims the task: the timer is due at start + delay, and resumes when the claim that
    delivers it happens. Committing afterwards is not counted."""
    started = workflow.now()
    await workflow.sleep(timedelta(milliseconds=milliseconds))
    late = workflow.now() - started - timedelta(milliseconds=milliseconds)
    return late.total_seconds() * 1000


@activity.defn
def sync_step(value: int) -> int:
    """``step`` as a plain function: it runs in the worker's thread pool, as the peers'
    harness (``../shared/peer-bench``) runs its steps."""
    return value + 1


@workflow.defn
async def sync_sequential(steps: int) -> int:
    """``steps`` runs of ``sync_step``, one after the other."""
    return await _chain(sync_step, steps)


async def _chain(activity: Callable[[int], Any], steps: int) -> int:
    """``activity`` ``steps`` times, each on the last one's result, from 0."""
    value: int = 0
    for _ in range(steps):
        value = await workflow.execute_activity(activity, value)
    return value


WORKFLOWS = [one_step, sequential, sleeper, sync_sequential]
ACTIVITIES = [step, sync_step]
