"""Look inside a workflow from outside: replay its stored history locally, write nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from tapeflow._definition import definition_of
from tapeflow._engine.instance import WorkflowInstance
from tapeflow._engine.replay import replay
from tapeflow.backends.base import Backend
from tapeflow.errors import InvalidArgument, NonDeterminismError
from tapeflow.history import HistoryEvent, WorkflowExecutionStarted, WorkflowTaskStarted


class WorkflowVars(dict[str, Any]):
    """The variables a workflow set with ``workflow.set_var``: a plain dict, and where the
    replay that produced them stopped.

    A workflow whose code no longer matches its history (the one stuck on a
    NonDeterminismError) is the one most worth looking into, so the debugger does not
    raise there: it shows the variables as of the last workflow task that replayed
    consistently, and ``diverged`` says where replay went another way."""

    def __init__(
        self, values: Mapping[str, Any], as_of: int, diverged: NonDeterminismError | None
    ) -> None:
        super().__init__(values)
        self.as_of = as_of
        """How many history events replayed consistently: the variables are as of the
        end of event #``as_of`` (0: none did)."""
        self.diverged = diverged
        """None if the whole history replayed; else the error naming the history event
        where the code took another decision."""

    def __repr__(self) -> str:
        if self.diverged is None:
            return super().__repr__()
        return f"WorkflowVars({super().__repr__()}, as_of={self.as_of}, diverged={self.diverged!r})"


class WorkflowDebugger:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    async def query_vars(
        self,
        workflow: Callable[..., Awaitable[Any]],
        workflow_id: str,
        *,
        upto: int | None = None,
        run_id: str | None = None,
    ) -> WorkflowVars:
        """The variables set with ``workflow.set_var``, as of the latest history event (or
        of event number ``upto``) of the latest run (or the run ``run_id``); empty if no
        worker has run the workflow yet.

        If the code no longer matches the history, they are as of the last workflow task
        that replayed consistently, and ``diverged`` on the result holds the
        NonDeterminismError naming where it stopped: check it before trusting the values.
        Raises WorkflowNotFound.
        """
        history = await self.history(workflow_id, run_id)
        if upto is not None:
            history = _cut_at_task(history, upto)
        if not history:
            return WorkflowVars({}, 0, None)
        definition = definition_of(workflow, "workflow")
        started = next((e for e in history if isinstance(e, WorkflowExecutionStarted)), None)
        if started is not None and started.name != definition.name:
            raise InvalidArgument(
                f"workflow {workflow_id!r} runs {started.name!r}, not {definition.name!r}"
            )
        diverged: NonDeterminismError | None = None
        while True:  # each pass is shorter than the last: it ends, at worst on no history
            instance = WorkflowInstance(definition, workflow_id, run_id or "")
            try:
                replay(instance, history)
                return WorkflowVars(instance.vars, len(history), diverged)
            except NonDeterminismError as exc:
                # The instance ran on into the task that diverged: replay afresh up to it.
                diverged = diverged or exc
                history = history[: instance.history_length]
            finally:
                instance.close()

    async def history(self, workflow_id: str, run_id: str | None = None) -> list[HistoryEvent]:
        """The stored history of the latest run (or the run named), in order. Raises
        WorkflowNotFound."""
        return await self.backend.load_history(workflow_id, run_id)


def _cut_at_task(history: list[HistoryEvent], upto: int) -> list[HistoryEvent]:
    """History up to event ``upto``, extended to the end of that workflow task so the
    replay sees the task's decisions together with its events."""
    end = min(max(upto, 0), len(history))
    while end < len(history) and not isinstance(history[end], WorkflowTaskStarted):
        end += 1
    return history[:end]
