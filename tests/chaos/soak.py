"""The soak run: the chaos workload at a steady 80% of the highest rate the machine sustains.

First a ramp finds that rate (unless given): a burst of workflows is started at once and the
rate at which the machine works through it (90% of the burst over the time until 90% has
finished) is the saturated throughput. Then workflows are started at 80% of it for the
soak's duration, each with its event sent right after its start, and every
``sample_every`` seconds the run samples each worker process's memory (RSS) and open file
descriptors, the workers' database connections (pg_stat_activity), the backlog (started,
not finished) and the start-to-end latency of the workflows finished since the last sample.
At the end every invariant of the chaos run is checked on everything the soak ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tapeflow
from tests.chaos.checks import Answers, check_run, percentile
from tests.chaos.driver import Fleet, Plan, Probe, Report
from tests.chaos.ledger import Ledger
from tests.chaos.location import locate, with_application_name
from tests.chaos.workload import (
    EVENT_NAME,
    Go,
    event_value,
    expectations,
    kind,
    timer_ms,
    workflow_for,
    workflow_id,
)

PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Sample:
    at: float
    """Seconds since the soak began."""
    rss_mib: dict[int, float]
    fds: dict[int, int]
    connections: int
    started: int
    finished: int
    latency_p50: float
    latency_p99: float
    latency_max: float
    finished_in_window: int
    load: float
    """The machine's 1-minute load average."""

    @property
    def backlog(self) -> int:
        return self.started - self.finished


@dataclass
class SoakResult:
    max_rate: float
    rate: float
    samples: list[Sample] = field(default_factory=list)


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * PAGE / 2**20


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of value against seconds, per minute."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if not spread:
        return 0.0
    return 60 * sum((t - mean_t) * (v - mean_v) for t, v in points) / spread


class Soak:
    def __init__(
        self,
        url: str,
        log_dir: Path,
        seconds: float,
        rate: float | None,
        sample_every: float = 10.0,
        ramp_burst: int = 300,
        workers: int = 4,
    ) -> None:
        self.url = url
        self.seconds = seconds
        self.given_rate = rate
        self.sample_every = sample_every
        self.ramp_burst = ramp_burst
        self.application = locate(url).application_name or ""
        self.plan = Plan(
            url=url,
            workflows=0,
            rate=1.0,
            log_dir=log_dir,
            workers=workers,
            kill_every=None,
            worker_failpoints=(),
            client_failpoints=(),
        )
        self.probe = Probe(url)
        self.ledger = Ledger(url)
        self.deaths: list[str] = []
        self.fleet = Fleet(self.plan, url, lambda d: self.deaths.append(f"{d.pid}: {d.code}"))
        self.next_index = 0
        """How many workflows it started, of the indices in ``indices``."""
        self.indices: list[int] = []
        self.sends: dict[str, set[str]] = {}
        self.started = 0

    async def _start_one(self, client: tapeflow.Client) -> None:
        index = self.indices[-1] + 1 if self.indices else 0
        while kind(index) not in ("flow", "poisoned"):  # the soak runs the plain mix only
            index += 1
        self.indices.append(index)
        self.next_index += 1
        wid = workflow_id(index)
        await client.start_workflow(workflow_for(index), index, timer_ms(index), id=wid)
        send_id = f"s{index}x1e"
        self.sends[wid] = {send_id}
        await client.send_event(wid, EVENT_NAME, Go(send_id=send_id, value=event_value(index)))
        self.started += 1

    async def _wait_finished(self, count: int, timeout: float) -> list[float]:
        """Wait until ``count`` workflows have finished; the times the finished count
        passed each step (for the ramp)."""
        deadline = time.monotonic() + timeout
        marks: list[float] = []
        while True:
            finished = await self.probe.run(lambda i: i.finished_count())
            marks.extend([time.time()] * (finished - len(marks)))
            if finished >= count:
                return marks
            if time.monotonic() > deadline:
                raise AssertionError(f"only {finished} of {count} workflows finished in time")
            await asyncio.sleep(0.1)

    async def ramp(self, client: tapeflow.Client) -> float:
        """Workflows finished per second with a backlog to work through: a burst started at
        once, 90% of it divided by the time until 90% of it has finished (the workflows
        advance side by side and finish late and together, so only the whole span counts)."""
        before = self.next_index
        began = time.time()
        for _ in range(self.ramp_burst):
            await self._start_one(client)
        marks = await self._wait_finished(before + self.ramp_burst, 600)
        ninety = int(self.ramp_burst * 0.9)
        return ninety / max(marks[before + ninety - 1] - began, 1e-3)

    async def _sample(self, began: float, window_start: float) -> Sample:
        pids = self.fleet.pids()
        rss: dict[int, float] = {}
        fds: dict[int, int] = {}
        for pid in pids:
            with contextlib.suppress(OSError):
                rss[pid], fds[pid] = rss_mib(pid), fd_count(pid)
        app = self.application
        connections = await self.probe.run(lambda i: i.connections(app))
        finished = await self.probe.run(lambda i: i.finished_count())
        latencies = await self.probe.run(lambda i: i.latencies(window_start))
        return Sample(
            at=time.time() - began,
            rss_mib=rss,
            fds=fds,
            connections=connections,
            started=self.started,
            finished=finished,
            latency_p50=percentile(latencies, 0.5),
            latency_p99=percentile(latencies, 0.99),
            latency_max=max(latencies, default=0.0),
            finished_in_window=len(latencies),
            load=os.getloadavg()[0],
        )

    async def run(self) -> tuple[Report, SoakResult]:
        self.plan.log_dir.mkdir(parents=True, exist_ok=True)
        client_url = with_application_name(self.url, f"{self.application}-client")
        await asyncio.to_thread(self.ledger.create)
        async with tapeflow.connect(client_url) as backend:
            client = tapeflow.Client(backend)
            await self.fleet.start()
            try:
                max_rate = self.given_rate or await self.ramp(client)
                rate = 0.8 * max_rate if self.given_rate is None else self.given_rate
                result = SoakResult(max_rate=max_rate, rate=rate)
                await self._soak(client, result)
                await self._wait_finished(self.next_index, 600)
            finally:
                stopped = await self.fleet.stop()
        report = await self._check(result, stopped)
        return report, result

    async def _soak(self, client: tapeflow.Client, result: SoakResult) -> None:
        began = time.time()
        next_sample = began + self.sample_every
        window_start = began
        sent = 0
        while True:
            now = time.time()
            if now >= next_sample:
                sample = await self._sample(began, window_start)
                result.samples.append(sample)
                print(format_sample(sample), flush=True)
                window_start = next_sample
                next_sample += self.sample_every
            if now - began >= self.seconds:
                return
            due = began + sent / result.rate
            if now < due:
                await asyncio.sleep(min(due - now, max(0.0, next_sample - now)))
                continue
            await self._start_one(client)
            sent += 1

    async def _check(self, result: SoakResult, stopped: dict[int, Any]) -> Report:
        def read(i: Any) -> tuple[Any, Any, Any]:
            return i.workflows(), i.history(), i.leftovers()

        workflows, history_rows, leftovers = await self.probe.run(read)
        attempts = await asyncio.to_thread(self.ledger.attempts)
        ids = expectations(self.indices)
        outcome = await asyncio.to_thread(
            check_run, ids, workflows, history_rows, attempts, Answers(sends=self.sends), leftovers
        )
        violations = list(outcome.violations)
        violations.extend(f"worker died during the soak: {d}" for d in self.deaths)
        violations.extend(
            f"worker {pid} stopped with exit code {code}"
            for pid, (_, code) in stopped.items()
            if code != 0
        )
        figures: dict[str, Any] = {
            "max_rate_per_s": result.max_rate,
            "soak_rate_per_s": result.rate,
            "soak_seconds": self.seconds,
            "samples": len(result.samples),
        }
        figures.update(summarize(result.samples, self.sample_every))
        figures.update(outcome.figures)
        return Report("soak-postgres", figures, violations)

    async def close(self) -> None:
        await self.probe.close()
        await asyncio.to_thread(self.ledger.close)


def format_sample(sample: Sample) -> str:
    rss = " ".join(f"{v:6.1f}" for v in sample.rss_mib.values())
    fds = " ".join(f"{v:3d}" for v in sample.fds.values())
    return (
        f"t={sample.at:6.0f}s rss_mib=[{rss}] fds=[{fds}] db_conns={sample.connections:3d} "
        f"started={sample.started:6d} backlog={sample.backlog:5d} "
        f"latency p50={sample.latency_p50:6.2f}s p99={sample.latency_p99:6.2f}s "
        f"max={sample.latency_max:6.2f}s ({sample.finished_in_window} finished) "
        f"load={sample.load:.1f}"
    )


def summarize(samples: list[Sample], sample_every: float) -> dict[str, Any]:
    """Growth per minute of each worker's RSS and descriptors after the first minute (the
    pools fill up then), and of its RSS over the second half (once the workflow cache, 1,000
    instances, is full)."""
    settled = [s for s in samples if s.at > 60] or samples
    pids = sorted({pid for s in settled for pid in s.rss_mib})
    rss_growth = {
        pid: slope_per_minute([(s.at, s.rss_mib[pid]) for s in settled if pid in s.rss_mib])
        for pid in pids
    }
    fd_growth = {
        pid: slope_per_minute([(s.at, s.fds[pid]) for s in settled if pid in s.fds]) for pid in pids
    }
    half = [s for s in samples if s.at > samples[-1].at / 2] if samples else []
    late_growth = {
        pid: slope_per_minute([(s.at, s.rss_mib[pid]) for s in half if pid in s.rss_mib])
        for pid in pids
    }
    return {
        "rss_first_mib": [round(v, 1) for v in samples[0].rss_mib.values()] if samples else [],
        "rss_last_mib": [round(v, 1) for v in samples[-1].rss_mib.values()] if samples else [],
        "rss_growth_mib_per_min": {pid: round(v, 3) for pid, v in rss_growth.items()},
        "rss_growth_mib_per_min_max": max(rss_growth.values(), default=0.0),
        "rss_growth_mib_per_min_second_half": {pid: round(v, 3) for pid, v in late_growth.items()},
        "fd_growth_per_min_max": max(fd_growth.values(), default=0.0),
        "fds_max": max((max(s.fds.values(), default=0) for s in samples), default=0),
        "db_connections_max": max((s.connections for s in samples), default=0),
        "backlog_max": max((s.backlog for s in samples), default=0),
        "backlog_last": samples[-1].backlog if samples else 0,
        "latency_p50_s_median_window": percentile([s.latency_p50 for s in samples], 0.5),
        "latency_p99_s_worst_window": max((s.latency_p99 for s in samples), default=0.0),
        "latency_max_s": max((s.latency_max for s in samples), default=0.0),
        "load_average_mean": sum(s.load for s in samples) / len(samples) if samples else 0.0,
        "workflows_per_s_achieved": (
            sum(s.finished_in_window for s in samples) / (len(samples) * sample_every)
            if samples
            else 0.0
        ),
    }
