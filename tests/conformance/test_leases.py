"""Claims are leases: a dead worker's task is taken over, a live worker's never is,
and a worker whose lease is gone cannot write its late result."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import tapeflow
from tapeflow.backends.base import LeaseRef, TaskKind, WorkflowTask
from tapeflow.backends.plan import plan_commit
from tapeflow.history import (
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    Failure,
    HistoryEvent,
    WorkflowTaskStarted,
)
from tests.conformance.lease_workflows import run_slow_step, slow_step
from tests.conftest import WorkerFactory

ROOT = Path(__file__).resolve().parents[2]


async def _wait_for(predicate: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_worker_killed_mid_activity_is_taken_over_after_lease_expiry(
    backend_url: str, client: tapeflow.Client, worker: WorkerFactory, tmp_path: Path
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    handle = await client.start_workflow(run_slow_step, str(markers), 1.0, id="killed-mid-step")
    lease = 1.5
    doomed = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.conformance.lease_workflows", backend_url, str(lease), cwd=ROOT
    )
    try:
        await _wait_for(lambda: any(markers.iterdir()))
        doomed.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        await asyncio.wait_for(doomed.wait(), 10)
    finally:
        if doomed.returncode is None:
            doomed.kill()
    first = next(markers.iterdir()).name
    assert first == f"attempt-1-pid-{doomed.pid}"

    async with worker(
        workflows=[run_slow_step],
        activities=[slow_step],
        lease_duration=timedelta(seconds=lease),
    ):
        assert await handle.result(timeout=30) == 2
        taken_over_after = time.monotonic() - killed_at
    names = sorted(p.name for p in markers.iterdir())
    assert names == [first, f"attempt-2-pid-{os.getpid()}"]
    assert taken_over_after >= lease * 0.9  # not before the dead worker's lease ran out
    history = await client.backend.load_history(handle.id)
    completions = [e for e in history if isinstance(e, ActivityCompleted | ActivityFailed)]
    assert [(c.seq, c.attempt) for c in completions] == [(1, 2)]


async def test_live_worker_keeps_the_lease_of_a_long_activity(
    client: tapeflow.Client, worker: WorkerFactory, tmp_path: Path
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    async with worker(
        workflows=[run_slow_step],
        activities=[slow_step],
        lease_duration=timedelta(milliseconds=600),
    ):
        handle = await client.start_workflow(run_slow_step, str(markers), 2.0, id="long-step")
        assert await handle.result(timeout=30) == 1  # one attempt: never taken over
    assert [p.name for p in markers.iterdir()] == [f"attempt-1-pid-{os.getpid()}"]


async def test_expired_activity_lease_rejects_the_old_holders_completion(
    backend: tapeflow.Backend, client: tapeflow.Client
) -> None:
    await client.start_workflow(run_slow_step, "unused", 0.0, id="fenced-activity")
    [wf_task] = await backend.claim_workflow_tasks(
        ["run_slow_step"], "w1", timedelta(seconds=5), 10
    )
    await backend.commit_workflow_task(
        wf_task, plan_commit(_first_task_events(wf_task), [e.id for e in wf_task.inbox])
    )
    lease = timedelta(milliseconds=200)
    [old] = await backend.claim_activity_tasks(["slow_step"], "old", lease, 10)
    await asyncio.sleep(0.3)
    [new] = await backend.claim_activity_tasks(["slow_step"], "new", lease * 50, 10)
    assert (old.id, old.attempt, new.attempt) == (new.id, 1, 2)
    assert await backend.claim_activity_tasks(["slow_step"], "third", lease, 10) == []

    with pytest.raises(tapeflow.LeaseLost):
        await backend.complete_activity_task(old, ActivityCompleted(seq=1, result=1, attempt=1))
    with pytest.raises(tapeflow.LeaseLost):
        await backend.retry_activity_task(
            old, Failure(type="RuntimeError", message="late"), timedelta(0)
        )
    old_ref = LeaseRef(TaskKind.ACTIVITY, str(old.id), old.lease_token)
    assert await backend.extend_leases([old_ref], lease) == [old_ref]

    await backend.complete_activity_task(new, ActivityCompleted(seq=1, result=2, attempt=2))
    [wf_task] = await backend.claim_workflow_tasks(
        ["run_slow_step"], "w1", timedelta(seconds=5), 10
    )
    assert [e.event for e in wf_task.inbox] == [ActivityCompleted(seq=1, result=2, attempt=2)]


async def test_expired_workflow_lease_cannot_commit_over_the_new_holder(
    backend: tapeflow.Backend, client: tapeflow.Client
) -> None:
    await client.start_workflow(run_slow_step, "unused", 0.0, id="fenced-workflow")
    lease = timedelta(milliseconds=200)
    [old] = await backend.claim_workflow_tasks(["run_slow_step"], "old", lease, 10)
    assert await backend.claim_workflow_tasks(["run_slow_step"], "early", lease, 10) == []
    await asyncio.sleep(0.3)
    [new] = await backend.claim_workflow_tasks(["run_slow_step"], "new", lease * 50, 10)
    assert new.lease_token != old.lease_token

    with pytest.raises(tapeflow.LeaseLost):
        await backend.commit_workflow_task(
            old, plan_commit(_first_task_events(old), [e.id for e in old.inbox])
        )
    with pytest.raises(tapeflow.LeaseLost):
        await backend.abandon_workflow_task(old, "late", timedelta(0))
    await backend.commit_workflow_task(
        new, plan_commit(_first_task_events(new), [e.id for e in new.inbox])
    )
    history = await backend.load_history("fenced-workflow")
    assert [e.kind for e in history] == [
        "workflow_task_started",
        "workflow_started",
        "activity_scheduled",
    ]


def _first_task_events(task: WorkflowTask) -> list[HistoryEvent]:
    """What a worker would commit for the first task of ``run_slow_step``."""
    return [
        WorkflowTaskStarted(at=datetime.now(UTC)),
        *(item.event for item in task.inbox),
        ActivityScheduled(seq=1, name="slow_step", args=["unused", 0.0], retry=None),
    ]
