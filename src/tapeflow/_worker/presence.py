"""Tells the backend this worker runs, and what it runs, on a slow loop of its own."""

from __future__ import annotations

import asyncio
import os
import socket
from typing import TYPE_CHECKING

import tapeflow
from tapeflow._worker.log_context import worker_logger
from tapeflow.backends.presence import REPORT_EVERY, WorkerInfo, WorkerPresence

if TYPE_CHECKING:
    from tapeflow.worker import Worker

log = worker_logger()


def worker_info(worker: Worker) -> WorkerInfo:
    return WorkerInfo(
        id=worker.lease_owner,
        name=worker.name,
        host=socket.gethostname(),
        pid=os.getpid(),
        workflows=tuple(sorted(worker.workflows)),
        activities=tuple(sorted(worker.activities)),
        max_workflow_tasks=worker.options.max_concurrent_workflow_tasks,
        max_activities=worker.options.max_concurrent_activities,
        version=tapeflow.__version__,
    )


class Presence:
    """Reports at start and every ``REPORT_EVERY``; a report that fails (the backend is
    down) is logged and made again next time, never in the pollers' way. ``stop`` says the
    worker stopped, once, if the backend can hear it."""

    def __init__(self, backend: WorkerPresence, info: WorkerInfo) -> None:
        self._backend = backend
        self._info = info
        self._warned = False

    async def run(self) -> None:
        """Report until cancelled."""
        while True:
            try:
                await self._backend.report_worker(self._info)
                self._warned = False
            except Exception as exc:
                if not self._warned:  # once per outage: the pollers log the outage itself
                    log.warning("reporting worker %s failed (%s)", self._info.id, exc)
                    self._warned = True
            await asyncio.sleep(REPORT_EVERY.total_seconds())

    async def stop(self) -> None:
        """Best effort, and bounded: a backend that cannot hear it must not hold up the
        worker's stop (its row then goes silent instead)."""
        try:
            async with asyncio.timeout(REPORT_EVERY.total_seconds()):
                await self._backend.report_worker_stopped(self._info.id)
        except Exception as exc:
            log.warning("reporting worker %s stopped failed (%s)", self._info.id, exc)
