"""Fires the schedules of a worker's workflows: sleeps until the next due time, wakes early
for a schedule made or changed (``schedule_topic``) or for the end of a run a buffered due
time waits for (``finished_topic``), and fires each due schedule in a transaction of its own.

Every worker that runs a schedule's workflow fires it: they race for each due time, and
the one that locks the row first starts it and stores the next due time in the same
transaction; the others skip the locked row (PostgreSQL) or find it handled (SQLite, whose
writers take turns). A worker killed mid-firing leaves nothing: its transaction is undone,
and the next look of another worker fires the due time. The time is the database's.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from datetime import timedelta

from tapeflow._schedules import decisions
from tapeflow._worker.log_context import worker_logger
from tapeflow.backends.base import Backend
from tapeflow.backends.schedules import DueSchedules, Schedules
from tapeflow.backends.wakeups import FALLBACK_POLL_SECONDS, finished_topic, schedule_topic

log = worker_logger()

BATCH = 100
"""Schedules fired per transaction: more due are fired by the next."""

HELD_ELSEWHERE = 0.05
"""Seconds to wait when every due schedule was being fired by another worker: its
transaction ends within that (or, if that worker died holding it, soon after)."""

LEFT_ALONE = 60.0
"""Seconds a schedule this worker could not read or decide on is left to the others (a
time zone this machine does not know, say) before it tries again."""

OTHERS_SEEN_WITHIN = 1.0
"""Where wake-ups do not come from other processes (SQLite), the longest the loop sleeps
without looking (unless the poll interval is longer): a schedule made or changed by
another process fires at most this late the first time. Due times it knows of are slept
to exactly, whatever this says."""

MAX_BACKOFF = 5.0


class ScheduleFiring:
    """Runs beside the pollers until cancelled; a failure (the backend is down) is logged
    and tried again with backoff."""

    def __init__(
        self, backend: Backend, schedules: Schedules, workflows: Sequence[str], poll: timedelta
    ) -> None:
        self._backend = backend
        self._schedules = schedules
        self._workflows = list(workflows)
        self._poll = poll.total_seconds()
        self._topics = {schedule_topic(name) for name in self._workflows}
        self._left_alone: dict[str, float] = {}
        """Schedules that failed here, and until when (monotonic) they are left alone."""

    async def run(self) -> None:
        awaiting: frozenset[str] = frozenset()
        failures = 0
        while True:
            topics = self._topics | {finished_topic(workflow_id) for workflow_id in awaiting}
            with self._backend.watch(topics) as woken:
                try:
                    due, wait = await self.fire()
                    failures = 0
                except Exception as exc:
                    failures += 1
                    delay = min(self._poll * 2**failures, MAX_BACKOFF) * random.uniform(0.5, 1)
                    log.warning("firing schedules failed (%s); trying again in %.1fs", exc, delay)
                    await asyncio.sleep(delay)
                    continue
                if not set(due.awaiting) <= awaiting:  # watch those runs' ends, then look again
                    awaiting = frozenset(due.awaiting)
                    continue
                awaiting = frozenset(due.awaiting)
                await woken.wait(wait)

    async def fire(self) -> tuple[DueSchedules, float]:
        """Fire what is due now, again until nothing is; then what is known, and how many
        seconds to sleep: until the next due time, at most until the fallback look."""
        while True:
            due = await self._schedules.due_schedules(self._workflows, BATCH)
            now = time.monotonic()
            self._left_alone = {i: until for i, until in self._left_alone.items() if until > now}
            ready = [i for i in due.due if i not in self._left_alone]
            if not ready:
                return due, self._sleep(due.next_in)
            fired = await self._schedules.fire_schedules(ready, decisions.fire_due)
            for schedule_id, why in fired.failed.items():
                log.error(
                    "schedule %r cannot be fired by this worker (%s); left to the others for %.0fs",
                    schedule_id,
                    why,
                    LEFT_ALONE,
                )
                self._left_alone[schedule_id] = now + LEFT_ALONE
            if fired.created:
                log.debug("schedules started %s", fired.created)
            if not fired.handled:  # another worker holds them (or they failed here)
                wait = self._sleep(due.next_in)
                held = any(i not in fired.failed for i in ready)
                return due, min(HELD_ELSEWHERE, wait) if held else wait

    def _sleep(self, next_in: timedelta | None) -> float:
        """Until the next due time, or the end of a schedule's time left alone, at most
        until the fallback look (``OTHERS_SEEN_WITHIN`` where other processes wake no
        one)."""
        longest = FALLBACK_POLL_SECONDS
        if not self._backend.wakes_other_processes:
            longest = max(self._poll, OTHERS_SEEN_WITHIN)
        soonest = [longest]
        if next_in is not None:
            soonest.append(next_in.total_seconds())
        if self._left_alone:
            soonest.append(min(self._left_alone.values()) - time.monotonic())
        return max(0.0, min(soonest))
