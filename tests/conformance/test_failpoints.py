"""Failpoints fail backend calls on purpose; the system recovers and records nothing twice."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import tapeflow
from tapeflow import activity, workflow
from tapeflow.backends.failpoints import (
    ENABLE_VARIABLE,
    ENV_VARIABLE,
    FailpointBackend,
    parse,
    wrap,
)
from tapeflow.history import ActivityCompleted


@activity.defn
def add_one(value: int) -> int:
    return value + 1


@workflow.defn
async def twice(value: int) -> int:
    once = await workflow.execute_activity(add_one, value)
    return await workflow.execute_activity(add_one, once)


@pytest.mark.parametrize(
    "spec",
    [
        "complete_activity=raise-after#1",  # committed, but the worker was told it failed
        "complete_activity=raise#2",
        "commit_workflow_task=raise-after#1",
        "commit_workflow_task=raise#2",
        "claim=raise#3",
    ],
)
async def test_failures_around_writes_lose_and_duplicate_nothing(
    backend: tapeflow.Backend, cache_size: int, spec: str
) -> None:
    flaky = wrap(backend, parse(spec))
    client = tapeflow.Client(backend)
    async with tapeflow.Worker(
        flaky,
        workflows=[twice],
        activities=[add_one],
        workflow_cache_size=cache_size,
    ):
        handle = await client.start_workflow(twice, 1, id="through-failpoints")
        assert await handle.result(timeout=30) == 3
    history = await backend.load_history(handle.id)
    assert [e.seq for e in history if isinstance(e, ActivityCompleted)] == [1, 2]


async def test_a_failed_start_writes_nothing(backend: tapeflow.Backend) -> None:
    client = tapeflow.Client(wrap(backend, parse("start_workflow=raise")))
    with pytest.raises(tapeflow.BackendUnavailable, match="failpoint"):
        await client.start_workflow(twice, 1, id="never")
    with pytest.raises(tapeflow.WorkflowNotFound):
        await backend.get_workflow("never")


@pytest.mark.parametrize("spec", ["request_cancel=raise", "impose_ending=raise"])
async def test_a_failed_cancel_or_terminate_writes_nothing(
    backend: tapeflow.Backend, spec: str
) -> None:
    await tapeflow.Client(backend).start_workflow(twice, 1, id="left-alone")
    handle = tapeflow.Client(wrap(backend, parse(spec))).get_handle("left-alone")
    with pytest.raises(tapeflow.BackendUnavailable, match="failpoint"):
        await (handle.cancel() if spec.startswith("request_cancel") else handle.terminate())
    record = await backend.get_workflow("left-alone")
    assert (record.status, record.reason) == (tapeflow.WorkflowStatus.PENDING, None)


def test_bad_failpoint_specs_are_refused() -> None:
    with pytest.raises(tapeflow.InvalidArgument, match="failpoint"):
        parse("commit=explode")
    assert parse("claim=exit@0.5#3, send_event=hang")["claim"].probability == 0.5


def test_a_stray_failpoint_variable_is_ignored_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(ENV_VARIABLE, "claim=exit#7")  # would os._exit a worker at its first poll
    monkeypatch.delenv(ENABLE_VARIABLE, raising=False)
    connection = tapeflow.connect(f"sqlite:///{tmp_path / 'app.db'}")
    assert not isinstance(connection.backend, FailpointBackend)
    assert "'claim=exit#7' is ignored" in caplog.text


def test_the_opt_in_enables_failpoints_with_one_loud_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(ENV_VARIABLE, "send_event=raise#5")
    monkeypatch.setenv(ENABLE_VARIABLE, "1")
    caplog.set_level(logging.WARNING, logger="tapeflow.failpoints")
    for _ in range(3):
        connection = tapeflow.connect(f"sqlite:///{tmp_path / 'app.db'}")
        assert isinstance(connection.backend, FailpointBackend)
    warnings = [r for r in caplog.records if r.name == "tapeflow.failpoints"]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert "FAILPOINTS ENABLED" in warnings[0].getMessage()
