"""The benchmark suite runs, with tiny sizes, and prints its table (not the figures' worth:
``./scripts/bench`` is run by hand). It writes into a temporary folder, never over
docs/performance.png or benchmarks/results/latest.json. The chart needs matplotlib (the
``[bench]`` extra), which the test run does not install: without it there is no chart."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conformance.plugin import unavailable
from tests.conftest import POSTGRES_URL

ROOT = Path(__file__).resolve().parents[1]


def _need_postgres(reachable: bool) -> None:
    """Skip without a PostgreSQL to run on, or fail under CI=true."""
    if not reachable:
        unavailable("postgres", f"unreachable at {POSTGRES_URL}")


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_suite_runs_with_tiny_sizes_and_prints_its_table(
    backend: str, tmp_path: Path, postgres_reachable: bool
) -> None:
    if backend == "postgres":
        _need_postgres(postgres_reachable)
    command = [
        sys.executable,
        "-m",
        "benchmarks",
        "--quick",
        f"--backend={backend}",
        "--poll-interval-ms=20",
        f"--postgres-url={POSTGRES_URL}",
        "--timeout=60",
        f"--out={tmp_path}",
    ]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=100, check=False
    )
    assert done.returncode == 0, f"the suite failed:\n{done.stdout}\n{done.stderr}"

    assert "| Figure |" in done.stdout
    for row in ("Throughput, 1-activity", "Latency start to result", "Idle worker"):
        assert row in done.stdout, done.stdout
    summary = json.loads((tmp_path / "latest.json").read_text())["summary"][backend]
    assert summary["throughput_1_workflows_per_s"] > 0
    assert summary["latency_median_ms"] > 0
    assert summary["history_ratio"] > 0
    assert summary["counted_transactions_per_workflow_1"] > 0
    if importlib.util.find_spec("matplotlib") is not None:  # the [bench] extra
        assert (tmp_path / "performance.png").stat().st_size > 0


def test_the_visibility_benchmark_runs_and_drops_its_schema(postgres_reachable: bool) -> None:
    _need_postgres(postgres_reachable)
    command = [
        sys.executable,
        "-m",
        "benchmarks.visibility",
        "--rows=2000",
        "--repeat=1",
        f"--postgres-url={POSTGRES_URL}",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=100, check=False, env=env
    )
    assert done.returncode == 0, f"the benchmark failed:\n{done.stdout}\n{done.stderr}"
    for row in ("2,000 runs inserted", "vars customer = c42", "a page half-way down"):
        assert row in done.stdout, done.stdout


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_schedules_benchmark_runs_and_prints_its_lateness(
    backend: str, postgres_reachable: bool
) -> None:
    if backend == "postgres":
        _need_postgres(postgres_reachable)
    command = [
        sys.executable,
        "-m",
        "benchmarks.schedules",
        f"--backend={backend}",
        "--workers=1",
        "--schedules=2",
        "--seconds=3.5",
        f"--postgres-url={POSTGRES_URL}",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=100, check=False, env=env
    )
    assert done.returncode == 0, f"the benchmark failed:\n{done.stdout}\n{done.stderr}"
    for row in ("| 1 schedule: fired after due |", "2 schedules due together: first task ran"):
        assert row in done.stdout, done.stdout


def test_the_observability_benchmark_runs_every_setting() -> None:
    command = [sys.executable, "-m", "benchmarks.observability", "--workflows", "3"]
    done = subprocess.run(
        [*command, "--rounds", "1"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    for setting in ("off", "otel-api", "metrics", "tracing", "both"):
        assert f"| {setting} |" in done.stdout


def test_the_sqlite_cross_process_benchmark_runs_and_prints_its_latencies() -> None:
    command = [
        sys.executable,
        "-m",
        "benchmarks.sqlite_cross_process",
        "--samples=3",
        "--poll-interval-ms=100",
        "--starts=20",
        "--rounds=1",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=100, check=False, env=env
    )
    assert done.returncode == 0, f"the benchmark failed:\n{done.stdout}\n{done.stderr}"
    for row in ("without wake-ups:", "with wake-ups:", "pickup", "wake-ups on, 1 idle peer:"):
        assert row in done.stdout, done.stdout


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_growth_benchmark_fills_measures_explains_and_deletes(
    backend: str, tmp_path: Path, postgres_reachable: bool
) -> None:
    if backend == "postgres":
        _need_postgres(postgres_reachable)
    out = tmp_path / "growth.json"
    command = [
        sys.executable,
        "-m",
        "benchmarks.growth",
        f"--backend={backend}",
        "--closed=2000",
        "--fill-batch=700",
        "--throughput=20",
        "--latency-samples=5",
        "--latency-warmup=1",
        "--pairs=1",
        "--workers=1",
        f"--postgres-url={POSTGRES_URL}",
        f"--json={out}",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=200, check=False, env=env
    )
    assert done.returncode == 0, f"the benchmark failed:\n{done.stdout}\n{done.stderr}"
    figures = json.loads(out.read_text())
    per = figures["bytes_per_workflow"]
    assert per["workflows"]["total"] > 0
    assert per["history"]["total"] > 0
    assert figures["summary"]["workflows_per_s"]["full"] > 0
    assert set(figures["plans"]) >= {"next_due_workflow", "next_due_activity"}
    assert figures["closed_scans"] == [], figures["plans"]
    # The fill spans 10 days and retention keeps 9: about a tenth of it goes.
    assert 150 <= figures["retention"]["deleted"] <= 250
    assert figures["retention"]["finished"]
