"""The sum2rn: two pseudo-random numbers from one seed, summed exactly, however big."""

from __future__ import annotations

import pytest

import tapeflow
from tests.conftest import WorkerFactory
from tests.scenarios.sum2rn import random_19, random_23, sum2rn


def xorshift(seed: int, rounds: int) -> int:
    """An independent reference: 64-bit xorshift (13, 7, 17)."""
    x = seed
    for _ in range(rounds):
        x = (x ^ (x << 13)) % 2**64
        x = x ^ (x >> 7)
        x = (x ^ (x << 17)) % 2**64
    return x


@pytest.mark.parametrize("seed", [1, 42, 2**64 - 1])
async def test_sum2rn_returns_the_exact_sum_of_both_numbers(
    client: tapeflow.Client, worker: WorkerFactory, seed: int
) -> None:
    expected = xorshift(seed, 19) + xorshift(seed, 23)
    async with worker(workflows=[sum2rn], activities=[random_19, random_23]):
        handle = await client.start_workflow(sum2rn, seed, id=f"sum2rn-{seed}")
        assert await handle.result(timeout=10) == expected


async def test_integers_beyond_64_bits_round_trip(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    seed = 7  # both draws then need the 64th bit, and their sum a 65th
    first, second = xorshift(seed, 19), xorshift(seed, 23)
    assert first >= 2**63, "the draw needs the 64th bit"
    assert second >= 2**63, "the draw needs the 64th bit"
    async with worker(workflows=[sum2rn], activities=[random_19, random_23]):
        total = await (await client.start_workflow(sum2rn, seed, id="big")).result(timeout=10)
    assert total == first + second
    assert total >= 2**64
