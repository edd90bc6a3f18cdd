"""Every Python block of the README and docs runs as written and prints what the text says.

How a block says what it is (a file, an extension of one, a program that runs until stopped)
is described in tests/snippets.py. Each document's programs run in order in one empty
directory, against SQLite, as a reader pasting them would run them.
"""

from __future__ import annotations

import doctest
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.snippets import DOCUMENTS, Step, steps

WITH_PYTHON = [doc for doc in DOCUMENTS if "```python" in doc.read_text(encoding="utf-8")]


def check_output(step: Step, out: str) -> None:
    where = f"{step.document}:{step.line} ({step.name})"
    if step.expected is None:
        assert out == "", f"{where} prints output the text does not show:\n{out}"
        return
    checker = doctest.OutputChecker()
    assert checker.check_output(step.expected, out, doctest.ELLIPSIS), (
        f"{where} printed:\n{out}\nwhile the text says it prints:\n{step.expected}"
    )


def run(step: Step, cwd: Path, env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, step.name], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    where = f"{step.document}:{step.line} ({step.name})"
    assert done.returncode == 0, f"{where} failed:\n{done.stdout}{done.stderr}"
    check_output(step, done.stdout)


def stop(service: subprocess.Popen[str]) -> tuple[int, str]:
    """SIGTERM, as Ctrl-C or a process manager would stop it: its exit code and its log."""
    service.send_signal(signal.SIGTERM)
    try:
        log, _ = service.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        service.kill()
        log, _ = service.communicate()
    return service.returncode, log


@pytest.mark.parametrize("document", WITH_PYTHON, ids=lambda doc: doc.name)
def test_every_python_block_runs_and_prints_what_the_text_says(
    document: Path, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TAPEFLOW_", "PYTHON"))}
    services: list[tuple[Step, subprocess.Popen[str]]] = []
    try:
        for step in steps(document):
            (tmp_path / step.name).write_text(step.source, encoding="utf-8")
            if not step.service:
                run(step, tmp_path, env)
                continue
            service = subprocess.Popen(
                [sys.executable, step.name],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            services.append((step, service))
    finally:
        stopped = [(step, *stop(service)) for step, service in services]
    for step, code, log in stopped:
        assert code == 0, f"{step.document}:{step.line} ({step.name}) did not stop cleanly:\n{log}"
