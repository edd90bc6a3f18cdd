"""An activity records progress with heartbeat(); the next attempt picks up from there."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

import tapeflow
from tapeflow import activity, workflow
from tapeflow.backends.base import LeaseRef, TaskKind
from tapeflow.backends.plan import plan_commit
from tapeflow.history import ActivityScheduled, HistoryEvent, WorkflowTaskStarted
from tests.conftest import WorkerFactory

_seen: dict[str, list[object]] = {}
_lock = threading.Lock()


@activity.defn
def count_to(key: str, target: int) -> int:
    """Counts, heartbeating each step; the first attempt dies half way through."""
    info = activity.info()
    with _lock:
        _seen.setdefault(key, []).append(info.heartbeat_details)
    start = info.heartbeat_details["done"] if info.heartbeat_details else 0
    for done in range(start + 1, target + 1):
        activity.heartbeat({"done": done})
        if info.attempt == 1 and done == target // 2:
            raise ConnectionError("lost the connection half way")
    return info.attempt


@workflow.defn
async def counting(key: str, target: int) -> int:
    return await workflow.execute_activity(
        count_to, key, target, retry=tapeflow.RetryPolicy(initial_interval=timedelta(0))
    )


async def test_next_attempt_reads_the_last_heartbeat(
    client: tapeflow.Client, worker: WorkerFactory, backend_url: str, cache_size: int
) -> None:
    key = f"{backend_url}-{cache_size}"
    async with worker(workflows=[counting], activities=[count_to]):
        handle = await client.start_workflow(counting, key, 10, id="counting")
        assert await handle.result(timeout=10) == 2
    assert _seen[key] == [None, {"done": 5}]


async def test_lease_renewal_stores_heartbeats_for_the_next_attempt(
    backend: tapeflow.Backend, client: tapeflow.Client
) -> None:
    """What a worker that dies mid-attempt leaves behind: the details of its last renewal."""
    await client.start_workflow(counting, "renewal", 10, id="renewal")
    [wf_task] = await backend.claim_workflow_tasks(["counting"], "w", timedelta(seconds=5), 1)
    events: list[HistoryEvent] = [
        WorkflowTaskStarted(at=wf_task.claimed_at),
        *(item.event for item in wf_task.inbox),
        ActivityScheduled(seq=1, name="count_to", args=["renewal", 10]),
    ]
    await backend.commit_workflow_task(
        wf_task, plan_commit(events, [item.id for item in wf_task.inbox])
    )
    lease = timedelta(milliseconds=200)
    [first] = await backend.claim_activity_tasks(["count_to"], "dies", lease, 1)
    assert first.heartbeat_details is None
    ref = LeaseRef(TaskKind.ACTIVITY, str(first.id), first.lease_token)
    assert await backend.extend_leases([ref], lease, {ref.id: {"done": 3}}) == []
    assert await backend.extend_leases([ref], lease, {}) == []  # no news keeps the old
    await asyncio.sleep(0.3)  # the worker died: no more renewals
    [second] = await backend.claim_activity_tasks(["count_to"], "next", lease, 1)
    assert (second.attempt, second.heartbeat_details) == (2, {"done": 3})
