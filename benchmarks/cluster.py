"""Worker processes for a measurement. They are forked from a forkserver that has already
imported tapeflow and the workloads, so one starts in milliseconds, not in a second."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
from collections.abc import AsyncIterator, Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import tapeflow
from benchmarks import worker_proc

START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0

_forkserver = multiprocessing.get_context("forkserver")
_forkserver.set_forkserver_preload(["benchmarks.worker_proc"])


class WorkerProcess:
    def __init__(self, process: BaseProcess, pipe: Connection, log: Path) -> None:
        self.process = process
        self.pipe = pipe
        self.log = log

    @property
    def pid(self) -> int:
        pid = self.process.pid
        assert pid is not None
        return pid

    async def _message(self, key: str, timeout: float) -> dict[str, Any]:
        def receive() -> Any:
            if not self.pipe.poll(timeout):
                raise TimeoutError(f"worker process {self.pid} sent no {key!r} in {timeout}s")
            return self.pipe.recv()

        while True:
            try:
                message = await asyncio.to_thread(receive)
            except (EOFError, OSError):
                self.process.join(1)
                log = self.log.read_text()[-3000:] if self.log.exists() else ""
                raise RuntimeError(
                    f"worker process {self.pid} ended early (exit {self.process.exitcode});"
                    f" its log, {self.log}:\n{log}"
                ) from None
            if isinstance(message, dict) and key in message:
                value: dict[str, Any] = message[key]
                return value

    async def stats(self) -> dict[str, Any]:
        self.pipe.send("stats")
        return await self._message("stats", STOP_TIMEOUT)

    async def stop(self) -> dict[str, Any] | None:
        """Stop cleanly and return the last stats; kill it if it does not stop in time."""
        stats = None
        with contextlib.suppress(TimeoutError, RuntimeError, OSError):
            self.pipe.send("stop")
            stats = await self._message("stats", STOP_TIMEOUT)
        await asyncio.to_thread(self.process.join, STOP_TIMEOUT)
        if self.process.is_alive():
            self.process.kill()
            await asyncio.to_thread(self.process.join)
        self.pipe.close()
        return stats


def spawn(url: str, options: dict[str, Any], log: Path) -> WorkerProcess:
    ours, theirs = _forkserver.Pipe()
    process = _forkserver.Process(
        target=worker_proc.child, args=(url, options, theirs, str(log)), daemon=True
    )
    process.start()
    theirs.close()
    return WorkerProcess(process, ours, log)


@contextlib.asynccontextmanager
async def workers(
    url: str, count: int, options: dict[str, Any], logs: Path
) -> AsyncIterator[Sequence[WorkerProcess]]:
    """``count`` worker processes, started and ready; stopped (or killed) on exit."""
    if url.startswith("sqlite"):
        # Make the file and its schema first: a new SQLite file opened by several processes
        # at once can fail ("database is locked" from PRAGMA journal_mode = WAL).
        async with tapeflow.connect(url):
            pass
    started: list[WorkerProcess] = []
    try:
        for index in range(count):
            started.append(spawn(url, options, logs / f"worker-{index}.log"))
        await asyncio.gather(*(w._message("ready", START_TIMEOUT) for w in started))
        yield started
    finally:
        await asyncio.gather(*(w.stop() for w in started))


async def total_stats(processes: Sequence[WorkerProcess]) -> dict[str, int]:
    """Counters summed over the processes."""
    total: dict[str, int] = {}
    for stats in await asyncio.gather(*(p.stats() for p in processes)):
        for key in ("queries", "transactions", "cache_hits", "cache_misses"):
            total[key] = total.get(key, 0) + int(stats[key])
    return total


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {key: after[key] - before.get(key, 0) for key in after}
