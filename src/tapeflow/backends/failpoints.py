"""Failpoints: make chosen backend calls fail on purpose, to prove nothing is lost.

For tests only. A test wraps a backend itself (``wrap(backend, parse(spec))``),
or, for processes it starts, sets both ``TAPEFLOW_ENABLE_FAILPOINTS=1`` and
``TAPEFLOW_FAILPOINTS="commit_workflow_task=raise-after@0.1,claim=exit@0.01"``, which
``tapeflow.connect`` reads: a stray ``TAPEFLOW_FAILPOINTS`` alone (a copied test
environment) is ignored, so it can never make a production worker exit. Each entry is
``point=mode[@probability][#count]``:

- points: ``start_workflow``, ``claim``, ``commit_workflow_task``, ``timer_fired`` (a commit
  that consumes a fired timer), ``complete_activity``, ``send_event``, ``request_cancel``
  (a cancel), ``impose_ending`` (a terminate's write), ``request_update`` (an update sent);
- modes: ``raise`` (before the call: nothing written), ``raise-after`` (the call commits,
  then the caller sees an error), ``hang`` (never returns), ``exit`` / ``exit-after``
  (the process dies at once, before or after the call);
- ``@p`` fires with probability p (default 1), ``#n`` at most n times (default unlimited).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import random
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from tapeflow.backends.base import (
    Backend,
    HandOffs,
    Reclaimed,
    Take,
    WorkflowTask,
    hand_offs,
)
from tapeflow.backends.plan import CommitPlan
from tapeflow.errors import BackendUnavailable, InvalidArgument
from tapeflow.history import TimerFired

T = TypeVar("T")

ENV_VARIABLE = "TAPEFLOW_FAILPOINTS"
ENABLE_VARIABLE = "TAPEFLOW_ENABLE_FAILPOINTS"
log = logging.getLogger("tapeflow.failpoints")
POINTS = (
    "start_workflow",
    "claim",
    "commit_workflow_task",
    "timer_fired",
    "complete_activity",
    "send_event",
    "request_cancel",
    "impose_ending",
    "request_update",
)
MODES = ("raise", "raise-after", "hang", "exit", "exit-after")
EXIT_CODE = 86
_ENTRY = re.compile(r"(?P<point>\w+)=(?P<mode>[\w-]+)(?:@(?P<p>[\d.]+))?(?:#(?P<n>\d+))?")


class FailpointError(BackendUnavailable):
    """Raised by a failpoint: looks like a database failure to the code above."""


@dataclass
class Failpoint:
    mode: str
    probability: float = 1.0
    remaining: int | None = None

    def due(self) -> bool:
        if self.remaining == 0 or random.random() >= self.probability:
            return False
        if self.remaining is not None:
            self.remaining -= 1
        return True


def parse(spec: str) -> dict[str, Failpoint]:
    points: dict[str, Failpoint] = {}
    for entry in filter(None, (part.strip() for part in spec.split(","))):
        match = _ENTRY.fullmatch(entry)
        if not match or match["point"] not in POINTS or match["mode"] not in MODES:
            raise InvalidArgument(
                f"bad failpoint {entry!r}: want point=mode[@p][#n], points {POINTS}, modes {MODES}"
            )
        count = match["n"]
        points[match["point"]] = Failpoint(
            match["mode"], float(match["p"] or 1), None if count is None else int(count)
        )
    return points


def from_environment(backend: Backend) -> Backend:
    """``backend`` wrapped with the failpoints of $TAPEFLOW_FAILPOINTS, if a test opted in
    with $TAPEFLOW_ENABLE_FAILPOINTS=1; a warning says so once a process either way."""
    spec = os.environ.get(ENV_VARIABLE, "").strip()
    if not spec:
        return backend
    if os.environ.get(ENABLE_VARIABLE) != "1":
        _warn_once(f"{ENV_VARIABLE}={spec!r} is ignored: failpoints are for tests only")
        return backend
    points = parse(spec)
    _warn_once(
        f"FAILPOINTS ENABLED ({ENV_VARIABLE}={spec!r}): backend calls will fail, hang or exit "
        f"this process on purpose; unset {ENABLE_VARIABLE} outside tests"
    )
    return wrap(backend, points)


@functools.cache
def _warn_once(message: str) -> None:
    """Every ``connect`` of a process reads the variables: one warning per process is loud
    enough, and a log full of them would bury the failures it is there to explain."""
    log.warning(message)


_HAND_OFFS = frozenset(
    name for name in vars(HandOffs) if not name.startswith("_") and callable(vars(HandOffs)[name])
)


class FailpointBackend:
    """A backend proxy that fails the configured calls; everything else passes through.
    It has the hand-off capability exactly when the backend it wraps has it (``wrap``)."""

    def __init__(self, backend: Backend, points: Mapping[str, Failpoint]) -> None:
        self._backend = backend
        self._points = dict(points)

    def __getattr__(self, name: str) -> Any:
        if name in _HAND_OFFS:  # only through FailpointHandOffs, which fails them too
            raise AttributeError(name)
        return getattr(self._backend, name)

    async def __aenter__(self) -> FailpointBackend:
        await self._backend.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._backend.close()

    async def _through(self, point: str, call: Callable[[], Awaitable[T]]) -> T:
        failpoint = self._points.get(point)
        mode = failpoint.mode if failpoint is not None and failpoint.due() else None
        if mode == "exit":
            os._exit(EXIT_CODE)
        if mode == "hang":
            await asyncio.Event().wait()
        if mode == "raise":
            raise FailpointError(f"failpoint {point}: before the call")
        result = await call()
        if mode == "exit-after":
            os._exit(EXIT_CODE)
        if mode == "raise-after":
            raise FailpointError(f"failpoint {point}: after the call committed")
        return result

    def _commit_point(self, task: WorkflowTask, plan: CommitPlan) -> str:
        consumed = set(plan.consumed)
        fires = any(
            isinstance(item.event, TimerFired) and item.id in consumed for item in task.inbox
        )
        return "timer_fired" if fires and "timer_fired" in self._points else "commit_workflow_task"

    async def create_workflow(self, *args: Any, **kwargs: Any) -> str:
        return await self._through(
            "start_workflow", lambda: self._backend.create_workflow(*args, **kwargs)
        )

    async def send_event(self, *args: Any, **kwargs: Any) -> None:
        await self._through("send_event", lambda: self._backend.send_event(*args, **kwargs))

    async def request_cancel(self, *args: Any) -> None:
        await self._through("request_cancel", lambda: self._backend.request_cancel(*args))

    async def request_update(self, *args: Any) -> None:
        await self._through("request_update", lambda: self._backend.request_update(*args))

    async def impose_ending(self, *args: Any) -> None:
        await self._through("impose_ending", lambda: self._backend.impose_ending(*args))

    async def claim_workflow_tasks(self, *args: Any) -> Any:
        return await self._through("claim", lambda: self._backend.claim_workflow_tasks(*args))

    async def claim_activity_tasks(self, *args: Any) -> Any:
        return await self._through("claim", lambda: self._backend.claim_activity_tasks(*args))

    async def commit_workflow_task(self, task: WorkflowTask, plan: CommitPlan) -> None:
        await self._through(
            self._commit_point(task, plan), lambda: self._backend.commit_workflow_task(task, plan)
        )

    async def complete_activity_task(self, *args: Any) -> None:
        await self._through(
            "complete_activity", lambda: self._backend.complete_activity_task(*args)
        )


class FailpointHandOffs(FailpointBackend):
    """A failpoint proxy of a backend with the hand-off capability."""

    def __init__(
        self, backend: Backend, capability: HandOffs, points: Mapping[str, Failpoint]
    ) -> None:
        super().__init__(backend, points)
        self._capability = capability

    async def commit_and_take(self, task: WorkflowTask, plan: CommitPlan, take: Take) -> Any:
        return await self._through(
            self._commit_point(task, plan),
            lambda: self._capability.commit_and_take(task, plan, take),
        )

    async def complete_and_continue(self, *args: Any) -> Any:
        return await self._through(
            "complete_activity", lambda: self._capability.complete_and_continue(*args)
        )

    async def reclaim(self, run_id: str, take: Take) -> Reclaimed:
        return await self._capability.reclaim(run_id, take)


def wrap(backend: Backend, points: Mapping[str, Failpoint]) -> FailpointBackend:
    """``backend`` behind the failpoints ``points``, with its capabilities and no more."""
    capability = hand_offs(backend)
    if capability is None:
        return FailpointBackend(backend, points)
    return FailpointHandOffs(backend, capability, points)
