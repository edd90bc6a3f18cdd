"""Which workers run and what each runs (the UI's workers page, ``tapeflow workers``)."""

from __future__ import annotations

from datetime import timedelta

import pytest

import tapeflow
from tapeflow import activity, workflow
from tapeflow.backends import presence
from tapeflow.backends.presence import WorkerInfo, WorkerPresence
from tests.conformance._waiting import eventually

HOUR = timedelta(hours=1)


def _info(worker_id: str, *workflows: str) -> WorkerInfo:
    return WorkerInfo(
        id=worker_id,
        name="billing",
        host="box-1",
        pid=42,
        workflows=workflows,
        activities=("charge",),
        max_workflow_tasks=10,
        max_activities=4,
        version="1.2.3",
    )


def _presence(backend: tapeflow.Backend) -> WorkerPresence:
    assert isinstance(backend, WorkerPresence), f"{backend!r} does not keep which workers run"
    return backend


async def test_a_report_is_listed_until_the_worker_says_it_stopped(
    backend: tapeflow.Backend,
) -> None:
    kept = _presence(backend)
    assert await kept.list_workers(HOUR) == []
    await kept.report_worker(_info("billing/1", "invoice"))
    await kept.report_worker(_info("billing/2", "invoice", "refund"))
    await kept.report_worker(_info("billing/1", "invoice", "dunning"))  # reported again

    first, second = sorted(await kept.list_workers(HOUR), key=lambda w: w.info.id)
    assert first.info == _info("billing/1", "invoice", "dunning")  # the latest report
    assert second.info == _info("billing/2", "invoice", "refund")
    assert first.state == second.state == "running"
    assert first.started_at <= first.last_seen_at
    assert first.started_at.tzinfo is not None
    assert first.stopped_at is None

    await kept.report_worker_stopped("billing/2")

    stopped = {w.info.id: w for w in await kept.list_workers(HOUR)}["billing/2"]
    assert stopped.state == "stopped"
    assert stopped.stopped_at is not None


async def test_a_worker_not_heard_from_goes_silent_then_is_forgotten(
    backend: tapeflow.Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = _presence(backend)
    await kept.report_worker(_info("gone/1"))
    monkeypatch.setattr(presence, "SILENT_AFTER", timedelta(0))
    (silent,) = await kept.list_workers(HOUR)
    assert silent.state == "silent"
    assert await kept.list_workers(timedelta(microseconds=1)) == []  # not heard from within

    backend_module = type(backend).__module__
    monkeypatch.setattr(f"{backend_module}.FORGET_AFTER", timedelta(0))
    await kept.report_worker(_info("new/1"))  # a report forgets the others, never itself

    assert [w.info.id for w in await kept.list_workers(HOUR)] == ["new/1"]


@activity.defn
async def charge(amount: int) -> int:
    return amount


@workflow.defn
async def invoice(amount: int) -> int:
    return await workflow.execute_activity(charge, amount)


async def test_a_running_worker_reports_what_it_registered(backend: tapeflow.Backend) -> None:
    kept = _presence(backend)
    worker = tapeflow.Worker(
        backend,
        workflows=[invoice],
        activities=[charge],
        name="billing",
        max_concurrent_activities=3,
    )
    async with worker:

        async def reported() -> bool:
            return bool(await kept.list_workers(HOUR))

        await eventually(reported, "the worker reported")
        (seen,) = await kept.list_workers(HOUR)
        assert seen.info.id == worker.lease_owner
        assert (seen.info.name, seen.info.workflows, seen.info.activities) == (
            "billing",
            ("invoice",),
            ("charge",),
        )
        assert seen.info.max_activities == 3
        assert seen.info.version == tapeflow.__version__
        assert seen.state == "running"

    (after,) = await kept.list_workers(HOUR)
    assert after.state == "stopped"
