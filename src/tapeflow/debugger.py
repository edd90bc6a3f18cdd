"""Look inside a workflow from outside: replay its stored history locally, write nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from tapeflow._definition import definition_of
from tapeflow._engine.replay import replay_new
from tapeflow.backends.base import Backend
from tapeflow.errors import InvalidArgument
from tapeflow.history import HistoryEvent, WorkflowExecutionStarted, WorkflowTaskStarted


class WorkflowDebugger:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    async def query_vars(
        self, workflow: Callable[..., Awaitable[Any]], workflow_id: str, *, upto: int | None = None
    ) -> dict[str, Any]:
        """The variables set with ``workflow.set_var``, as of the latest history event (or
        of event number ``upto``). ``{}`` if no worker has run the workflow yet.

        Raises WorkflowNotFound, and NonDeterminismError if the code no longer matches the
        history.
        """
        history = await self.history(workflow_id)
        if upto is not None:
            history = _cut_at_task(history, upto)
        if not history:
            return {}
        definition = definition_of(workflow, "workflow")
        started = next((e for e in history if isinstance(e, WorkflowExecutionStarted)), None)
        if started is not None and started.name != definition.name:
            raise InvalidArgument(
                f"workflow {workflow_id!r} runs {started.name!r}, not {definition.name!r}"
            )
        instance = replay_new(definition, workflow_id, history)
        try:
            return dict(instance.vars)
        finally:
            instance.close()

    async def history(self, workflow_id: str) -> list[HistoryEvent]:
        """The stored history, in order. Raises WorkflowNotFound."""
        return await self.backend.load_history(workflow_id)


def _cut_at_task(history: list[HistoryEvent], upto: int) -> list[HistoryEvent]:
    """History up to event ``upto``, extended to the end of that workflow task so the
    replay sees the task's decisions together with its events."""
    end = min(max(upto, 0), len(history))
    while end < len(history) and not isinstance(history[end], WorkflowTaskStarted):
        end += 1
    return history[:end]
