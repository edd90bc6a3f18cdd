"""``Worker(metrics_port=...)``: /metrics for Prometheus and /healthz, on every backend."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

import tapeflow
from tapeflow.errors import InvalidArgument
from tests.conftest import WorkerFactory
from tests.observed_workflows import broken, double, doubled, fails_once, retried


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def get(port: int, path: str) -> tuple[int, str]:
    return await asyncio.to_thread(_get, f"http://127.0.0.1:{port}{path}")


def samples(text: str) -> dict[str, float]:
    """``name{labels}`` to value, from Prometheus' text format."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


async def test_the_counters_move_and_the_worker_is_healthy(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    port = free_port()
    key = f"k-{port}"
    async with worker(
        workflows=[doubled, retried, broken], activities=[double, fails_once], metrics_port=port
    ) as running:
        assert await (await client.start_workflow(doubled, 3)).result(timeout=10) == 6
        assert await (await client.start_workflow(doubled, 4)).result(timeout=10) == 8
        assert await (await client.start_workflow(retried, key)).result(timeout=10) == "ok"
        with pytest.raises(tapeflow.WorkflowFailed):
            await (await client.start_workflow(broken, 1)).result(timeout=10)
        status, body = await get(port, "/healthz")
        assert status == 200, body
        health = json.loads(body)
        assert (health["healthy"], health["connected"], health["polling"]) == (True, True, True)
        assert health["last_claim_at"] is not None
        assert health["reason"] is None
        # A result can be read the moment its commit is: the worker counts the ending
        # after its commit returns, so the last one shows a moment later.
        last = 'tapeflow_workflows_closed_total{status="failed",workflow="broken"}'
        for _ in range(100):
            status, text = await get(port, "/metrics")
            if status != 200 or last in samples(text):
                break
            await asyncio.sleep(0.05)
        assert running.health().accepting_workflow_tasks
    assert status == 200
    seen = samples(text)
    assert seen['tapeflow_workflows_started_total{workflow="doubled"}'] == 2
    assert seen['tapeflow_workflows_closed_total{status="completed",workflow="doubled"}'] == 2
    assert seen['tapeflow_workflows_closed_total{status="completed",workflow="retried"}'] == 1
    assert seen['tapeflow_workflows_closed_total{status="failed",workflow="broken"}'] == 1
    assert seen['tapeflow_activity_attempts_total{activity="fails_once",outcome="retried"}'] == 1
    assert seen['tapeflow_activity_attempts_total{activity="fails_once",outcome="completed"}'] == 1
    assert seen['tapeflow_activity_attempts_total{activity="double",outcome="completed"}'] == 2
    assert seen['tapeflow_activity_seconds_count{activity="double"}'] == 2
    assert seen['tapeflow_activity_seconds_count{activity="fails_once"}'] == 2
    assert seen['tapeflow_workflow_task_seconds_count{workflow="doubled"}'] >= 2
    assert seen['tapeflow_commit_seconds_count{kind="activity"}'] == 3
    assert seen['tapeflow_claim_seconds_count{kind="workflow"}'] >= 1
    cache = ("tapeflow_workflow_cache_hits_total", "tapeflow_workflow_cache_misses_total")
    assert sum(seen[name] for name in cache) >= 1


async def test_two_workers_in_one_process_keep_their_own_metrics(
    backend: tapeflow.Backend,
) -> None:
    first, second = free_port(), free_port()
    async with (
        tapeflow.Worker(backend, workflows=[doubled], metrics_port=first),
        tapeflow.Worker(backend, activities=[double], metrics_port=second),
    ):
        for _ in range(100):  # until each has claimed once
            healths = [json.loads((await get(p, "/healthz"))[1]) for p in (first, second)]
            if all(h["last_claim_at"] for h in healths):
                break
            await asyncio.sleep(0.05)
        _, one = await get(first, "/metrics")
        _, other = await get(second, "/metrics")
    claims = 'tapeflow_claim_seconds_count{kind="workflow"}'
    assert samples(one)[claims] >= 1
    assert samples(other)[claims] == 0  # its own registry: it claims only activities


async def test_a_port_in_use_fails_the_start(backend: tapeflow.Backend) -> None:
    with socket.create_server(("", 0)) as taken:
        port = taken.getsockname()[1]
        worker = tapeflow.Worker(backend, workflows=[doubled], metrics_port=port)
        with pytest.raises(OSError, match="in use"):
            await worker.start()
    assert worker.health().reason == "this worker is not running"


@pytest.mark.parametrize("port", [-1, 0, 65536, "x", 1.5, True])
def test_a_bad_metrics_port_is_refused(port: object) -> None:
    with pytest.raises(InvalidArgument, match=r"WorkerOptions\.metrics_port"):
        tapeflow.WorkerOptions(metrics_port=port)  # type: ignore[arg-type]


def test_without_a_port_no_prometheus_is_imported() -> None:
    code = (
        "import sys, tapeflow\n"
        "from tapeflow._worker.metrics import metrics_for\n"
        "metrics_for(None)\n"
        "assert 'prometheus_client' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_a_failed_claim_or_no_poller_is_unhealthy() -> None:
    from tapeflow._worker.metrics_http import health
    from tapeflow._worker.prometheus import PrometheusMetrics
    from tapeflow.backends.base import TaskKind

    metrics = PrometheusMetrics()
    assert not health(metrics, None)["healthy"]  # no poller running yet
    metrics.polling(TaskKind.WORKFLOW, True)
    metrics.claimed(TaskKind.WORKFLOW, 0.001, 0)
    assert health(metrics, None)["healthy"]
    assert not health(metrics, "threads are stuck")["healthy"]
    metrics.claim_failed(TaskKind.WORKFLOW)
    assert health(metrics, None) | {"last_claim_at": None} == {
        "healthy": False,
        "connected": False,
        "polling": True,
        "last_claim_at": None,
        "reason": None,
    }
