"""Updates inside a workflow: a request in, an answer out, each one a task on the loop.

A request becomes a task when its event is applied, so requests are taken in history
order, each once the events before it have woken what they wake (in a run's first task,
the workflow's code has run to its first ``await``, and registered its handlers, first).
The task runs the validator, on the workflow's state as it is then, before anything is
recorded: a rejection leaves history as it was (the worker stores it only as the caller's
answer), which replays the same only because a validator changes nothing; so it may not
await or issue commands (one that does fails the workflow task). An accepted request
enters history as ``UpdateAccepted``, whose replay runs the handler and never the
validator. The handler's return or raise is the ``UpdateCompleted`` decision, the
caller's answer; a handler still running when the workflow ends is failed by that end,
so that no caller waits for ever.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tapeflow._engine.commands import Commands
from tapeflow._engine.task_failures import fails_the_task
from tapeflow.converter import Signature
from tapeflow.errors import (
    InvalidArgument,
    NonDeterminismError,
    WorkflowAlreadyCompleted,
    WorkflowSandboxError,
)
from tapeflow.history import (
    Failure,
    Incoming,
    UpdateAccepted,
    UpdateCompleted,
    UpdateRejected,
    UpdateRequested,
)

ENDED_FIRST = WorkflowAlreadyCompleted.__name__
"""The failure type of an update whose workflow ended (or had ended) before its answer."""


@dataclass(frozen=True)
class Handler:
    function: Callable[..., object]
    validator: Callable[..., object] | None
    signature: Signature
    """The function's: its annotations decode the arguments and encode the result."""


class Updates:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        commands: Commands,
        on_error: Callable[[BaseException], None],
        finished: Callable[[], bool],
    ) -> None:
        self._loop = loop
        self._commands = commands
        self._on_error = on_error
        """Told what fails the task, raised in an update's task."""
        self._finished = finished
        """Whether the workflow's own code is over: a request then is rejected."""
        self._handlers: dict[str, Handler] = {}
        self._running: dict[str, str] = {}
        """Accepted updates whose handler has not finished: their names, by update id."""
        self._accepted: dict[str, UpdateAccepted] = {}
        """The requests this activation accepted, by update id."""
        self.rejected: list[UpdateRejected] = []
        """The requests this activation rejected: answers to store, never history."""

    def register(
        self, name: str, function: Callable[..., object], validator: Callable[..., object] | None
    ) -> None:
        """Answer ``name`` with ``function`` from now on, replacing the handler it had."""
        signature = Signature(function, f"update {name!r}")
        for parameter in inspect.signature(function).parameters.values():
            if parameter.kind is parameter.KEYWORD_ONLY and parameter.default is parameter.empty:
                raise InvalidArgument(
                    f"the handler of update {name!r} takes {parameter.name!r} by keyword only: "
                    "an update's arguments are positional"
                )
        signature.check()
        self._handlers[name] = Handler(function, validator, signature)

    def begin(self) -> None:
        """Start an activation: what the last one accepted and rejected is written."""
        self._accepted.clear()
        self.rejected = []

    def arrive(self, event: UpdateRequested | UpdateAccepted) -> None:
        task = self._loop.create_task(self._run(event), name=f"update {event.name!r}")
        task.add_done_callback(self._check_task)

    def recorded(self, incoming: Sequence[Incoming]) -> list[Incoming]:
        """This activation's incoming events as history keeps them: each request as the
        ``UpdateAccepted`` it became, or left out if it was rejected."""
        kept: list[Incoming] = []
        for event in incoming:
            if not isinstance(event, UpdateRequested):
                kept.append(event)
            elif (accepted := self._accepted.get(event.update_id)) is not None:
                kept.append(accepted)
        return kept

    def abandon(self, ended: str) -> None:
        """The workflow ends (``ended``: how): the handlers still running fail, as
        decisions made before its ending."""
        why = f"the workflow {ended} before the update's handler finished"
        for update_id, name in self._running.items():
            failure = Failure(ENDED_FIRST, why)
            self._commands.decide(UpdateCompleted(update_id, name, failure=failure))
        self._running.clear()

    async def _run(self, event: UpdateRequested | UpdateAccepted) -> None:
        update_id, name = event.update_id, event.name
        handler = self._handlers.get(name)
        args: list[Any] | None = None
        if isinstance(event, UpdateRequested):
            admitted = self._admit(event, handler)
            if isinstance(admitted, Failure):
                self.rejected.append(UpdateRejected(update_id, name, admitted))
                return
            args = admitted
            self._accepted[update_id] = UpdateAccepted(update_id, name, event.args)
        if handler is None:
            raise NonDeterminismError(
                f"history has update {name!r} ({update_id}) accepted, but the workflow "
                "code had registered no handler of that name by then"
            )
        self._running[update_id] = name
        try:
            if args is None:
                args = handler.signature.decode_args(event.args)
            outcome = handler.function(*args)
            if inspect.isawaitable(outcome):
                outcome = await outcome
            result = handler.signature.encode_result(outcome)
        except BaseException as exc:  # the update's failure, unless it fails the task
            if fails_the_task(exc):
                raise
            self._answer(UpdateCompleted(update_id, name, failure=Failure.from_exception(exc)))
        else:
            self._answer(UpdateCompleted(update_id, name, result=result))

    def _admit(self, request: UpdateRequested, handler: Handler | None) -> Failure | list[Any]:
        """Its arguments decoded if ``request`` is accepted, else why it is rejected."""
        if self._finished():
            return Failure(ENDED_FIRST, "the workflow had finished when the update came")
        if handler is None:
            known = ", ".join(repr(name) for name in sorted(self._handlers)) or "none"
            message = f"the workflow has no update handler named {request.name!r} (it has: {known})"
            return Failure(InvalidArgument.__name__, message)
        try:
            args = handler.signature.decode_args(request.args)
            if handler.validator is not None:
                self._validate(request.name, handler.validator, args)
        except BaseException as exc:
            if fails_the_task(exc):
                raise
            return Failure.from_exception(exc)
        return args

    def _validate(self, name: str, validator: Callable[..., object], args: list[Any]) -> None:
        """Run ``validator``: raising rejects the update. One that awaits or issues commands
        would make the replay of what it rejected differ: it fails the task."""
        issued = self._commands.next_seq
        outcome = validator(*args)
        if inspect.iscoroutine(outcome):
            outcome.close()
        if inspect.isawaitable(outcome) or self._commands.next_seq != issued:
            raise WorkflowSandboxError(
                f"the validator of update {name!r} must only look at the workflow's state: "
                "it may not await, nor start activities, timers, children or events"
            )

    def _answer(self, completed: UpdateCompleted) -> None:
        if self._running.pop(completed.update_id, None) is not None:  # not failed by the end
            self._commands.decide(completed)

    def _check_task(self, task: asyncio.Future[Any]) -> None:
        error = None if task.cancelled() else task.exception()
        if error is not None:
            self._on_error(error)
