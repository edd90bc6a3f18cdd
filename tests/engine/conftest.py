"""WorkflowThreads tests: every ``Run`` made through the ``run`` fixture is closed afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from tapeflow.history import HistoryEvent
from tests.engine.harness import WORKFLOW_ID, Run

RunFactory = Callable[..., Run]


@pytest.fixture
def run() -> Iterator[RunFactory]:
    """``run(workflow, workflow_id=..., history=...)``: a live instance (picked up from
    ``history``, if given), closed at the end of the test."""
    made: list[Run] = []

    def make(
        workflow: Callable[..., Any],
        workflow_id: str = WORKFLOW_ID,
        history: Sequence[HistoryEvent] = (),
    ) -> Run:
        made.append(Run(workflow, workflow_id, history))
        return made[-1]

    yield make
    for each in made:
        each.close()
