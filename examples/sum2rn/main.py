"""sum2rn: two activities draw a pseudo-random number each from one seed; the workflow adds them.

One process: a worker and a client on a fresh SQLite database (or --url).

    python examples/sum2rn/main.py --seed 100
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import tapeflow
from tapeflow import activity, workflow

MASK64 = (1 << 64) - 1


@dataclass
class Seed:
    value: int


def generate_number(seed: int, rounds: int) -> int:
    """``rounds`` steps of the 64-bit xorshift generator (13, 7, 17) from ``seed``."""
    x = seed & MASK64
    for _ in range(rounds):
        x ^= (x << 13) & MASK64
        x ^= x >> 7
        x ^= (x << 17) & MASK64
    return x


@activity.defn(name="GenerateRandomNumberActivity1")
def generate_random_number_1(seed: Seed) -> int:
    return generate_number(seed.value, 19)


@activity.defn(name="GenerateRandomNumberActivity2")
def generate_random_number_2(seed: Seed) -> int:
    return generate_number(seed.value, 23)


@workflow.defn(name="Sum2RandomNumberWorkflow")
async def sum_2_random_numbers(seed: Seed) -> int:
    first = await workflow.execute_activity(generate_random_number_1, seed)
    second = await workflow.execute_activity(generate_random_number_2, seed)
    return first + second


async def main(url: str, seed: int) -> int:
    async with (
        tapeflow.connect(url) as backend,
        tapeflow.Worker(
            backend,
            workflows=[sum_2_random_numbers],
            activities=[generate_random_number_1, generate_random_number_2],
        ),
    ):
        handle = await tapeflow.Client(backend).start_workflow(
            sum_2_random_numbers, Seed(seed), id=f"sum2rn-{uuid.uuid4().hex[:8]}", version="1"
        )
        total = await handle.result(timeout=30)
    print(f"sum of the two random numbers from seed {seed}: {total}")
    return total


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=100, help="the seed (default: 100)")
    parser.add_argument("--url", help="database URL (default: a fresh temporary SQLite file)")
    args = parser.parse_args()
    if args.url:
        asyncio.run(main(args.url, args.seed))
    else:
        with tempfile.TemporaryDirectory(prefix="tapeflow-sum2rn-") as directory:
            asyncio.run(main(f"sqlite:///{Path(directory) / 'sum2rn.db'}", args.seed))
