"""Workflows that the metrics and tracing tests both observe: one that completes, one whose
activity fails once and is retried, one that fails."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import tapeflow
from tapeflow import activity, workflow

RETRY = tapeflow.RetryPolicy(initial_interval=timedelta(milliseconds=20), maximum_attempts=3)
_attempts: Counter[str] = Counter()


@activity.defn
def double(x: int) -> int:
    return 2 * x


@activity.defn
def fails_once(key: str) -> str:
    """Fails on its first attempt for ``key``: give each test a key of its own."""
    _attempts[key] += 1
    if _attempts[key] == 1:
        raise ConnectionError("first attempt fails")
    return "ok"


@workflow.defn
async def doubled(x: int) -> int:
    return await workflow.execute_activity(double, x)


@workflow.defn
async def retried(key: str) -> str:
    return await workflow.execute_activity(fails_once, key, retry=RETRY)


@workflow.defn
async def broken(x: int) -> int:
    raise ValueError("this workflow fails")
