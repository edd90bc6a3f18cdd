"""The sum2rn: two activities draw xorshift64 numbers from one seed (19 and 23
rounds); the workflow returns their sum, which needs more than 64 bits."""

from __future__ import annotations

import asyncio

from tapeflow import activity, workflow

MASK64 = (1 << 64) - 1


def xorshift64(seed: int, rounds: int) -> int:
    x = seed & MASK64
    for _ in range(rounds):
        x ^= (x << 13) & MASK64
        x ^= x >> 7
        x ^= (x << 17) & MASK64
    return x


@activity.defn
def random_19(seed: int) -> int:
    return xorshift64(seed, 19)


@activity.defn
async def random_23(seed: int) -> int:
    return xorshift64(seed, 23)


@workflow.defn
async def sum2rn(seed: int) -> int:
    first, second = await asyncio.gather(
        workflow.execute_activity(random_19, seed),
        workflow.execute_activity(random_23, seed),
    )
    return first + second
