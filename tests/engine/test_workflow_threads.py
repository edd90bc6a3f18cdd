"""The engine threads that run workflow code: results and errors come back to the awaiting
task, and work that blocks past the timeout fails alone while the rest goes on."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

from tapeflow._worker.workflow_threads import ThreadRefused, ThreadTimeout, WorkflowThreads


async def test_results_and_errors_reach_their_own_callers() -> None:
    threads = WorkflowThreads(2, timeout=5)
    try:

        def fails() -> int:
            raise ValueError("bad")

        def square(n: int) -> Callable[[], int]:
            return lambda: n * n

        outcomes = await asyncio.gather(
            *(threads.run(square(n)) for n in range(200)),
            threads.run(fails),
            return_exceptions=True,
        )
    finally:
        threads.close()
    assert outcomes[:200] == [n * n for n in range(200)]
    assert isinstance(outcomes[200], ValueError)


async def test_work_runs_off_the_event_loop() -> None:
    threads = WorkflowThreads(1, timeout=5)
    try:
        assert await threads.run(threading.get_ident) != threading.get_ident()
    finally:
        threads.close()


async def test_blocking_work_times_out_and_the_rest_goes_on() -> None:
    release = threading.Event()
    threads = WorkflowThreads(1, timeout=0.2)  # one thread: the blocker holds it until replaced
    try:
        blocked = asyncio.ensure_future(threads.run(lambda: release.wait(10)))
        await asyncio.sleep(0.01)
        started = time.monotonic()
        after = await asyncio.wait_for(threads.run(lambda: "next"), 5)
        with pytest.raises(ThreadTimeout):
            await blocked
        assert after == "next"
        assert time.monotonic() - started < 2
        assert await threads.run(lambda: "again") == "again"  # the replacement thread stays
    finally:
        release.set()
        threads.close()


async def test_a_cancelled_caller_drops_the_result() -> None:
    threads = WorkflowThreads(1, timeout=5)
    gate = threading.Event()
    try:
        waiting = asyncio.ensure_future(threads.run(lambda: gate.wait(5)))
        await asyncio.sleep(0.01)
        waiting.cancel()
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert await threads.run(lambda: 7) == 7  # the engine goes on
    finally:
        threads.close()


async def until(condition: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_a_key_stuck_on_a_thread_is_refused_until_that_thread_returns() -> None:
    release = threading.Event()
    changes: list[int] = []
    threads = WorkflowThreads(
        1, timeout=0.1, on_abandoned=lambda: changes.append(threads.abandoned)
    )
    try:
        with pytest.raises(ThreadTimeout):
            await threads.run(lambda: release.wait(10), key="spinner")
        assert threads.abandoned == 1
        with pytest.raises(ThreadRefused, match="still runs"):
            await threads.run(lambda: "again", key="spinner")
        assert await threads.run(lambda: "other", key="bystander") == "other"
        release.set()
        await until(lambda: threads.abandoned == 0)
        assert await threads.run(lambda: "again", key="spinner") == "again"
        await until(lambda: changes == [1, 0])
    finally:
        release.set()
        threads.close()


async def test_with_max_abandoned_threads_stuck_nothing_runs_until_one_returns() -> None:
    release = threading.Event()
    threads = WorkflowThreads(1, timeout=0.1, max_abandoned=1)
    try:
        blocked = asyncio.ensure_future(threads.run(lambda: release.wait(10), key="a"))
        queued = asyncio.ensure_future(threads.run(lambda: "queued before", key="b"))
        with pytest.raises(ThreadTimeout):
            await blocked
        with pytest.raises(ThreadRefused, match="1 threads"):
            await queued  # it waited behind the blocker: the replacement thread refuses it
        assert threads.full
        with pytest.raises(ThreadRefused, match="the most it allows"):
            await threads.run(lambda: "after", key="c")
        release.set()
        await until(lambda: not threads.full)
        assert await threads.run(lambda: "after", key="c") == "after"
    finally:
        release.set()
        threads.close()
