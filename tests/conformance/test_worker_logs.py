"""The worker's log: its records say which workflow, run, activity and attempt they are
about, and a workflow's lifecycle is logged (start, end with its error, retries, an
activity's final failure with its traceback)."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

import tapeflow
from tapeflow import activity, workflow
from tapeflow._worker.log_context import FIELDS
from tests.conftest import WorkerFactory

TRIES: dict[str, int] = {}


@activity.defn
def flaky(key: str) -> str:
    """Fails on its first attempt."""
    TRIES[key] = TRIES.get(key, 0) + 1
    if TRIES[key] == 1:
        raise ConnectionError("the service blinked")
    return "ok"


@activity.defn
def broken() -> None:
    raise tapeflow.NonRetryableError("card declined")


@workflow.defn
async def charge(key: str) -> str:
    fast = tapeflow.RetryPolicy(initial_interval=timedelta(milliseconds=50))
    done = await workflow.execute_activity(flaky, key, retry=fast)
    await workflow.execute_activity(broken)
    return done


async def test_records_carry_their_task_and_the_lifecycle_is_logged(
    client: tapeflow.Client, worker: WorkerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    key = f"charge-{id(caplog)}"
    with caplog.at_level(logging.INFO, "tapeflow.worker"):
        async with worker(workflows=[charge], activities=[flaky, broken]):
            handle = await client.start_workflow(charge, key, id=key)
            with pytest.raises(tapeflow.WorkflowFailed):
                await handle.result(timeout=20)
    mine = [r for r in caplog.records if getattr(r, "workflow_id", None) == key]
    said = {r.getMessage().split(":")[0]: r for r in mine}

    started = said[f"workflow {key!r} (charge) started"]
    assert started.run == handle.run_id  # type: ignore[attr-defined]
    retry = next(r for r in mine if "failed on attempt 1, retrying at" in r.getMessage())
    assert (retry.activity, retry.attempt) == ("flaky", 1)  # type: ignore[attr-defined]
    final = next(r for r in mine if "failed for good" in r.getMessage())
    assert (final.activity, final.attempt, final.levelno) == ("broken", 1, logging.WARNING)  # type: ignore[attr-defined]
    assert "Traceback" in final.getMessage()  # where it failed, in the activity's code
    ended = next(r for r in mine if r.getMessage().startswith(f"workflow {key!r} failed"))
    assert "card declined" in ended.getMessage()
    assert ended.activity is None  # type: ignore[attr-defined]
    assert all(hasattr(r, field) for r in caplog.records for field in FIELDS)
