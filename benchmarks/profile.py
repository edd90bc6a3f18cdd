"""``./scripts/bench --profile``: one throughput run (1-activity workflows) with py-spy
sampling the first worker process, and the CPU time of every process taking part.

py-spy (``pip install py-spy`` into the venv; not a dependency of the project) samples every
thread of the worker, idle ones included, at ``RATE`` Hz; the raw stacks are written beside
the figures with ``--out`` (``profile-<backend>.txt``, for flamegraph tools) and summed up:
how much of the time each thread waits, and where the busy samples are, by module and by
function (printed, and written to ``profile-<backend>.json`` in benchmarks/results or --out).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tapeflow
from benchmarks import counting
from benchmarks.cluster import delta, total_stats, workers
from benchmarks.cpu import cpu_seconds, machine_busy_seconds, postgres_pids
from benchmarks.databases import fresh
from benchmarks.scenarios import Settings, drive

RATE = 200
RESULTS = Path(__file__).resolve().parent / "results"
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^():]*)(?::\d+)?\)$")

CATEGORIES: list[tuple[str, str]] = [
    # (a fragment of the file of the innermost frame that matches, category)
    ("psycopg_pool", "psycopg_pool (connection pool)"),
    ("psycopg", "psycopg (driver: send, receive, adapt rows)"),
    ("sqlite3", "sqlite3"),
    ("json/", "json"),
    ("pydantic", "pydantic (typed conversion)"),
    ("tapeflow/_engine", "engine (activate, commands, loop)"),
    ("tapeflow/history.py", "history codec (events to and from JSON)"),
    ("tapeflow/converter.py", "converter (values to and from JSON)"),
    ("tapeflow/backends", "backend (queries, rows)"),
    ("tapeflow/_worker", "worker (pollers, task runners, leases)"),
    ("tapeflow/worker.py", "worker (pollers, task runners, leases)"),
    ("tapeflow/", "tapeflow, other"),
    ("asyncio/", "asyncio event loop"),
    ("selectors.py", "asyncio event loop"),
    ("concurrent/futures", "thread pool hand-offs"),
    ("threading.py", "thread pool hand-offs"),
    ("queue.py", "thread pool hand-offs"),
    ("logging/", "logging"),
    ("benchmarks/", "benchmark harness"),
]
IDLE_LEAVES = ("selectors.py", "threading.py", "queue.py", "multiprocessing/connection.py")
"""An innermost frame in one of these is a thread waiting: for I/O (the event loop's select:
database round trips in flight, nothing else to do), for work (a pool thread) or for the
suite's commands (the pipe)."""
IDLE_FUNCTIONS = ("_worker",)
"""Innermost functions that block in C code: a pool thread's queue get."""
KEY_FUNCTIONS = (
    "claim_workflow_tasks",
    "commit_workflow_task",
    "claim_activity_tasks",
    "complete_activity_task",
    "continue_after_activity",
    "_wake",
    "load_history",
    "next_due",
    "extend_leases",
    "activate",
    "replay_new",
    "encode_event",
    "decode_event",
    "decode_incoming",
    "to_json",
    "from_json",
    "_listen",
)


@dataclass
class Sample:
    thread: str
    frames: list[tuple[str, str]]
    """(function, file), outermost first."""
    count: int

    @property
    def idle(self) -> bool:
        if not self.frames:
            return False
        function, file = self.frames[-1]
        return file.endswith(IDLE_LEAVES) or function.rpartition(".")[2] in IDLE_FUNCTIONS


def parse_raw(text: str) -> list[Sample]:
    samples = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        thread, *frames = stack.split(";")
        parsed = []
        for frame in frames:
            match = FRAME.match(frame)
            if match:
                parsed.append((match["function"], match["file"]))
        name = thread.partition(": ")[2] or thread
        samples.append(Sample(re.sub(r"_\d+$", "_N", name), parsed, int(count)))
    return samples


def category(frames: list[tuple[str, str]]) -> str:
    for _, file in reversed(frames):
        for fragment, name in CATEGORIES:
            if fragment in file:
                return name
    return f"other ({frames[-1][1] if frames else '?'})"


def summarise(samples: list[Sample]) -> dict[str, Any]:
    threads: dict[str, dict[str, int]] = {}
    for sample in samples:
        entry = threads.setdefault(sample.thread, {"samples": 0, "idle": 0})
        entry["samples"] += sample.count
        entry["idle"] += sample.count if sample.idle else 0
    busy = [s for s in samples if not s.idle]
    total = sum(s.count for s in busy) or 1
    categories: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for sample in busy:
        categories[category(sample.frames)] += sample.count
        if sample.frames:
            function, file = sample.frames[-1]
            leaves[f"{function} ({_short(file)})"] += sample.count
        for name in {f for f, _ in sample.frames if f.rpartition(".")[2] in KEY_FUNCTIONS}:
            inclusive[name] += sample.count
    return {
        "threads": threads,
        "busy_samples": total,
        "categories": _shares(categories, total),
        "leaf_functions": _shares(leaves, total, 15),
        "inclusive": _shares(inclusive, total),
    }


def _short(file: str) -> str:
    for marker in ("site-packages/", "src/", "lib/python3.11/"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


def _shares(counter: Counter[str], total: int, top: int | None = None) -> list[list[Any]]:
    return [[name, n, round(100 * n / total, 1)] for name, n in counter.most_common(top)]


def find_pyspy() -> str | None:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return found if Path(found).exists() else None


async def run(
    backend_kind: str, args: argparse.Namespace, settings: Settings, scratch: Path
) -> int:
    pyspy = find_pyspy()
    if pyspy is None:
        print("--profile needs py-spy: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    out = args.out or scratch
    out.mkdir(parents=True, exist_ok=True)
    raw = out / f"profile-{backend_kind}.txt"
    count = settings.sizes.throughput
    with fresh(backend_kind, args.postgres_url, scratch) as db:
        async with workers(
            db.url, settings.workers, settings.worker_options, settings.logs
        ) as procs:
            backend = await tapeflow.connect(db.url)
            counting.count_sqlite(backend)
            try:
                client = tapeflow.Client(backend)
                await drive(client, 1, min(count, 50), settings)  # warm up, pools filled
                watched = {
                    "workers": [p.pid for p in procs],
                    "client (benchmark process)": [os.getpid()],
                    "postgres backends": postgres_pids(db),
                }
                every = [pid for pids in watched.values() for pid in pids]
                spy = await asyncio.create_subprocess_exec(
                    pyspy, "record", "--pid", str(procs[0].pid), "--rate", str(RATE),
                    "--format", "raw", "--threads", "--idle", "--output", str(raw),
                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
                )  # fmt: skip
                await asyncio.sleep(0.5)  # py-spy attached
                cpu_before, busy_before = cpu_seconds(every), machine_busy_seconds()
                stats_before = await total_stats(procs)
                began, _, ended = await drive(client, 1, count, settings)
                joined = [p for p in postgres_pids(db) if p not in every]  # pools grew
                cpu_after, busy_after = cpu_seconds(every + joined), machine_busy_seconds()
                watched["postgres backends"] += joined
                stats_after = await total_stats(procs)
                spy.send_signal(signal.SIGINT)
                await asyncio.wait_for(spy.communicate(), 60)
            finally:
                await backend.close()
    wall = ended - began
    cpu = {
        role: sum(cpu_after.get(p, 0.0) - cpu_before.get(p, 0.0) for p in pids)
        for role, pids in watched.items()
    }
    cpu["everything else on the machine"] = busy_after - busy_before - sum(cpu.values())
    result = {
        "backend": backend_kind,
        "workflows": count,
        "seconds": wall,
        "workflows_per_s": count / wall,
        "cpu_seconds": cpu,
        "workers_counted": delta(stats_after, stats_before),
        "cores": os.cpu_count(),
        "profile": summarise(parse_raw(raw.read_text())),
        "raw": str(raw),
    }
    results = args.out or RESULTS
    (results / f"profile-{backend_kind}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(render(result))
    return 0


def render(result: dict[str, Any]) -> str:
    lines = [
        f"{result['workflows']} one-activity workflows on {result['backend']} in "
        f"{result['seconds']:.2f}s ({result['workflows_per_s']:,.0f}/s); py-spy at {RATE} Hz "
        f"on worker 0: {result['raw']}",
        "",
        f"CPU seconds during the run (wall {result['seconds']:.2f}s x {result['cores']} cores "
        f"= {result['seconds'] * (result['cores'] or 1):.2f} available):",
    ]
    lines += [f"  {role}: {sec:.2f}" for role, sec in result["cpu_seconds"].items()]
    counted = result["workers_counted"]
    lines += [
        "",
        f"Workers: {counted['queries']} queries, {counted['transactions']} transactions, "
        f"workflow cache {counted['cache_hits']} hits / {counted['cache_misses']} misses",
    ]
    profile = result["profile"]
    lines += ["", "Worker 0 threads (samples, waiting %):"]
    for name, entry in profile["threads"].items():
        waiting = 100 * entry["idle"] / max(1, entry["samples"])
        lines.append(f"  {name}: {entry['samples']} samples, {waiting:.0f}% waiting")
    for title, key in (
        ("Busy samples by where the innermost frame is", "categories"),
        ("Top innermost functions (busy samples)", "leaf_functions"),
        ("Inclusive share of busy samples, key functions", "inclusive"),
    ):
        lines += ["", f"{title} (of {profile['busy_samples']}):"]
        lines += [f"  {pct:5.1f}%  {name}" for name, _, pct in profile[key]]
    return "\n".join(lines)
