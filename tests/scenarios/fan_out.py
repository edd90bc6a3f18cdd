"""The concurrent tasks: schedule N activities at once, then await them all and sum."""

from __future__ import annotations

import asyncio

from tapeflow import activity, workflow


@activity.defn
def square(n: int) -> int:
    return n * n


@workflow.defn
async def sum_of_squares(count: int) -> int:
    results = await asyncio.gather(*(workflow.execute_activity(square, i) for i in range(count)))
    return sum(results)
