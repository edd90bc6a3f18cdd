"""The backend's clock: the time that decides claims, leases, timers and retries.

PostgreSQL's is the database server's, read inside its statements: a worker only estimates
it between readings (``tapeflow._worker.clock``). SQLite's is read in the process that
opened the file, so a worker can read it directly (``LocalClock``); and it may be given
another one, which a test moves: ``tapeflow.testing.WorkflowEnvironment`` runs on a
virtual clock, moved when the backend's ``Agenda`` says nothing runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

Clock = Callable[[], datetime]
"""What time it is: tz-aware, never going back."""


def wall_clock() -> datetime:
    return datetime.now(UTC)


@runtime_checkable
class LocalClock(Protocol):
    """The optional capability of a backend whose clock is read in this process: a worker
    reads it instead of estimating it from the times its claims return."""

    @property
    def clock(self) -> Clock: ...


@dataclass(frozen=True)
class Agenda:
    """What a backend holds for workers, as of its clock, read in one transaction: what a
    test's clock needs to know to move without breaking anything (no lease runs out
    under a task that is running, no timer is passed over)."""

    held: int
    """Tasks leased now, workflow and activity: running, or about to."""
    due: datetime | None
    """When the earliest task not leased is, or was, due; None if there is none."""

    def idle(self, now: datetime) -> bool:
        """Whether nothing runs and nothing is due at ``now``: only time moves things on."""
        return self.held == 0 and (self.due is None or self.due > now)
