"""The examples run as their users run them: as programs, in their own processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SUBSCRIPTION = EXAMPLES / "subscription_with_debug"


def run(script: Path, *args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run an example to its end; its stdout, after checking that it succeeded."""
    done = subprocess.run(
        [sys.executable, str(script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert done.returncode == 0, f"{script.name} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.parametrize(
    ("failure_rate", "result", "last_cycle"),
    [
        ("0", "result: paid=103 overdue=0", "cycle_2_paid_amount=34"),
        ("1", "result: paid=0 overdue=103", 'cycle_2_err="payment failed"'),
    ],
)
def test_the_demo_shows_the_vars_then_the_result(
    tmp_path: Path, failure_rate: str, result: str, last_cycle: str
) -> None:
    args = ["--cycles", "3", "--duration", "0.2", "--failure-rate", failure_rate]
    out = run(SUBSCRIPTION / "demo.py", *args, cwd=tmp_path)
    assert "scheduled subscription-" in out
    assert "currentCycle=0" in out
    assert last_cycle in out
    assert "cycle_2_completed_at=" in out
    assert out.rstrip().endswith(result)


def test_the_demo_runs_twice_without_clashing(tmp_path: Path) -> None:
    for _ in range(2):
        out = run(SUBSCRIPTION / "demo.py", "--cycles", "1", "--duration", "0", cwd=tmp_path)
        assert "result: paid=" in out


def test_the_demo_runs_on_the_database_the_variable_names(tmp_path: Path) -> None:
    chosen = tmp_path / "chosen.db"
    env = {**os.environ, "TAPEFLOW_DATABASE_URL": f"sqlite:///{chosen}"}
    out = run(SUBSCRIPTION / "demo.py", "--cycles", "1", "--duration", "0", cwd=tmp_path, env=env)
    assert f"SQLiteBackend({str(chosen)!r})" in out
    assert chosen.exists()


def test_the_demo_on_postgresql_never_prints_the_password(
    tmp_path: Path, postgres_url: str
) -> None:
    parts = urlsplit(postgres_url)
    if parts.password is None:  # the local server trusts: any password is accepted
        where = f"{parts.username}:demo-secret@{parts.hostname}:{parts.port or 5432}"
        parts = parts._replace(netloc=where)
    env = {**os.environ, "TAPEFLOW_DATABASE_URL": urlunsplit(parts)}
    out = run(SUBSCRIPTION / "demo.py", "--cycles", "1", "--duration", "0", cwd=tmp_path, env=env)
    assert "on PostgresBackend('postgresql://" in out
    assert "result: paid=" in out
    assert str(parts.password) not in out


def test_the_demo_says_what_is_wrong_with_a_bad_url(tmp_path: Path) -> None:
    env = {**os.environ, "TAPEFLOW_DATABASE_URL": "postgresql://u:hidden-pw@127.0.0.1:1/db"}
    done = subprocess.run(
        [sys.executable, str(SUBSCRIPTION / "demo.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("tapeflow demo: cannot use PostgreSQL at postgresql://u:***@")
    assert "hidden-pw" not in done.stdout + done.stderr


def xorshift(seed: int, rounds: int) -> int:
    mask = (1 << 64) - 1
    x = seed & mask
    for _ in range(rounds):
        x ^= (x << 13) & mask
        x ^= x >> 7
        x ^= (x << 17) & mask
    return x


@pytest.mark.parametrize("seed", [100, 2])  # seed 2: a sum beyond 64 bits, kept exact
def test_sum2rn_prints_the_sum_of_both_numbers(tmp_path: Path, seed: int) -> None:
    out = run(EXAMPLES / "sum2rn" / "main.py", "--seed", str(seed), cwd=tmp_path)
    expected = xorshift(seed, 19) + xorshift(seed, 23)
    assert out.strip().endswith(f": {expected}")


def test_worker_and_client_programs_share_one_database(tmp_path: Path) -> None:
    env = {**os.environ, "TAPEFLOW_DATABASE_URL": f"sqlite:///{tmp_path / 'subscription.db'}"}
    worker = subprocess.Popen(
        [
            sys.executable,
            str(SUBSCRIPTION / "worker.py"),
            "--failure-rate",
            "0",
            "--lease-seconds",
            "5",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        client = SUBSCRIPTION / "client.py"
        args = ["--id", "sub-1", "--cycles", "2", "--duration", "0.3"]
        out = run(client, *args, cwd=tmp_path, env=env)
        assert "cycle_1_paid_amount=51" in out
        assert out.rstrip().endswith("result: paid=103 overdue=0")

        variables = json.loads(
            run(client, "--mode", "debug", "--id", "sub-1", cwd=tmp_path, env=env)
        )
        assert variables["paid"] == 103
        assert variables["currentCycle"] == 2
        assert variables["cycle_0_paid_amount"] == 52

        awaited = run(client, "--mode", "await", "--id", "sub-1", cwd=tmp_path, env=env)
        assert awaited.strip() == "result: paid=103 overdue=0"
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            log, _ = worker.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
            raise
    assert worker.returncode == 0, log
    assert f"worker {socket.gethostname()}:{worker.pid} started" in log  # named host:pid
    assert "stopped" in log


def test_order_fulfilment_compensates_a_cancelled_order(tmp_path: Path) -> None:
    out = run(EXAMPLES / "order_fulfilment" / "fulfilment.py", cwd=tmp_path)
    assert out.splitlines() == [
        "order-1: shipped, tracking TRK-order-1",
        "order-2: CancelledError: the customer changed their mind",
        "ship-order-2: cancelled, child of order-2",
        "stock put back: ['lamp', 'rug']",
        "audit-log: 2 entries in 3 runs: "
        "['order-1 shipped as TRK-order-1', 'order-2 cancelled, CH-order-2 refunded']",
    ]
