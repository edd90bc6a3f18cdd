"""Waiting, in tests, for a workflow to reach a point before the test acts on it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import tapeflow
from tapeflow.history import HistoryEvent


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 10) -> None:
    """Poll ``check`` until it holds; fail the test after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.01)


async def history(client: tapeflow.Client, workflow_id: str) -> list[HistoryEvent]:
    return await tapeflow.WorkflowDebugger(client.backend).history(workflow_id)


async def history_has(
    client: tapeflow.Client, workflow_id: str, found: Callable[[HistoryEvent], bool], count: int = 1
) -> None:
    """Wait until ``count`` events of the workflow's history satisfy ``found``."""

    async def check() -> bool:
        return sum(1 for event in await history(client, workflow_id) if found(event)) >= count

    await eventually(check, f"{workflow_id!r} has {count} such history event(s)")


async def has_run(client: tapeflow.Client, workflow_id: str) -> None:
    """Wait until a worker has committed the workflow's first task (it now waits)."""

    async def check() -> bool:
        return (await client.describe(workflow_id)).history_length > 0

    await eventually(check, f"{workflow_id!r} has run its first task")


async def task_error_of(client: tapeflow.Client, workflow_id: str, timeout: float = 8) -> str:
    """Wait until the workflow's task has failed; its error as ``describe()`` shows it."""

    async def failed() -> bool:
        return (await client.describe(workflow_id)).task_error is not None

    await eventually(failed, f"the task of {workflow_id!r} reports an error", timeout)
    error = (await client.describe(workflow_id)).task_error
    assert error is not None
    return error
