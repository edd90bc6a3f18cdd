"""The sandbox is for workflow code only: the blocking calls it refuses there are what
activities are for, and run in them as usual, sync or async."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import tapeflow
from tapeflow import activity, workflow
from tests.conformance._waiting import task_error_of
from tests.conftest import WorkerFactory


def _blocking_calls(path: str) -> str:
    """A file, a subprocess, a socket and a sleep: everything the sandbox refuses."""
    Path(path).write_text("written")
    with open(path) as file:  # the builtin, as well as pathlib above
        content = file.read()
    subprocess.run(["true"], check=True)
    with socket.create_server(("127.0.0.1", 0)) as server:
        socket.create_connection(server.getsockname(), timeout=5).close()
    time.sleep(0.01)
    return content


@activity.defn
def blocks_in_a_thread(path: str) -> str:
    return _blocking_calls(path)


@activity.defn
async def blocks_on_the_loop(path: str) -> str:
    return _blocking_calls(path)  # blocks the worker's loop a moment: allowed, if unwise


@workflow.defn
async def delegates_blocking_calls(folder: str) -> list[str]:
    return [
        await workflow.execute_activity(blocks_in_a_thread, f"{folder}/sync"),
        await workflow.execute_activity(blocks_on_the_loop, f"{folder}/async"),
    ]


@workflow.defn
async def reads_a_file(path: str) -> str:
    return Path(path).read_text()  # noqa: ASYNC240 -- the point of the test


async def test_blocking_calls_run_in_activities(
    client: tapeflow.Client, worker: WorkerFactory, tmp_path: Path
) -> None:
    activities = [blocks_in_a_thread, blocks_on_the_loop]
    async with worker(workflows=[delegates_blocking_calls], activities=activities):
        handle = await client.start_workflow(delegates_blocking_calls, str(tmp_path))
        assert await handle.result(timeout=20) == ["written", "written"]


async def test_a_file_read_in_workflow_code_fails_its_task_naming_the_call(
    client: tapeflow.Client, worker: WorkerFactory, tmp_path: Path
) -> None:
    path = tmp_path / "config.txt"
    path.write_text("x")
    async with worker(workflows=[reads_a_file]):
        handle = await client.start_workflow(reads_a_file, str(path), id="reads-a-file")
        error = await task_error_of(client, handle.id)
    assert error.startswith("WorkflowSandboxError: open(")
    assert str(path) in error
    assert "activity" in error
    record = await handle.describe()
    assert (record.status, record.history_length) == (tapeflow.WorkflowStatus.PENDING, 0)
