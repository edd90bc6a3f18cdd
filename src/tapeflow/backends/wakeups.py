"""Wake-ups by topic: pollers watch their task names, result waiters their workflow.

A watcher registers before it looks at the database and waits after, so a wake-up sent in
between is never missed. Topics are strings made by ``work_topic``, ``finished_topic``,
``update_topic``, ``queue_topic`` and ``schedule_topic``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from types import TracebackType

from tapeflow.queues import DEFAULT_QUEUE

FALLBACK_POLL_SECONDS = 10.0
"""While wake-ups arrive from every process (``Backend.wakes_other_processes``), watchers
look again only this often: just a lost notification waits this long."""


def work_topic(kind: str, name: str) -> str:
    """New or newly due work for the workflow or activity ``name``."""
    return f"{kind}:{name}"


def finished_topic(workflow_id: str) -> str:
    return f"finished:{workflow_id}"


def update_topic(workflow_id: str) -> str:
    """An update of the workflow got its answer (``CommitPlan.updates``)."""
    return f"update:{workflow_id}"


def queue_topic(queue: str) -> str:
    """Work of the queue came to wait for admission, or left room (see ``queue_topics``)."""
    return f"queue:{queue}"


def schedule_topic(workflow: str) -> str:
    """A schedule of the workflow ``workflow`` was made, or its due time or state changed:
    the firing loops of the workers that run it look again."""
    return f"schedule:{workflow}"


def queue_topics(queues: Iterable[str]) -> set[str]:
    """The admissions to wake for work that came to, or left, these queues: none for the
    default queue, which has no limits."""
    return {queue_topic(queue) for queue in queues if queue != DEFAULT_QUEUE}


class Watch:
    """Set by any wake-up on its topics from the moment it is made until it is closed."""

    def __init__(
        self, hub: Wakeups, topics: Iterable[str], on_wake: Callable[[], None] | None = None
    ) -> None:
        self._hub = hub
        self._topics = list(topics)
        self._event = asyncio.Event()
        self._on_wake = on_wake
        for topic in self._topics:
            hub._watchers[topic].add(self)

    def clear(self) -> None:
        """Forget earlier wake-ups: call before looking again."""
        self._event.clear()

    def wake(self) -> None:
        self._event.set()
        if self._on_wake is not None:
            self._on_wake()

    @property
    def woken(self) -> bool:
        """Whether a wake-up came since the last ``clear``."""
        return self._event.is_set()

    async def wait(self, timeout: float) -> bool:
        """True if woken, False if ``timeout`` seconds passed first."""
        if timeout <= 0:
            return self._event.is_set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._event.wait()
        return self._event.is_set()

    def close(self) -> None:
        for topic in self._topics:
            watchers = self._hub._watchers.get(topic)
            if watchers is not None:
                watchers.discard(self)
                if not watchers:
                    del self._hub._watchers[topic]

    def __enter__(self) -> Watch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Wakeups:
    def __init__(self) -> None:
        self._watchers: defaultdict[str, set[Watch]] = defaultdict(set)

    def watch(self, topics: Iterable[str], on_wake: Callable[[], None] | None = None) -> Watch:
        return Watch(self, topics, on_wake)

    def notify(self, topics: Iterable[str]) -> None:
        for topic in topics:
            for watch in self._watchers.get(topic, ()):
                watch.wake()

    def notify_all(self) -> None:
        """Wake everyone: after a reconnect, wake-ups may have been missed."""
        for watchers in list(self._watchers.values()):
            for watch in watchers:
                watch.wake()
