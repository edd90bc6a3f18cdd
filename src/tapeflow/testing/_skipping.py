"""Virtual time for a test environment: a clock that moves only when it is moved, and is
moved only when moving it can break nothing.

Why it is built this way:

- **One clock, the backend's.** Every time tapeflow keeps is the backend's clock's (claims,
  leases, timers, activity retries, execution timeouts, ``start_at``, schedules, and
  workflow time, which is the time a workflow task was claimed). The SQLite backend is
  given this clock and reads it in every transaction, and a worker in the same process
  reads it too (``LocalClock``) instead of estimating it between claims. So nothing else
  needs to know that time is virtual, and workflow code runs unchanged.
- **It stands still unless moved**, so times in a test are exact: after ``env.sleep(1h)``
  it reads exactly one hour later, and a timer due by then has fired and been handled. Real
  time passing (a poll interval, an activity running) moves nothing.
- **It is moved only when the backend is idle** (``Agenda``, read in one transaction): no
  task leased, so none running or about to run, and none due now. The database is asked,
  not the worker: every hand-off (an eager activity, a workflow task taken with an
  activity's outcome) is leased in the very write that makes it, so between transactions
  the database holds all the work there is. Moving then breaks nothing: no lease runs out
  under a task that runs, and a move goes to the earliest due time only, the system left
  to settle again before the next, so nothing is jumped over.
- **Workers are woken when it moves** (``SQLiteBackend.time_moved``): a poller waits in real
  time for the next due time or its poll interval, while the due time arrived at once.
- **It moves by itself only while a test awaits a workflow** (a result, an update's
  answer) through the environment's client, as in Temporal's time-skipping environment,
  and that workflow is open. Between a start and an event sent right after it, time stays
  put: a 7-day timeout cannot fire in between by a race; and once the awaited workflow has
  ended, another's timers do not fire before its caller hears of it.
- **An activity attempt runs in real time**, and virtual time stands still while it runs.
  Its start-to-close and heartbeat timeouts are measured by the worker on the real clock:
  they limit code that really runs, and no time could pass for them otherwise. What lies
  between attempts (retry backoff, schedule-to-close across attempts) is virtual, so a
  retry an hour later takes no real hour. (Temporal measures them on its virtual clock,
  which runs at real speed while an activity runs: the same limits in practice.)
- **A failing workflow task is not retried on virtual time** (the agenda leaves it out):
  code that fails every time would otherwise race the clock through its retries, firing
  every timer; time stops there instead, the error logged and in ``describe().task_error``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta

from tapeflow.backends.sqlite import SQLiteBackend
from tapeflow.errors import WorkflowNotFound

log = logging.getLogger("tapeflow.testing")

FIRST_LOOK = 0.001
"""Seconds before looking again at a backend that is not idle; doubled up to LAST_LOOK."""
LAST_LOOK = 0.02


class VirtualClock:
    """The time of a test environment: where it was last moved to, never back."""

    def __init__(self, start: datetime) -> None:
        self._now = start

    def __call__(self) -> datetime:
        return self._now

    def move_to(self, moment: datetime) -> None:
        self._now = max(self._now, moment)


class TimeSkipper:
    """Moves a backend's virtual clock from due time to due time: by hand (``sleep``), and
    by itself while a caller awaits a workflow (``awaited``)."""

    def __init__(
        self,
        backend: SQLiteBackend,
        clock: VirtualClock,
        workflows: Sequence[str],
        activities: Sequence[str],
        queues: Sequence[str],
    ) -> None:
        self._backend = backend
        self._clock = clock
        self._names = (list(workflows), list(activities), list(queues))
        self._moving = asyncio.Lock()
        """Held by whoever moves the clock: a sleep and the automatic moves take turns."""
        self._awaited: Counter[str] = Counter()
        """The workflows awaited, by id, with how many wait for each."""
        self._awaiting = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._skip_while_awaited(), name="tapeflow-time")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @contextlib.contextmanager
    def awaited(self, workflow_id: str) -> Iterator[None]:
        """While in this block, time moves by itself to each next due time, as long as the
        workflow is open."""
        self._awaited[workflow_id] += 1
        self._awaiting.set()
        try:
            yield
        finally:
            self._awaited[workflow_id] -= 1
            if not self._awaited[workflow_id]:
                del self._awaited[workflow_id]
            if not self._awaited:
                self._awaiting.clear()

    async def sleep(self, duration: timedelta) -> None:
        """Move the clock ``duration`` on, through every due time on the way in order, each
        handled before the next (so a timer fires at its own time, and what it starts runs
        then); returns once nothing more is due by the end."""
        async with self._moving:
            until = self._clock() + duration
            while (due := await self._next_due()) is not None and due <= until:
                self._move(due)
            self._move(until)

    async def _skip_while_awaited(self) -> None:
        """Runs until stopped; should it fail, it says so at once (a test would only see
        time stand still) and again as the environment closes (``stop`` raises it)."""
        try:
            while True:
                await self._awaiting.wait()
                async with self._moving:
                    due = await self._next_due()
                    if due is not None and await self._awaited_open():
                        self._move(due)
                        continue
                await asyncio.sleep(LAST_LOOK)  # nothing due: what is awaited waits on a caller
        except Exception:
            log.exception("the test environment's clock stopped moving by itself")
            raise

    async def _awaited_open(self) -> bool:
        """Whether a workflow awaited is still open: once it has ended, time stays put
        while its caller is told (other workflows' timers wait for another move)."""
        for workflow_id in list(self._awaited):
            with contextlib.suppress(WorkflowNotFound):
                if not (await self._backend.get_workflow(workflow_id)).status.finished:
                    return True
        return False

    async def _next_due(self) -> datetime | None:
        """Once the backend is idle: when the next task is due, if any."""
        wait = FIRST_LOOK
        while not (agenda := await self._backend.agenda(*self._names)).idle(self._clock()):
            await asyncio.sleep(wait)
            wait = min(wait * 2, LAST_LOOK)
        return agenda.due

    def _move(self, moment: datetime) -> None:
        if moment > self._clock():
            self._clock.move_to(moment)
            self._backend.time_moved()
