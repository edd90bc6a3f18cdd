"""A decision the backends know nothing of is stored by each of them through its plan."""

from __future__ import annotations

import tapeflow
from tapeflow.history import MarkerRecorded
from tests.conftest import WorkerFactory
from tests.scenarios.markers import noting


async def test_markers_reach_history_on_every_backend(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[noting]):
        handle = await client.start_workflow(noting, 3, id="noting")
        assert await handle.result(timeout=10) == 3
    history = await client.backend.load_history("noting")
    markers = [e for e in history if isinstance(e, MarkerRecorded)]
    assert [(m.name, m.details) for m in markers] == [(f"step-{n}", {"n": n}) for n in range(3)]
