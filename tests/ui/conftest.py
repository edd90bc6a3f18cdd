"""A UI server on a free port, a worker, and headless Chromium (the system's: Playwright's
own download is not used). With CI=true a missing browser fails the run."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlencode

import pytest
import uvicorn
from playwright.async_api import Browser, Dialog, Page, async_playwright
from starlette.types import ASGIApp

import tapeflow
import tapeflow.ui
from tests.conformance.plugin import in_ci
from tests.ui import workflows

CHROMIUM_VARIABLE = "TAPEFLOW_TEST_CHROMIUM"


def chromium_path() -> str:
    found = os.environ.get(CHROMIUM_VARIABLE) or next(
        filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None
    )
    if found is None:
        reason = f"no Chromium found (scripts/test installs Debian's; or set ${CHROMIUM_VARIABLE})"
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    return found


@dataclass
class UI:
    url: str
    client: tapeflow.Client

    def workflow(self, workflow_id: str, at: int | None = None) -> str:
        query = {"id": workflow_id, **({} if at is None else {"at": str(at)})}
        return f"{self.url}/workflow?{urlencode(query)}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def running(app: ASGIApp) -> AsyncIterator[str]:
    """``app`` served on a free loopback port, in a task of the test's loop: its URL."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


@pytest.fixture
async def ui(backend: tapeflow.Backend, backend_url: str) -> AsyncIterator[UI]:
    """The UI over the test's database (each backend's: the conformance plugin gives
    ``backend_url``), started with the tests' workflows, and a worker."""
    app = tapeflow.ui.app(backend_url, modules=[workflows])
    worker = tapeflow.Worker(
        backend,
        workflows=workflows.WORKFLOWS,
        activities=workflows.ACTIVITIES,
        poll_interval=timedelta(milliseconds=50),
    )
    async with worker, running(app) as url:
        yield UI(url, tapeflow.Client(backend))


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    executable = chromium_path()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable, headless=True)
        yield launched
        await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    opened = await context.new_page()
    yield opened
    await context.close()


@pytest.fixture
def dialogs(page: Page) -> list[str]:
    """Messages of every alert, confirm or prompt the page opens (each dismissed)."""
    seen: list[str] = []

    async def dismiss(dialog: Dialog) -> None:
        seen.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", dismiss)
    return seen
