"""``/metrics`` and ``/healthz`` on the worker's ``metrics_port``, served on its own loop.

A small Starlette app (prometheus_client's exposition and one JSON route beside it) run
by uvicorn as a task of the worker's event loop: no thread, and both paths on one port,
which prometheus_client's ``start_http_server`` (a thread, /metrics alone) cannot give.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tapeflow._worker.prometheus import PrometheusMetrics


def health(metrics: PrometheusMetrics, refusal: str | None) -> dict[str, Any]:
    """The /healthz body: healthy while the backend answers claims, the pollers run and
    workflow tasks are taken (see ``Worker.health()``)."""
    last = metrics.last_claim
    polling = metrics.pollers > 0
    return {
        "healthy": metrics.connected and polling and refusal is None,
        "connected": metrics.connected,
        "polling": polling,
        "last_claim_at": None if last is None else datetime.fromtimestamp(last, UTC).isoformat(),
        "reason": refusal,
    }


def app(metrics: PrometheusMetrics, refusal: Callable[[], str | None]) -> Starlette:
    async def healthz(request: Request) -> JSONResponse:
        body = health(metrics, refusal())
        return JSONResponse(body, status_code=200 if body["healthy"] else 503)

    async def exposition(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/healthz", healthz), Route("/metrics", exposition)])


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """The worker's own SIGINT and SIGTERM handlers stay: it stops this server."""
        yield


class MetricsServer:
    def __init__(self, metrics: PrometheusMetrics, refusal: Callable[[], str | None], port: int):
        # Bound here, so a port in use fails the worker's start (uvicorn would exit).
        self._socket = socket.create_server(("", port), reuse_port=False)
        config = uvicorn.Config(app(metrics, refusal), log_level="warning", lifespan="off")
        self._server = _Server(config)
        self._task = asyncio.create_task(
            self._server.serve([self._socket]), name="tapeflow-metrics"
        )

    async def stop(self) -> None:
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._socket.close()
