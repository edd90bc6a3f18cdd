"""Bystanders: workflows that run beside a hostile case and must finish, whatever it does."""

from __future__ import annotations

import asyncio

import tapeflow
from tests.scenarios.hostile import steady


async def start_bystanders(
    client: tapeflow.Client, tag: str, count: int = 3
) -> list[tapeflow.WorkflowHandle[int]]:
    return [await client.start_workflow(steady, n, id=f"{tag}-bystander-{n}") for n in range(count)]


async def bystanders_finish(
    handles: list[tapeflow.WorkflowHandle[int]], timeout: float = 8
) -> None:
    """Every bystander completes with its own result: nothing lost or stuck beside the case."""
    results = await asyncio.gather(
        *(handle.result(timeout=timeout) for handle in handles), return_exceptions=True
    )
    assert results == [2 * n for n in range(len(handles))], "bystanders did not all finish"
