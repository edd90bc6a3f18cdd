"""One worker process of the suite, forked from a preloaded forkserver (see ``cluster``).

It runs a tapeflow Worker with every workload registered and talks over a pipe: it sends
``{"ready": stats}`` once started, then ``{"stats": stats}`` for each ``"stats"`` received;
``"stop"`` (or the pipe's end) stops it cleanly, after a last stats message. Stats are the
database calls this process counted and the workflow cache's hits and misses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
import threading
import time
from datetime import timedelta
from multiprocessing.connection import Connection
from typing import Any

import tapeflow
import tapeflow.backends.sqlite
from benchmarks import counting
from benchmarks.workloads import ACTIVITIES, WORKFLOWS

with contextlib.suppress(ImportError):  # the forkserver loads every module once, up front
    import tapeflow.backends.postgres


def _stats(worker: tapeflow.Worker) -> dict[str, Any]:
    return {
        **counting.snapshot(),
        "cache_hits": worker.cache.hits,
        "cache_misses": worker.cache.misses,
        "time": time.monotonic(),
        "pid": os.getpid(),
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def serve(url: str, options: dict[str, Any], pipe: Connection) -> None:
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[str] = asyncio.Queue()

    def listen() -> None:
        try:
            while True:
                loop.call_soon_threadsafe(commands.put_nowait, str(pipe.recv()))
        except (EOFError, OSError):
            loop.call_soon_threadsafe(commands.put_nowait, "stop")

    if url.startswith("postgres"):
        counting.count_psycopg()
    worker_options: dict[str, Any] = dict(options)
    if "poll_interval_ms" in worker_options:
        worker_options["poll_interval"] = timedelta(
            milliseconds=worker_options.pop("poll_interval_ms")
        )
    if worker_options.pop("metrics", False):
        worker_options["metrics_port"] = _free_port()
    async with tapeflow.connect(url) as backend:
        counting.count_sqlite(backend)
        worker = tapeflow.Worker(
            backend, workflows=WORKFLOWS, activities=ACTIVITIES, **worker_options
        )
        await worker.start()
        threading.Thread(target=listen, daemon=True, name="bench-pipe").start()
        pipe.send({"ready": _stats(worker)})
        try:
            while (command := await commands.get()) != "stop":
                if command == "stats":
                    pipe.send({"stats": _stats(worker)})
        finally:
            await worker.stop()
        pipe.send({"stats": _stats(worker)})


def child(url: str, options: dict[str, Any], pipe: Connection, log: str) -> None:
    """The process's entry point: logs (warnings and worse) go to ``log``."""
    with open(log, "ab", buffering=0) as err:
        os.dup2(err.fileno(), 2)
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, force=True)
    try:
        asyncio.run(serve(url, options, pipe))
    finally:
        pipe.close()
