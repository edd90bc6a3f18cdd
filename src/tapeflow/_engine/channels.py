"""External events inside a workflow: kept from arrival, handed out in history order.

An event that arrives before anyone waits for it is kept. ``wait`` returns the oldest
payload of that name not yet returned by ``wait``; every ``on`` callback sees every payload
of its name, the earlier ones included, in history order, and no later than ``wait``
returns it: callbacks due run first, so code after a ``wait`` sees their effects.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from typing import Any

from tapeflow.converter import from_json
from tapeflow.history import JSONValue

Callback = Callable[[Any], object]


class EventChannels:
    def __init__(self, loop: asyncio.AbstractEventLoop, on_error: Callable[[BaseException], None]):
        self._loop = loop
        self._on_error = on_error
        self._log: defaultdict[str, list[JSONValue]] = defaultdict(list)
        self._taken: defaultdict[str, int] = defaultdict(int)
        self._waiters: defaultdict[str, deque[asyncio.Future[None]]] = defaultdict(deque)
        self._callbacks: defaultdict[str, list[tuple[Callback, object]]] = defaultdict(list)
        self._arrivals: list[str] = []
        """The names of the events delivered, in order."""
        self._due: deque[tuple[Callback, object, JSONValue]] = deque()
        """Callback calls not made yet, in history order."""
        self._flush_scheduled = False

    def deliver(self, name: str, payload: JSONValue) -> None:
        self._log[name].append(payload)
        self._arrivals.append(name)
        self._call_later((callback, hint, payload) for callback, hint in self._callbacks[name])
        self._wake_next(name)

    async def wait(self, name: str, hint: object) -> Any:
        """Take the oldest payload not yet taken. It is taken when the waiter resumes, never
        handed to a waiter that is cancelled first (say by a timeout firing at that moment),
        so no event is lost."""
        while self._taken[name] >= len(self._log[name]):
            waiter = self._loop.create_future()
            self._waiters[name].append(waiter)
            try:
                await waiter
            except BaseException:
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters[name].remove(waiter)
                self._wake_next(name)  # pass on a wake-up this waiter will not use
                raise
        payload = self._log[name][self._taken[name]]
        self._taken[name] += 1
        self._flush()
        return from_json(payload, hint, what=f"event {name!r}")

    def unhandled(self) -> list[tuple[str, JSONValue]]:
        """The events no ``wait`` returned and no ``on`` callback saw, in arrival order:
        what a run that continues as new hands to the next."""
        seen: defaultdict[str, int] = defaultdict(int)
        left = []
        for name in self._arrivals:
            index = seen[name]
            seen[name] += 1
            if index >= self._taken[name] and not self._callbacks[name]:
                left.append((name, self._log[name][index]))
        return left

    def on(self, name: str, callback: Callback, hint: object) -> None:
        self._callbacks[name].append((callback, hint))
        self._call_later((callback, hint, payload) for payload in self._log[name])

    def _call_later(self, calls: Iterable[tuple[Callback, object, JSONValue]]) -> None:
        self._due.extend(calls)
        if self._due and not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Make the callback calls due, oldest first (a callback may register another)."""
        self._flush_scheduled = False
        while self._due:
            self._invoke(*self._due.popleft())

    def _wake_next(self, name: str) -> None:
        waiters = self._waiters[name]
        while waiters and self._taken[name] < len(self._log[name]):
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _invoke(self, callback: Callback, hint: object, payload: JSONValue) -> None:
        try:
            outcome = callback(from_json(payload, hint))
            if inspect.isawaitable(outcome):
                task = asyncio.ensure_future(outcome, loop=self._loop)
                task.add_done_callback(self._check_task)
        except BaseException as exc:  # SystemExit too: the instance decides what it fails
            self._on_error(exc)

    def _check_task(self, task: asyncio.Future[Any]) -> None:
        error = None if task.cancelled() else task.exception()
        if error is not None:
            self._on_error(error)
