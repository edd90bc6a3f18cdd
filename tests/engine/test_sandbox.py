"""Blocking calls in workflow code fail the workflow task with WorkflowSandboxError naming
the call, while imports, tracebacks and logging handlers go on working there."""

from __future__ import annotations

import linecache
import logging
import os
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

from tapeflow import WorkflowSandboxError, workflow
from tapeflow.history import WorkflowExecutionCompleted
from tests.engine.conftest import RunFactory


def _connect_a_socket() -> None:
    with socket.socket() as sock:
        sock.connect(("127.0.0.1", 9))


BLOCKING_CALLS: list[tuple[Callable[[], object], str]] = [
    (lambda: open(__file__).close(), "open("),
    (lambda: Path(__file__).read_text(), "open("),
    (lambda: os.close(os.open(__file__, os.O_RDONLY)), "open("),
    (lambda: subprocess.run(["true"], check=True), "subprocess.Popen()"),
    (lambda: os.system("true"), "os.system()"),
    (lambda: socket.create_connection(("127.0.0.1", 9), timeout=1), "socket.getaddrinfo()"),
    (_connect_a_socket, "socket.connect()"),
    (lambda: time.sleep(0), "time.sleep()"),
]
CALL_IDS = ["open", "pathlib", "os.open", "subprocess", "os.system", "create_connection",
            "connect", "time.sleep"]  # fmt: skip


@pytest.mark.parametrize(("call", "named"), BLOCKING_CALLS, ids=CALL_IDS)
def test_a_blocking_call_fails_the_workflow_task_naming_it(
    run: RunFactory, call: Callable[[], object], named: str
) -> None:
    @workflow.defn(name="blocks")
    async def blocks() -> None:
        call()

    wf = run(blocks)
    with pytest.raises(WorkflowSandboxError, match=named.replace("(", r"\(").replace(")", r"\)")):
        wf.start()
    assert not wf.instance.finished
    assert wf.instance.commands.take_decisions() == []


def test_a_caught_refusal_still_fails_the_task(run: RunFactory) -> None:
    @workflow.defn
    async def hides_it() -> str:
        try:
            open(__file__).close()  # noqa: ASYNC230 -- the point of the test
        except Exception:
            return "nothing to see"
        return "opened"

    wf = run(hides_it)
    with pytest.raises(WorkflowSandboxError, match="open"):
        wf.start()
    assert not wf.instance.finished


def test_imports_tracebacks_and_log_handlers_still_work_in_workflow_code(
    run: RunFactory, tmp_path: Path
) -> None:
    log_file = tmp_path / "workflow.log"
    handler = logging.FileHandler(log_file, delay=True)  # opens its file on the first record
    logging.getLogger("tapeflow.workflow").addHandler(handler)
    sys.modules.pop("colorsys", None)
    linecache.clearcache()

    @workflow.defn
    async def ordinary() -> str:
        import colorsys  # read from disk: not imported yet

        try:
            raise ValueError("shown with its source line")
        except ValueError:
            shown = traceback.format_exc()
        workflow.logger.warning("converted %s", colorsys.rgb_to_hsv(1, 0, 0))
        return shown

    try:
        decisions = run(ordinary).start()
    finally:
        logging.getLogger("tapeflow.workflow").removeHandler(handler)
        handler.close()
    [completed] = decisions
    assert isinstance(completed, WorkflowExecutionCompleted)
    assert 'raise ValueError("shown with its source line")' in str(completed.result)
    assert "converted (0.0, 1.0, 1)" in log_file.read_text()
