"""``./scripts/bench``: run the suite, print the figures, write the JSON and the chart."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import counting, peers, report, scenarios
from benchmarks.databases import DEFAULT_POSTGRES_URL, fresh, postgres_reachable
from benchmarks.scenarios import QUICK, Figures, Settings, Sizes

ROOT = Path(__file__).resolve().parent.parent
PHASES = ("throughput", "latency", "timer", "history", "idle", "peers")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench",
        description="tapeflow's benchmark suite: throughput, latency, timers, history length, "
        "idle cost and commits per workflow, on SQLite and PostgreSQL. Every figure is the "
        "median of --runs runs, each on a fresh database.",
    )
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument(
        "--size", type=float, default=1.0, help="scale of every size (1: the issue's sizes)"
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median kept)")
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes and one run: a smoke run of seconds"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SIZE=N",
        help="override one size after --size/--quick, e.g. history_long=3000 (one of: "
        + ", ".join(f.name for f in dataclasses.fields(Sizes))
        + ")",
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument(
        "--max-workflow-tasks", type=int, default=50, help="per worker (library default: 100)"
    )
    parser.add_argument(
        "--max-activities", type=int, default=50, help="per worker (library default: 100)"
    )
    parser.add_argument(
        "--poll-interval-ms",
        type=float,
        default=50.0,
        help="workers' poll interval (library default: 500 ms); only SQLite, which has no "
        "wake-ups across processes, depends on it",
    )
    parser.add_argument(
        "--metrics",
        action="store_true",
        help="workers record metrics and serve them (metrics_port, a free port each): "
        "their cost, against a run without",
    )
    parser.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"comma-separated subset of {','.join(PHASES)} (commits come with throughput)",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("TAPEFLOW_BENCH_POSTGRES_URL")
        or os.environ.get("TAPEFLOW_TEST_POSTGRES_URL")
        or DEFAULT_POSTGRES_URL,
        help="server and database; each measurement makes (and drops) a schema of its own",
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="longest wait (s) for one measurement"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="write latest.json, performance.png and the worker logs here instead of "
        "benchmarks/results/latest.json and docs/performance.png",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="instead of the suite: one throughput run with py-spy on a worker process",
    )
    args = parser.parse_args(argv)
    phases = [p for p in args.phases.split(",") if p]
    unknown = set(phases) - set(PHASES)
    if unknown:
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")
    args.phases = phases
    if args.quick:
        args.runs = 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    if "postgres" in backends:
        why = postgres_reachable(args.postgres_url)
        if why is not None:
            print(f"PostgreSQL at {args.postgres_url} is unreachable: {why}", file=sys.stderr)
            return 2
        counting.count_psycopg()
    scratch = Path(tempfile.mkdtemp(prefix="tapeflow-bench-"))
    logs = (args.out / "logs") if args.out else scratch / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    sizes = QUICK if args.quick else Sizes().scaled(args.size)
    for assignment in args.set:
        name, _, value = assignment.partition("=")
        kind = {f.name: f.type for f in dataclasses.fields(Sizes)}.get(name)
        if kind is None:
            print(f"--set: no size named {name!r}", file=sys.stderr)
            return 2
        typed: Any = float(value) if kind == "float" else int(value)
        sizes = dataclasses.replace(sizes, **{name: typed})
    options: dict[str, Any] = {
        "max_concurrent_workflow_tasks": args.max_workflow_tasks,
        "max_concurrent_activities": args.max_activities,
    }
    if args.poll_interval_ms > 0:
        options["poll_interval_ms"] = args.poll_interval_ms
    if args.metrics:
        options["metrics"] = True
    settings = Settings(
        sizes=sizes,
        workers=args.workers,
        worker_options=options,
        logs=logs,
        timeout=args.timeout,
    )
    if args.profile:
        from benchmarks import profile

        return asyncio.run(profile.run(backends[-1], args, settings, scratch))
    began = time.monotonic()
    host = machine(args.postgres_url if "postgres" in backends else None)
    runs: dict[str, dict[str, list[Figures]]] = {}
    complete = True
    try:
        asyncio.run(_suite(backends, args, settings, scratch, runs))
    except Exception:
        traceback.print_exc()
        print(f"the suite failed; worker logs are in {logs}", file=sys.stderr)
        complete = False
    backends = [backend for backend in backends if runs.get(backend)]
    summary = {backend: summarise(runs[backend]) for backend in backends}
    results = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - began, 1),
        "machine": host,
        "settings": {
            "backends": backends,
            "runs": args.runs,
            "quick": args.quick,
            "size": args.size,
            "sizes": sizes.__dict__,
            "workers": args.workers,
            "worker_options": options,
            "start_concurrency": settings.start_concurrency,
            "phases": args.phases,
        },
        "summary": summary,
        "complete": complete,
        "runs": runs,
    }
    # An interrupted suite keeps what it measured, beside the last complete figures.
    name = "latest.json" if complete else "partial.json"
    json_path = (args.out or ROOT / "benchmarks" / "results") / name
    chart_path = (args.out or ROOT / "docs") / (
        "performance.png" if complete else "performance.partial.png"
    )
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    chart_path.parent.mkdir(parents=True, exist_ok=True)
    charted = report.chart(summary, chart_path)
    print(report.table(summary, backends))
    print(f"\n{results['seconds']} s; figures in {json_path}", end="")
    print(
        f", chart in {chart_path}"
        if charted
        else "; no chart: matplotlib is missing (pip install -e '.[bench]')"
    )
    if not args.out:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0 if complete else 1


async def _suite(
    backends: list[str],
    args: argparse.Namespace,
    settings: Settings,
    scratch: Path,
    results: dict[str, dict[str, list[Figures]]],
) -> None:
    """Run every measurement, adding its figures to ``results`` as it goes."""
    plan: list[tuple[str, Callable[..., Any], dict[str, Any]]] = []
    if "throughput" in args.phases:
        plan += [
            ("throughput_1", scenarios.throughput, {"steps": 1}),
            ("throughput_n", scenarios.throughput, {"steps": settings.sizes.steps}),
        ]
    if "latency" in args.phases:
        plan.append(("latency", scenarios.latency, {}))
    if "timer" in args.phases:
        plan.append(("timer", scenarios.timers, {}))
    if "history" in args.phases:
        sizes = settings.sizes
        plan += [
            ("history", scenarios.history, {"processes": 1, "long": sizes.history_long}),
            (
                "history_shared",
                scenarios.history,
                {"processes": settings.workers, "long": sizes.history_long_shared},
            ),
        ]
    if "idle" in args.phases:
        plan.append(("idle", scenarios.idle, {}))
    if "peers" in args.phases:
        plan += [
            ("peers_throughput_1", peers.throughput, {"steps": 1}),
            ("peers_throughput_n", peers.throughput, {"steps": 10}),
            ("peers_latency", peers.latency, {"in_process": True}),
            ("peers_latency_process", peers.latency, {"in_process": False}),
        ]
    for backend in backends:
        results[backend] = {}
        if backend == "postgres" and "throughput" in args.phases:
            with fresh(backend, args.postgres_url, scratch) as db:
                settings.calibration[backend] = await scenarios.calibrate(db, settings)
        for name, scenario, kwargs in plan:
            runs = args.runs
            if name.startswith("history") and settings.sizes.history_runs:
                runs = settings.sizes.history_runs
            for run in range(runs):
                print(f"== {backend} {name} run {run + 1}/{runs}", file=sys.stderr)
                with fresh(backend, args.postgres_url, scratch) as db:
                    figures = await scenario(db, settings, **kwargs)
                results[backend].setdefault(name, []).append(figures)
                print(f"   {report.brief(name, figures)}", file=sys.stderr)


def _median(runs: list[Figures], *path: str) -> float | None:
    values = []
    for figures in runs:
        value: Any = figures
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, int | float):
            values.append(float(value))
    return statistics.median(values) if values else None


def summarise(runs: dict[str, list[Figures]]) -> dict[str, float | None]:
    """The median over the runs of each figure of the table."""
    t1, tn = runs.get("throughput_1", []), runs.get("throughput_n", [])
    lat, tim, his, idl = (runs.get(k, []) for k in ("latency", "timer", "history", "idle"))
    shared = runs.get("history_shared", [])
    p1, pn = runs.get("peers_throughput_1", []), runs.get("peers_throughput_n", [])
    plat, pproc = runs.get("peers_latency", []), runs.get("peers_latency_process", [])
    return {
        "throughput_1_workflows_per_s": _median(t1, "workflows_per_s"),
        "throughput_n_activities_per_s": _median(tn, "activities_per_s"),
        "throughput_n_workflows_per_s": _median(tn, "workflows_per_s"),
        "latency_median_ms": _median(lat, "median_ms"),
        "latency_p95_ms": _median(lat, "p95_ms"),
        "timer_late_median_ms": _median(tim, "median_ms"),
        "timer_late_p95_ms": _median(tim, "p95_ms"),
        "history_short_ms_per_activity": _median(his, "short", "ms_per_activity"),
        "history_long_ms_per_activity": _median(his, "long", "ms_per_activity"),
        "history_ratio": _median(his, "ratio"),
        "history_long_finished": _median(his, "long", "finished"),
        "history_short_activities": _median(his, "short", "activities"),
        "history_long_activities": _median(his, "long", "activities"),
        "shared_workers": _median(shared, "workers"),
        "shared_short_ms_per_activity": _median(shared, "short", "ms_per_activity"),
        "shared_long_ms_per_activity": _median(shared, "long", "ms_per_activity"),
        "shared_long_activities": _median(shared, "long", "activities"),
        "shared_ratio": _median(shared, "ratio"),
        "shared_cache_miss_share": _median(shared, "long", "cache_miss_share"),
        "instance_events": _median(his, "instance", "events"),
        "instance_kept_kib": _kib(_median(his, "instance", "kept_bytes")),
        "instance_peak_kib": _kib(_median(his, "instance", "peak_bytes")),
        "replay_us_per_event": _median(his, "instance", "replay_us_per_event"),
        "idle_queries_per_s": _median(idl, "queries_per_s"),
        "idle_server_transactions_per_s": _median(idl, "server_transactions_per_s"),
        "transactions_per_workflow_1": _median(t1, "server_transactions_per_workflow"),
        "transactions_per_workflow_n": _median(tn, "server_transactions_per_workflow"),
        "counted_transactions_per_workflow_1": _median(t1, "counted_transactions_per_workflow"),
        "counted_transactions_per_workflow_n": _median(tn, "counted_transactions_per_workflow"),
        "worker_transactions_per_workflow_1": _median(t1, "worker_transactions_per_workflow"),
        "worker_transactions_per_workflow_n": _median(tn, "worker_transactions_per_workflow"),
        "queries_per_workflow_1": _median(t1, "counted_queries_per_workflow"),
        "queries_per_workflow_n": _median(tn, "counted_queries_per_workflow"),
        "peers_throughput_1_workflows_per_s": _median(p1, "workflows_per_s"),
        "peers_throughput_n_activities_per_s": _median(pn, "activities_per_s"),
        "peers_latency_median_ms": _median(plat, "median_ms"),
        "peers_latency_p95_ms": _median(plat, "p95_ms"),
        "peers_latency_process_median_ms": _median(pproc, "median_ms"),
        "peers_latency_process_p95_ms": _median(pproc, "p95_ms"),
    }


def _git(*args: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
        )
    except OSError:
        return ""
    return done.stdout.strip()


def _kib(value: float | None) -> float | None:
    return None if value is None else value / 1024


def machine(postgres_url: str | None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": os.getloadavg(),
        "git": _git("rev-parse", "--short", "HEAD"),
        "src_uncommitted_changes": bool(_git("status", "--porcelain", "src")),
    }
    if postgres_url:
        import psycopg

        with psycopg.connect(postgres_url) as conn:
            row = conn.execute("SELECT current_setting('server_version'), current_setting('fsync')")
            version, fsync = row.fetchone() or ("?", "?")
        info["postgres"] = {"version": version, "fsync": fsync}
    return info
