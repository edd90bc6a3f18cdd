"""On a real worker, cache on and off: a side effect's value is made once (a replay reads
it back), and wait_condition wakes on events that came in later tasks."""

from __future__ import annotations

import uuid
from datetime import timedelta

import tapeflow
from tapeflow import workflow
from tapeflow.history import MarkerRecorded
from tests.conformance._waiting import has_run, history
from tests.conftest import WorkerFactory


@workflow.defn
async def keeps_a_token() -> list[str]:
    token = await workflow.side_effect(lambda: uuid.uuid4().hex)
    seen: list[str] = []
    workflow.on_event("item", seen.append)
    await workflow.wait_condition(lambda: len(seen) >= 2, timeout=timedelta(minutes=5))
    await workflow.sleep(0.1)  # one more task: with the cache off, one more replay
    return [token, *seen]


async def test_a_side_effect_keeps_its_value_across_replays(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[keeps_a_token]):
        handle = await client.start_workflow(keeps_a_token, id="token")
        await has_run(client, handle.id)
        await client.send_event(handle.id, "item", "a")
        await client.send_event(handle.id, "item", "b")
        token, *seen = await handle.result(timeout=10)
    assert seen == ["a", "b"]
    [marker] = [e for e in await history(client, handle.id) if isinstance(e, MarkerRecorded)]
    assert marker.details == token
