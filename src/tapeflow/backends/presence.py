"""Which workers run, and what each runs: the rows behind the UI's workers page and the
CLI's ``tapeflow workers``.

A worker says who it is when it starts, again every ``REPORT_EVERY`` while it runs, and
that it stopped when it stops; one that dies says nothing more, so its row goes silent.
Times are the database's clock, as every other time the backends keep.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

REPORT_EVERY = timedelta(seconds=10)
"""How often a running worker says it is still there."""

SILENT_AFTER = timedelta(seconds=30)
"""A worker not heard from for this long (three reports missed) is taken for dead."""

FORGET_AFTER = timedelta(days=7)
"""Rows of workers not heard from for this long are deleted by the next report."""


@dataclass(frozen=True)
class WorkerInfo:
    """What a running worker says of itself."""

    id: str
    """Unique per started worker (its lease owner), even when several share a name."""
    name: str
    host: str
    pid: int
    workflows: tuple[str, ...]
    activities: tuple[str, ...]
    max_workflow_tasks: int
    max_activities: int
    version: str
    """The tapeflow version the worker runs."""

    def to_json(self) -> dict[str, Any]:
        """What is stored beside the id: everything but it."""
        return {
            "name": self.name,
            "host": self.host,
            "pid": self.pid,
            "workflows": list(self.workflows),
            "activities": list(self.activities),
            "max_workflow_tasks": self.max_workflow_tasks,
            "max_activities": self.max_activities,
            "version": self.version,
        }

    @classmethod
    def from_json(cls, worker_id: str, data: dict[str, Any]) -> WorkerInfo:
        return cls(
            id=worker_id,
            name=str(data["name"]),
            host=str(data["host"]),
            pid=int(data["pid"]),
            workflows=tuple(data["workflows"]),
            activities=tuple(data["activities"]),
            max_workflow_tasks=int(data["max_workflow_tasks"]),
            max_activities=int(data["max_activities"]),
            version=str(data["version"]),
        )


@dataclass(frozen=True)
class WorkerRecord:
    """A worker as the backend last heard of it."""

    info: WorkerInfo
    started_at: datetime
    last_seen_at: datetime
    stopped_at: datetime | None
    """When it said it stopped; None while it runs, or if it died without saying."""
    silent_for: timedelta
    """Since ``last_seen_at``, on the database's clock."""

    @property
    def state(self) -> str:
        """``running``, ``stopped``, or ``silent`` (not heard from in ``SILENT_AFTER``: it
        died, or cannot reach the database)."""
        if self.stopped_at is not None:
            return "stopped"
        return "silent" if self.silent_for > SILENT_AFTER else "running"


@runtime_checkable
class WorkerPresence(Protocol):
    """The optional capability of keeping which workers run."""

    async def report_worker(self, info: WorkerInfo) -> None:
        """The worker ``info.id`` runs now (its first report also sets ``started_at``);
        forgets workers silent for ``FORGET_AFTER``. Raises BackendUnavailable."""
        ...

    async def report_worker_stopped(self, worker_id: str) -> None:
        """The worker stopped cleanly. Raises BackendUnavailable."""
        ...

    async def list_workers(self, seen_within: timedelta) -> list[WorkerRecord]:
        """The workers heard from within ``seen_within``, the most recently started first."""
        ...
