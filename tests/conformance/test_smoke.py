"""The shortest path through the system: start, run one activity, get the result."""

from __future__ import annotations

import tapeflow
from tapeflow import activity, workflow
from tests.conftest import WorkerFactory


@activity.defn
def double(value: int) -> int:
    return value * 2


@workflow.defn
async def double_it(value: int) -> int:
    return await workflow.execute_activity(double, value)


async def test_one_activity_round_trip(client: tapeflow.Client, worker: WorkerFactory) -> None:
    async with worker(workflows=[double_it], activities=[double]):
        handle = await client.start_workflow(double_it, 21, id="double-21")
        assert await handle.result(timeout=10) == 42
