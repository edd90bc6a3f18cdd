"""The backend's time as a worker knows it between readings."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from tapeflow.backends.clock import Clock


class BackendClock:
    """The last time the backend reported (a claim's ``claimed_at``) plus the monotonic time
    since: workflow time stays the backend's even when the worker's wall clock is wrong.
    A backend whose clock is read in this process (``LocalClock``: SQLite, or a test's
    virtual clock, which jumps) gives it, and it is read instead."""

    def __init__(self, exact: Clock | None = None) -> None:
        self._exact = exact
        self._reading: tuple[datetime, float] | None = None

    def observe(self, backend_time: datetime) -> None:
        self._reading = (backend_time, time.monotonic())

    def now(self) -> datetime | None:
        """None until the backend has reported its time once (unless it is exact)."""
        if self._exact is not None:
            return self._exact()
        if self._reading is None:
            return None
        at, then = self._reading
        return at + timedelta(seconds=time.monotonic() - then)
