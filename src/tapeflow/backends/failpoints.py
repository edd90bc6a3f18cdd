"""Failpoints: make chosen backend calls fail on purpose, to prove nothing is lost.

For tests only. A test wraps a backend itself (``FailpointBackend(backend, parse(spec))``),
or, for processes it starts, sets both ``TAPEFLOW_ENABLE_FAILPOINTS=1`` and
``TAPEFLOW_FAILPOINTS="commit_workflow_task=raise-after@0.1,claim=exit@0.01"``, which
``tapeflow.connect`` reads: a stray ``TAPEFLOW_FAILPOINTS`` alone (a copied test
environment) is ignored, so it can never make a production worker exit. Each entry is
``point=mode[@probability][#count]``:

- points: ``start_workflow``, ``claim``, ``commit_workflow_task``, ``timer_fired`` (a commit
  that consumes a fired timer), ``complete_activity``, ``send_event``;
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
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from tapeflow.backends.base import Backend
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
    return FailpointBackend(backend, points)


@functools.cache
def _warn_once(message: str) -> None:
    """Every ``connect`` of a process reads the variables: one warning per process is loud
    enough, and a log full of them would bury the failures it is there to explain."""
    log.warning(message)


class FailpointBackend:
    """A backend proxy that fails the configured calls; everything else passes through."""

    def __init__(self, backend: Backend, points: Mapping[str, Failpoint]) -> None:
        self._backend = backend
        self._points = dict(points)

    def __getattr__(self, name: str) -> Any:
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

    async def create_workflow(self, *args: Any) -> None:
        await self._through("start_workflow", lambda: self._backend.create_workflow(*args))

    async def send_event(self, *args: Any) -> None:
        await self._through("send_event", lambda: self._backend.send_event(*args))

    async def claim_workflow_tasks(self, *args: Any) -> Any:
        return await self._through("claim", lambda: self._backend.claim_workflow_tasks(*args))

    async def claim_activity_tasks(self, *args: Any) -> Any:
        return await self._through("claim", lambda: self._backend.claim_activity_tasks(*args))

    async def commit_workflow_task(
        self, task: Any, consumed: Sequence[int], events: Any, eager: Any = None
    ) -> Any:
        point = (
            "timer_fired"
            if any(isinstance(item.event, TimerFired) for item in task.inbox)
            and "timer_fired" in self._points
            else "commit_workflow_task"
        )
        return await self._through(
            point, lambda: self._backend.commit_workflow_task(task, consumed, events, eager)
        )

    async def complete_activity_task(self, *args: Any) -> Any:
        return await self._through(
            "complete_activity", lambda: self._backend.complete_activity_task(*args)
        )

    async def continue_after_activity(self, *args: Any) -> Any:
        return await self._through(
            "complete_activity", lambda: self._backend.continue_after_activity(*args)
        )
