"""``python -m benchmarks.sqlite_cross_process``: how soon a worker in another process takes
new work on one SQLite file, with and without the wake-up datagrams
(``tapeflow.backends.sqlite.peer_wakeups``), and what they cost a process alone.

    .venv/bin/python -m benchmarks.sqlite_cross_process --samples 100

For each mode, on a fresh file: one worker process (``--poll-interval-ms``, the library's
default 500 ms unless told), and this process starting 1-activity workflows one at a time,
a random pause of up to one poll interval between them (so that a start falls anywhere in
the worker's idle wait). From just before ``start_workflow``: *pickup* to the worker's claim
of the workflow's first task (its ``WorkflowTaskStarted`` time), *activity* to the moment
the activity starts in the worker (all on the wall clock of this one machine), *result* to
``result()`` returning here. Median and p95 of each, in ms.

*Without* is today's polling alone: ``peer_wakeups.supported`` patched to False in both
processes. The cost is N starts (10 in flight) on a file of their own: with the wake-ups
off, on with no other process on the file (no sends), and on with one idle peer process
(every turn of the loop that committed sends it a datagram); the modes alternate. Then the
CPU that telling costs a commit's turn of the loop, with no peers and with one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import tapeflow
from tapeflow import activity, workflow
from tapeflow.backends.sqlite import peer_wakeups
from tapeflow.history import WorkflowTaskStarted

ROOT = Path(__file__).resolve().parent.parent


@activity.defn
def started_at() -> float:
    return time.time()


@workflow.defn
async def pickup() -> float:
    return await workflow.execute_activity(started_at)


@workflow.defn
async def nothing() -> None:
    """Started by the cost phase, run by no one."""


def _without_wakeups() -> None:
    peer_wakeups.supported = lambda: False


async def _serve(url: str, poll_ms: float, wakeups: bool, run_worker: bool) -> None:
    if not wakeups:
        _without_wakeups()
    async with tapeflow.connect(url) as backend:
        if not run_worker:  # an idle peer: open on the file until SIGTERM, nothing more
            stop = asyncio.Event()
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
            await stop.wait()
            return
        worker = tapeflow.Worker(
            backend,
            workflows=[pickup],
            activities=[started_at],
            poll_interval=timedelta(milliseconds=poll_ms),
        )
        await worker.run()


@contextlib.asynccontextmanager
async def _process(
    url: str, poll_ms: float, wakeups: bool, run_worker: bool = True
) -> AsyncIterator[asyncio.subprocess.Process]:
    args = [url, str(poll_ms), "1" if wakeups else "0", "1" if run_worker else "0"]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.sqlite_cross_process", "--serve", *args, cwd=ROOT
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()


def _ms(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"median {statistics.median(ordered) * 1000:7.1f} ms, p95 {p95 * 1000:7.1f} ms"


async def latency(directory: Path, samples: int, poll_ms: float, wakeups: bool) -> str:
    url = f"sqlite:///{directory / ('woken.db' if wakeups else 'polled.db')}"
    async with tapeflow.connect(url) as backend, _process(url, poll_ms, wakeups):
        client = tapeflow.Client(backend)
        warm = await client.start_workflow(pickup, id="warm-up")
        await warm.result(timeout=60)
        pickups, activities, results = [], [], []
        for n in range(samples):
            await asyncio.sleep(random.uniform(0, poll_ms / 1000))
            before = time.time()
            handle = await client.start_workflow(pickup, id=f"sample-{n}")
            began = await handle.result(timeout=60)
            results.append(time.time() - before)
            activities.append(began - before)
            history = await backend.load_history(handle.id)
            claimed = next(e for e in history if isinstance(e, WorkflowTaskStarted))
            pickups.append(claimed.at.timestamp() - before)
    mode = "with wake-ups" if wakeups else "without wake-ups"
    return (
        f"{mode}:\n  pickup   {_ms(pickups)}\n  activity {_ms(activities)}\n"
        f"  result   {_ms(results)}"
    )


async def _starts(url: str, count: int) -> float:
    async with tapeflow.connect(url) as backend:
        client = tapeflow.Client(backend)
        await client.start_workflow(nothing, id="first")
        began = time.monotonic()
        for first in range(0, count, 10):
            await asyncio.gather(
                *(client.start_workflow(nothing, id=f"w{n}") for n in range(first, first + 10))
            )
        return count / (time.monotonic() - began)


async def _starts_without_wakeups(url: str, count: int) -> float:
    saved = peer_wakeups.supported
    _without_wakeups()
    try:
        return await _starts(url, count)
    finally:
        peer_wakeups.supported = saved


async def _starts_with_a_peer(url: str, count: int) -> float:
    async with _process(url, 500, True, run_worker=False):
        await asyncio.sleep(1.0)  # it has opened and bound its socket
        return await _starts(url, count)


async def cost(directory: Path, count: int, rounds: int) -> list[str]:
    """Each mode once a round, alternated, on a new file each time: the median of rounds."""
    modes = {
        "wake-ups off": _starts_without_wakeups,
        "wake-ups on, no peers": _starts,
        "wake-ups on, 1 idle peer": _starts_with_a_peer,
    }
    rates: dict[str, list[float]] = {mode: [] for mode in modes}
    for round_ in range(rounds):
        for n, (mode, measure) in enumerate(modes.items()):
            url = f"sqlite:///{directory / f'cost-{round_}-{n}.db'}"
            rates[mode].append(await measure(url, count))
    return [
        f"  {mode + ':':26} {statistics.median(r):5.0f} starts/s ({min(r):.0f}-{max(r):.0f})"
        for mode, r in rates.items()
    ]


async def _turns(count: int, tell: Callable[[], None]) -> float:
    """Seconds per turn of the loop that calls ``tell`` (the send runs in that turn): the
    best of 10 stretches, since other processes on the machine only ever add to it."""
    stretches = []
    for _ in range(10):
        began = time.perf_counter()
        for _ in range(count // 10):
            tell()
            await asyncio.sleep(0)
        stretches.append((time.perf_counter() - began) / (count // 10))
    return min(stretches)


async def send_cost(directory: Path, count: int = 20_000) -> list[str]:
    """The CPU a commit's turn of the loop spends telling peers, in this process: the
    end-to-end rates above move more with the machine than with that."""
    database = directory / "send.db"
    topics = ["workflow:pickup", "finished:sample-12"]
    wakeups = peer_wakeups.PeerWakeups(str(database), lambda _: None, lambda: None)
    wakeups.open()
    try:
        await asyncio.sleep(peer_wakeups.SETTLED_NS / 1e9 + 0.1)  # the listing can be kept
        empty = await _turns(count, lambda: None)
        alone = await _turns(count, lambda: wakeups.tell(topics)) - empty
        async with _process(f"sqlite:///{database}", 500, True, run_worker=False):
            for _ in range(600):  # until it has bound its socket (a minute at most)
                if len(os.listdir(wakeups.directory)) >= 2:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(peer_wakeups.SETTLED_NS / 1e9 + 1.0)
            peer = await _turns(count, lambda: wakeups.tell(topics)) - empty
    finally:
        wakeups.close()
    return [
        f"  {'telling no peers:':26} {alone * 1e6:5.1f} us per commit turn",
        f"  {'telling 1 idle peer:':26} {peer * 1e6:5.1f} us per commit turn",
    ]


async def main(samples: int, poll_ms: float, starts: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="tapeflow-xproc-") as scratch:
        directory = Path(scratch)
        print(f"{samples} samples, worker poll interval {poll_ms:g} ms")
        for wakeups in (False, True):
            print(await latency(directory, samples, poll_ms, wakeups), flush=True)
        print(f"cost to one process: {starts} starts, 10 in flight, median of {rounds}")
        for line in await cost(directory, starts, rounds):
            print(line, flush=True)
        for line in await send_cost(directory):
            print(line, flush=True)


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--poll-interval-ms", type=float, default=500.0)
    parser.add_argument("--starts", type=int, default=2000, help="starts in the cost phase")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the cost phase")
    parser.add_argument("--serve", nargs=4, help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    args = _parse()
    if args.serve:
        url, poll_ms, wakeups, run_worker = args.serve
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(url, float(poll_ms), wakeups == "1", run_worker == "1"))
    else:
        asyncio.run(main(args.samples, args.poll_interval_ms, args.starts, args.rounds))
