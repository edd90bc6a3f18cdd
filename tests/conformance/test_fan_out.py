"""Fan-out then fan-in: a hundred activities scheduled in one go, their results summed."""

from __future__ import annotations

import tapeflow
from tapeflow.history import ActivityCompleted, ActivityScheduled, WorkflowTaskStarted
from tests.conftest import WorkerFactory
from tests.scenarios.fan_out import square, sum_of_squares


async def test_a_hundred_activities_at_once_then_their_sum(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[sum_of_squares], activities=[square]):
        handle = await client.start_workflow(sum_of_squares, 100, id="fan-out")
        assert await handle.result(timeout=30) == sum(i * i for i in range(100)) == 328350

    history = await tapeflow.WorkflowDebugger(client.backend).history("fan-out")
    first_task_end = next(
        i for i, e in enumerate(history) if i > 0 and isinstance(e, WorkflowTaskStarted)
    )
    scheduled = [e for e in history[:first_task_end] if isinstance(e, ActivityScheduled)]
    assert [(e.seq, e.name, e.args) for e in scheduled] == [
        (i + 1, "square", [i]) for i in range(100)
    ], "all hundred are scheduled by the first workflow task"
    completed = [e for e in history if isinstance(e, ActivityCompleted)]
    assert sorted((e.seq, e.result) for e in completed) == [(i + 1, i * i) for i in range(100)]
