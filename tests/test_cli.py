"""The ``tapeflow`` command, as an operator and a script use it.

Most commands run in-process through Typer's test runner, on a SQLite file holding
workflows made with the Python API; ``tapeflow worker`` runs as a real process, stopped
with SIGTERM, as the quickstart runs it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner, Result

import tapeflow
from tapeflow import testing
from tapeflow._definition import definitions_in
from tapeflow._worker.log_context import about, worker_logger
from tapeflow.cli import ExitCode, app
from tapeflow.cli._db import parse_span
from tapeflow.cli._logs import LogFormat, configure_logging
from tapeflow.cli._modules import import_module

BILLING = textwrap.dedent(
    """
    from dataclasses import dataclass

    import tapeflow
    from tapeflow import activity, workflow


    EMAILS = tapeflow.Queue("emails", concurrency=1)


    @dataclass
    class PaymentInput:
        value: int


    @activity.defn
    def payment(inp: PaymentInput) -> None:
        if inp.value < 0:
            raise tapeflow.NonRetryableError("payment declined")


    @workflow.defn
    async def subscription(total_amount: int, cycles: int) -> dict[str, int]:
        paid = 0
        for cycle in range(cycles):
            workflow.set_var("currentCycle", cycle)
            await workflow.execute_activity(payment, PaymentInput(total_amount // cycles))
            paid += total_amount // cycles
            workflow.set_var("paid", paid)
        return {"paid": paid}
    """
)

COMMANDS = [
    ["worker"],
    ["workers"],
    ["queues"],
    ["start"],
    ["list"],
    ["describe"],
    ["history"],
    ["vars"],
    ["event"],
    ["update"],
    ["cancel"],
    ["terminate"],
    ["reset"],
    ["result"],
    ["delete"],
    ["schedules"],
    ["schedule"],
    ["schedule", "describe"],
    ["schedule", "pause"],
    ["schedule", "unpause"],
    ["schedule", "trigger"],
    ["schedule", "delete"],
    ["ui"],
    ["db"],
    ["db", "migrate"],
    ["db", "status"],
    ["db", "gc"],
]


@dataclass
class Billing:
    """A folder holding billing.py, and a database where it has run."""

    folder: Path
    url: str
    module: ModuleType


@pytest.fixture
def billing_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / "billing.py").write_text(BILLING)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TAPEFLOW_DATABASE_URL", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the command puts the folder first
    yield tmp_path
    sys.modules.pop("billing", None)


@pytest.fixture
def billing(billing_folder: Path, backend_url: str) -> Billing:
    """Three workflows: ``paid`` completed, ``declined`` failed, ``waiting`` (of a name no
    worker runs) pending; on each backend (the conformance plugin's ``backend_url``)."""
    url = backend_url
    module = import_module("billing")

    async def run() -> None:
        async with tapeflow.connect(url) as backend:
            client = tapeflow.Client(backend)
            worker = tapeflow.Worker(
                backend, workflows=[module.subscription], activities=[module.payment]
            )
            async with worker:
                paid = await client.start_workflow(module.subscription, 30, 3, id="paid")
                declined = await client.start_workflow(module.subscription, -3, 1, id="declined")
                await paid.result(timeout=30)
                with pytest.raises(tapeflow.WorkflowFailed):
                    await declined.result(timeout=30)
            await client.start_workflow("unregistered", id="waiting")

    asyncio.run(run())
    return Billing(billing_folder, url, module)


def tapeflow_cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), prog_name="tapeflow")


def json_of(result: Result) -> Any:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def error_line(result: Result) -> str:
    """The error a command printed: one line, on stderr."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tapeflow: error: ")
    return lines[0]


# -- help ------------------------------------------------------------------------------------


def test_help_lists_the_commands_with_examples_and_exit_codes() -> None:
    result = tapeflow_cli("--help")
    assert result.exit_code == 0
    for command in ("worker", "start", "list", "describe", "history", "vars", "result", "db"):
        assert command in result.stdout
    assert "tapeflow worker billing" in result.stdout
    assert "Exit codes: 0 ok, 1 error, 2 usage" in " ".join(result.stdout.split())


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_examples(command: list[str]) -> None:
    result = tapeflow_cli(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "Examples:" in result.stdout
    assert f"$ tapeflow {' '.join(command)}" in result.stdout


def test_python_dash_m_tapeflow_is_the_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tapeflow", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "tapeflow worker billing" in done.stdout


# -- the worker, as the quickstart runs it ---------------------------------------------------


def test_tapeflow_worker_billing_runs_the_quickstart(billing_folder: Path) -> None:
    """The done-when of the issue: no worker.py, only ``tapeflow worker billing``."""
    env = {**os.environ, "TAPEFLOW_DATABASE_URL": "sqlite:///billing.db"}
    script = Path(sys.executable).with_name("tapeflow")
    worker = subprocess.Popen(
        [
            *(str(script), "worker", "billing", "--max-activities", "2", "--name", "billing-1"),
            *("--queue", "default", "--queue", "emails"),
        ],
        cwd=billing_folder,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = "--url=sqlite:///billing.db"
        deadline = time.monotonic() + 30
        while (status := tapeflow_cli("db", "status", "--json", url)).exit_code != 0 or json_of(
            status
        )["pending"]:
            assert worker.poll() is None, worker.communicate()[1]
            assert time.monotonic() < deadline, "the worker did not make the schema"
            time.sleep(0.1)
        started = tapeflow_cli("start", "subscription", "--input", "[90, 3]", "--id", "s-1", url)
        assert started.exit_code == 0, started.stderr
        assert started.stdout.strip() == "s-1"
        waited = tapeflow_cli("result", "s-1", "--wait", "--timeout", "60", url)
        assert waited.exit_code == 0, waited.stderr
        assert json.loads(waited.stdout) == {"paid": 90}

        on_emails = ("start", "subscription", "--input", "[10, 1]", "--queue", "emails")
        assert tapeflow_cli(*on_emails, "--id", "e-1", "--priority", "2", url).exit_code == 0
        assert json_of(tapeflow_cli("result", "e-1", "--wait", "--timeout", "60", url, "--json"))
        described = json_of(tapeflow_cli("describe", "e-1", "--json", url))
        assert (described["queue"], described["priority"]) == ("emails", 2)
        (emails,) = json_of(tapeflow_cli("queues", "--json", url))
        assert (emails["name"], emails["concurrency"], emails["waiting"]) == ("emails", 1, 0)
        (seen,) = json_of(tapeflow_cli("workers", "--json", url))
        assert (seen["name"], seen["state"]) == ("billing-1", "running")
        assert (seen["workflows"], seen["activities"]) == (["subscription"], ["payment"])
        assert "billing-1" in tapeflow_cli("workers", url).stdout
    finally:
        worker.send_signal(signal.SIGTERM)
        _, log = worker.communicate(timeout=60)
    assert worker.returncode == 0, log
    assert "worker billing-1 started: workflows ['subscription'], activities ['payment']" in log
    assert "worker billing-1 stopped" in log


def test_worker_refuses_modules_without_definitions(billing_folder: Path) -> None:
    (billing_folder / "empty.py").write_text("X = 1\n")
    result = tapeflow_cli("worker", "empty.py", "--url", "sqlite:///w.db")
    assert result.exit_code == ExitCode.USAGE
    assert "no @workflow.defn or @activity.defn functions in empty.py" in error_line(result)
    sys.modules.pop("empty", None)


def test_worker_names_a_module_it_cannot_import(billing_folder: Path) -> None:
    result = tapeflow_cli("worker", "biling", "--url", "sqlite:///w.db")
    assert result.exit_code == ExitCode.USAGE
    assert "cannot import 'biling'" in error_line(result)
    assert not (billing_folder / "w.db").exists()


def test_worker_refuses_a_bad_queue(billing_folder: Path) -> None:
    result = tapeflow_cli("worker", "billing", "--queue", " ", "--url", "sqlite:///w.db")
    assert result.exit_code == ExitCode.USAGE
    assert "WorkerOptions.queues item must be a string of 1 to 255" in error_line(result)
    assert not (billing_folder / "w.db").exists()


def test_worker_serves_metrics_and_health_on_its_metrics_port(billing_folder: Path) -> None:
    import socket
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "TAPEFLOW_DATABASE_URL": "sqlite:///metrics.db"}
    script = Path(sys.executable).with_name("tapeflow")
    worker = subprocess.Popen(
        [str(script), "worker", "billing", "--metrics-port", str(port)],
        cwd=billing_folder,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert worker.poll() is None, worker.communicate()[1]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
                    health = json.loads(r.read())
                    break
            except OSError:  # not serving yet (a 503 is an HTTPError, an OSError too)
                assert time.monotonic() < deadline, "no healthy /healthz"
                time.sleep(0.1)
        assert (health["healthy"], health["connected"], health["polling"]) == (True, True, True)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            assert 'tapeflow_claim_seconds_count{kind="workflow"}' in r.read().decode()
    finally:
        worker.send_signal(signal.SIGTERM)
        _, log = worker.communicate(timeout=60)
    assert worker.returncode == 0, log


def test_worker_refuses_a_bad_metrics_port(billing_folder: Path) -> None:
    result = tapeflow_cli("worker", "billing", "--metrics-port", "0", "--url", "sqlite:///w.db")
    assert result.exit_code == ExitCode.USAGE
    assert "--metrics-port" in result.stderr
    assert not (billing_folder / "w.db").exists()


# -- reading workflows -----------------------------------------------------------------------


def test_describe_as_json_and_as_a_table(billing: Billing) -> None:
    record = json_of(tapeflow_cli("describe", "paid", "--json", "--url", billing.url))
    assert record["status"] == "completed"
    assert record["result"] == {"paid": 30}
    assert record["args"] == [30, 3]
    table = tapeflow_cli("describe", "declined", "--url", billing.url)
    assert table.exit_code == 0
    assert "failed" in table.stdout
    assert "payment declined" in table.stdout


def test_history_numbers_the_events_from_one(billing: Billing) -> None:
    events = json_of(tapeflow_cli("history", "paid", "--json", "--url", billing.url))
    assert [e["event"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["kind"] == "workflow_completed"
    table = tapeflow_cli("history", "paid", "--url", billing.url)
    assert "workflow_completed" in table.stdout


def test_history_as_json_is_a_history_to_replay_in_tests(billing: Billing) -> None:
    """What the README's 'Changing workflow code safely' saves from a shell."""
    saved = billing.folder / "paid.json"
    saved.write_text(tapeflow_cli("history", "paid", "--json", "--url", billing.url).stdout)
    history = testing.load_history(saved)
    assert history[-1].kind == "workflow_completed"
    assert testing.replay(billing.module.subscription, history, workflow_id="paid").finished


def test_vars_replays_the_module_that_defines_the_workflow(billing: Billing) -> None:
    url = ("--url", billing.url)
    latest = json_of(tapeflow_cli("vars", "paid", "--module", "billing", "--json", *url))
    assert latest["vars"] == {"currentCycle": 2, "paid": 30}
    assert latest["diverged"] is None
    early = json_of(tapeflow_cli("vars", "paid", "-m", "billing.py", "--at", "3", "--json", *url))
    assert early["vars"] == {"currentCycle": 0}


def test_vars_at_an_event_needs_the_code(billing: Billing) -> None:
    result = tapeflow_cli("vars", "paid", "--at", "3", "--url", billing.url)
    assert result.exit_code == ExitCode.USAGE
    assert "give --module MODULE, the module that defines workflow 'subscription'" in (
        error_line(result)
    )


# -- results and their exit codes ------------------------------------------------------------


def test_result_exit_codes(billing: Billing) -> None:
    url = ("--url", billing.url)
    done = tapeflow_cli("result", "paid", *url)
    assert (done.exit_code, json.loads(done.stdout)) == (0, {"paid": 30})

    failed = tapeflow_cli("result", "declined", "--json", *url)
    assert failed.exit_code == ExitCode.WORKFLOW_FAILED
    assert json.loads(failed.stdout)["failure"]["message"].endswith("payment declined")
    assert "payment declined" in error_line(failed)

    running = tapeflow_cli("result", "waiting", *url)
    assert running.exit_code == ExitCode.NOT_FINISHED
    assert "no result yet" in error_line(running)

    waited = tapeflow_cli("result", "waiting", "--wait", "--timeout", "0.2", *url)
    assert waited.exit_code == ExitCode.NOT_FINISHED

    missing = tapeflow_cli("result", "nobody", *url)
    assert missing.exit_code == ExitCode.NOT_FOUND
    assert error_line(missing) == "tapeflow: error: no workflow with id 'nobody'"


def test_start_event_cancel_terminate(billing: Billing) -> None:
    url = ("--url", billing.url)
    started = json_of(
        tapeflow_cli("start", "unregistered", "-i", '"x"', "--id", "w2", "--json", *url)
    )
    assert started["id"] == "w2"
    assert json_of(tapeflow_cli("describe", "w2", "--json", *url))["args"] == ["x"]
    taken = tapeflow_cli("start", "unregistered", "--id", "w2", *url)
    assert taken.exit_code == ExitCode.CONFLICT

    sent = tapeflow_cli("event", "w2", "hello", '{"n": 1}', "--json", *url)
    assert json_of(sent) == {"id": "w2", "event": "hello"}
    assert tapeflow_cli("cancel", "w2", "--reason", "no longer needed", *url).exit_code == 0
    assert tapeflow_cli("terminate", "w2", "--reason", "stuck", *url).exit_code == 0
    ended = tapeflow_cli("result", "w2", *url)
    assert ended.exit_code == ExitCode.WORKFLOW_FAILED
    assert "terminated" in error_line(ended)
    again = tapeflow_cli("terminate", "w2", *url)
    assert again.exit_code == ExitCode.CONFLICT


CART = textwrap.dedent(
    """
    from tapeflow import workflow


    @workflow.defn
    async def cart() -> list[str]:
        items: list[str] = []

        def add(item: str, quantity: int = 1) -> int:
            items.extend([item] * quantity)
            return len(items)

        def in_stock(item: str, quantity: int = 1) -> None:
            if item == "unicorn":
                raise LookupError("out of unicorns")

        workflow.on_update("add", add, validator=in_stock)
        await workflow.wait_event("pay")
        return items
    """
)


@pytest.fixture
def cart_url(billing_folder: Path, backend_url: str) -> Iterator[str]:
    """A database of each backend where workflow ``cart-1`` (cart.py) runs, served by a
    worker on a thread of its own (a command runs its own event loop) until the test ends."""
    (billing_folder / "cart.py").write_text(CART)
    module = import_module("cart")
    url = backend_url
    stop, ready = threading.Event(), threading.Event()

    async def serve() -> None:
        async with (
            tapeflow.connect(url) as backend,
            tapeflow.Worker(backend, workflows=[module.cart]),
        ):
            await tapeflow.Client(backend).start_workflow(module.cart, id="cart-1")
            ready.set()
            await asyncio.to_thread(stop.wait)

    thread = threading.Thread(target=asyncio.run, args=(serve(),))
    thread.start()
    try:
        assert ready.wait(30)
        yield url
    finally:
        stop.set()
        thread.join(30)
        sys.modules.pop("cart", None)


def test_update_prints_the_answer_and_its_exit_codes(cart_url: str) -> None:
    url = ("--url", cart_url)
    added = tapeflow_cli("update", "cart-1", "add", '"apple"', *url)
    assert (added.exit_code, added.stdout) == (0, "1\n")
    twice = ("update", "cart-1", "add", '["pear", 2]', "--update-id", "pears", "--json", *url)
    assert json_of(tapeflow_cli(*twice)) == {
        "id": "cart-1",
        "update_id": "pears",
        "result": 3,
        "failure": None,
    }
    assert json_of(tapeflow_cli(*twice))["result"] == 3  # the first answer: added once

    rejected = tapeflow_cli("update", "cart-1", "add", '"unicorn"', "--json", *url)
    assert rejected.exit_code == ExitCode.UPDATE_FAILED
    failure = json.loads(rejected.stdout)["failure"]
    assert failure == {"type": "LookupError", "message": "out of unicorns", "rejected": True}
    assert "was rejected: LookupError: out of unicorns" in error_line(rejected)

    sent = tapeflow_cli("update", "cart-1", "add", '"fig"', "--no-wait", "--json", *url)
    update_id = json_of(sent)["update_id"]
    waited = tapeflow_cli("update", "cart-1", "add", "--update-id", update_id, *url)
    assert (waited.exit_code, waited.stdout) == (0, "4\n")

    unknown = tapeflow_cli("update", "cart-1", "remove", '"fig"', *url)
    assert unknown.exit_code == ExitCode.UPDATE_FAILED
    assert "no update handler named 'remove'" in error_line(unknown)
    bad = tapeflow_cli("update", "cart-1", "add", "[1,", *url)
    assert bad.exit_code == ExitCode.USAGE
    assert "ARG_JSON is not JSON" in error_line(bad)
    missing = tapeflow_cli("update", "nobody", "add", *url)
    assert missing.exit_code == ExitCode.NOT_FOUND

    assert tapeflow_cli("event", "cart-1", "pay", *url).exit_code == 0
    assert json_of(tapeflow_cli("result", "cart-1", "--wait", "--timeout", "10", *url)) == [
        "apple",
        "pear",
        "pear",
        "fig",
    ]
    closed = tapeflow_cli("update", "cart-1", "add", '"late"', *url)
    assert closed.exit_code == ExitCode.CONFLICT


def test_update_past_its_timeout_says_how_to_wait_again(billing: Billing) -> None:
    url = ("--url", billing.url)  # "waiting" is of a name no worker runs: no answer comes
    late = tapeflow_cli("update", "waiting", "add", "--update-id", "u-1", "--timeout", "0.2", *url)
    assert late.exit_code == ExitCode.NOT_FINISHED
    assert "wait again with --update-id u-1" in error_line(late)


def test_bad_input_json_is_a_usage_error(billing: Billing) -> None:
    result = tapeflow_cli("start", "subscription", "--input", "[1,", "--url", billing.url)
    assert result.exit_code == ExitCode.USAGE
    assert "--input is not JSON" in error_line(result)


def test_an_unknown_option_is_a_usage_error() -> None:
    assert tapeflow_cli("describe", "x", "--colour").exit_code == ExitCode.USAGE


# -- the database ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("mysql://db/x", "database URL must be a sqlite:// or postgresql:// URL"),
        ("sqlite://billing.db", "(three slashes) for SQLite"),
    ],
)
def test_a_bad_url_is_one_line_and_exit_2(tmp_path: Path, url: str, says: str) -> None:
    result = tapeflow_cli("describe", "x", "--url", url)
    assert result.exit_code == ExitCode.USAGE
    assert says in error_line(result)


def test_an_unreachable_postgres_is_one_line_and_exit_1() -> None:
    result = tapeflow_cli("db", "status", "--url", "postgresql://nobody@127.0.0.1:1/x")
    assert result.exit_code == ExitCode.ERROR
    assert "cannot use PostgreSQL at postgresql://nobody@127.0.0.1:1/x" in error_line(result)


def test_reads_refuse_a_database_that_is_not_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A typo in the URL says so, and leaves no empty database behind."""
    missing = tmp_path / "typo.db"
    monkeypatch.setenv("TAPEFLOW_DATABASE_URL", f"sqlite:///{missing}")
    result = tapeflow_cli("describe", "paid")
    assert result.exit_code == ExitCode.ERROR
    assert f"no tapeflow database at sqlite:///{missing}" in error_line(result)
    assert not missing.exists()


def test_db_status_then_migrate_on_sqlite(tmp_path: Path) -> None:
    url = ("--url", f"sqlite:///{tmp_path / 'new.db'}")
    before = json_of(tapeflow_cli("db", "status", "--json", *url))
    assert before["current"] == 0
    assert before["pending"] == before["latest"] > 0
    assert not (tmp_path / "new.db").exists()
    assert "pending: run 'tapeflow db migrate'" in tapeflow_cli("db", "status", *url).stdout
    after = json_of(tapeflow_cli("db", "migrate", "--json", *url))
    assert after == {"current": before["latest"], "latest": before["latest"], "pending": 0}


def test_db_migrate_status_and_describe_on_postgres(postgres_url: str) -> None:
    before = json_of(tapeflow_cli("db", "status", "--json", "--url", postgres_url))
    assert before["current"] == 0
    refused = tapeflow_cli("describe", "nobody", "--url", postgres_url)
    assert refused.exit_code == ExitCode.ERROR
    assert "no tapeflow database at" in error_line(refused)
    migrated = json_of(tapeflow_cli("db", "migrate", "--json", "--url", postgres_url))
    assert migrated["pending"] == 0
    assert migrated["current"] == migrated["latest"]
    status = tapeflow_cli("db", "status", "--url", postgres_url)
    assert "up to date" in status.stdout
    missing = tapeflow_cli("describe", "nobody", "--url", postgres_url)
    assert missing.exit_code == ExitCode.NOT_FOUND


def test_gc_spans() -> None:
    assert parse_span("30d").days == 30
    assert parse_span("90m").total_seconds() == 5400
    assert parse_span("45").total_seconds() == 45


# -- commands waiting for APIs that other work adds ------------------------------------------


def _summary(record: tapeflow.WorkflowRecord) -> SimpleNamespace:
    """A ``WorkflowSummary`` as the visibility reads list it."""
    fields = ("id", "run_id", "name", "status", "created_at", "start_at", "completed_at")
    return SimpleNamespace(**{f: getattr(record, f) for f in fields}, task_error=None, vars={})


def test_list_pages_over_list_workflows(billing: Billing, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: dict[str, Any] = {}

    async def list_workflows(self: tapeflow.Client, **filters: Any) -> SimpleNamespace:
        asked.update(filters)
        listed = [_summary(await self.describe(i)) for i in ("waiting", "declined")]
        return SimpleNamespace(workflows=listed, next_cursor="c2")

    async def count_workflows(self: tapeflow.Client, **filters: Any) -> int:
        return 3

    monkeypatch.setattr(tapeflow.Client, "list_workflows", list_workflows, raising=False)
    monkeypatch.setattr(tapeflow.Client, "count_workflows", count_workflows, raising=False)
    url = ("--url", billing.url)
    page = json_of(
        tapeflow_cli("list", "--status", "failed", "--status", "pending", "--json", *url)
    )
    assert [w["id"] for w in page["workflows"]] == ["waiting", "declined"]
    assert page["next_cursor"] == "c2"
    assert asked == {
        "status": ["failed", "pending"],
        "name": None,
        "id_prefix": None,
        "limit": 50,
        "cursor": None,
    }
    table = tapeflow_cli("list", "--name", "subscription", *url)
    assert "declined" in table.stdout
    assert "more: --cursor c2" in table.stderr
    assert json_of(tapeflow_cli("list", "--count", "--json", *url)) == 3


def test_reset_delete_and_gc(billing: Billing) -> None:
    url = ("--url", billing.url)
    old_run = json_of(tapeflow_cli("describe", "declined", "--json", *url))["run_id"]
    inside = tapeflow_cli("reset", "declined", "--event", "1", *url)
    assert inside.exit_code == ExitCode.USAGE  # event 1 ends no workflow task
    reset = json_of(
        tapeflow_cli("reset", "declined", "--event", "3", "--reason", "fix", "--json", *url)
    )
    assert reset["event"] == 3
    assert reset["run_id"] != old_run
    now = json_of(tapeflow_cli("describe", "declined", "--json", *url))
    assert (now["run_id"], now["previous_run_id"]) == (reset["run_id"], old_run)

    open_one = tapeflow_cli("delete", "waiting", *url)
    assert open_one.exit_code == ExitCode.CONFLICT
    assert tapeflow_cli("delete", "paid", *url).stdout == "paid deleted\n"
    assert tapeflow_cli("describe", "paid", *url).exit_code == ExitCode.NOT_FOUND

    assert tapeflow_cli("terminate", "waiting", *url).exit_code == 0
    gc = tapeflow_cli("db", "gc", "--older-than", "0s", "--batch", "10", "--json", *url)
    assert json_of(gc) == {"deleted": 1}  # waiting, terminated; declined runs again
    assert tapeflow_cli("describe", "waiting", *url).exit_code == ExitCode.NOT_FOUND


def test_schedules_are_listed_paused_triggered_and_deleted(billing: Billing) -> None:
    url = ("--url", billing.url)

    async def create() -> None:
        async with tapeflow.connect(billing.url) as backend:
            client = tapeflow.Client(backend)
            await client.create_schedule(
                "monthly",
                billing.module.subscription,
                30,
                3,
                cron="0 9 1 * *",
                timezone="Europe/Berlin",
            )

    asyncio.run(create())
    (listed,) = json_of(tapeflow_cli("schedules", "--json", *url))
    assert (listed["id"], listed["workflow"], listed["args"]) == (
        "monthly",
        "subscription",
        [30, 3],
    )
    assert (listed["cron"], listed["timezone"], listed["paused"]) == (
        "0 9 1 * *",
        "Europe/Berlin",
        False,
    )
    assert len(listed["next_fire_times"]) == 5
    table = tapeflow_cli("schedules", *url).stdout
    assert "monthly" in table
    assert "subscription" in table

    assert tapeflow_cli("schedule", "pause", "monthly", *url).stdout == "schedule monthly paused\n"
    described = json_of(tapeflow_cli("schedule", "describe", "monthly", "--json", *url))
    assert (described["paused"], described["next_fire_times"]) == (True, [])
    triggered = json_of(tapeflow_cli("schedule", "trigger", "monthly", "--json", *url))
    assert triggered["workflow_id"].startswith("monthly@")  # paused: only the cadence stops
    shown = tapeflow_cli("schedule", "describe", "monthly", *url).stdout
    assert triggered["workflow_id"] in shown
    assert "pending" in shown
    assert tapeflow_cli("schedule", "unpause", "monthly", *url).exit_code == 0
    assert tapeflow_cli("schedule", "delete", "monthly", *url).exit_code == 0
    gone = tapeflow_cli("schedule", "describe", "monthly", *url)
    assert gone.exit_code == ExitCode.NOT_FOUND
    assert "no schedule with id 'monthly'" in error_line(gone)
    assert json_of(tapeflow_cli("schedules", "--json", *url)) == []


def test_vars_stored_by_the_workflow_need_no_code(
    billing: Billing, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def describe(self: tapeflow.Client, workflow_id: str) -> SimpleNamespace:
        return SimpleNamespace(vars={"paid": 30}, history_length=12)

    monkeypatch.setattr(tapeflow.Client, "describe", describe)
    shown = json_of(tapeflow_cli("vars", "paid", "--json", "--url", billing.url))
    assert shown == {"vars": {"paid": 30}, "as_of": 12, "diverged": None}


def test_ui_says_what_it_needs_without_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tapeflow.ui", None)  # as if the extra were missing
    result = tapeflow_cli("ui")
    assert result.exit_code == ExitCode.ERROR
    assert "pip install 'tapeflow[ui]'" in error_line(result)


def test_ui_serves_what_tapeflow_ui_offers(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[tuple[str, dict[str, Any]]] = []
    fake = ModuleType("tapeflow.ui")
    fake.serve = lambda url, **options: served.append((url, options))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tapeflow.ui", fake)
    monkeypatch.delenv("TAPEFLOW_DATABASE_URL", raising=False)
    monkeypatch.delenv("TAPEFLOW_UI_TOKEN", raising=False)
    assert tapeflow_cli("ui", "--port", "9000", "-m", "billing").exit_code == 0
    options = {"host": "127.0.0.1", "port": 9000, "token": None, "modules": ["billing"]}
    assert served == [("sqlite:///tapeflow.db", options)]


# -- finding definitions ---------------------------------------------------------------------


def test_definitions_in_a_module_namespace() -> None:
    from tapeflow import activity, workflow

    @activity.defn
    def charge() -> None: ...

    @workflow.defn
    async def order() -> None: ...

    class Service:
        @activity.defn
        def refund(self) -> None: ...

    namespace = {"charge": charge, "alias": charge, "order": order, "Service": Service, "x": 1}
    found = definitions_in(namespace)
    assert sorted((d.kind, d.name) for d in found) == [
        ("activity", "charge"),
        ("workflow", "order"),
    ]


def test_cli_exports() -> None:
    import tapeflow.cli

    assert sorted(tapeflow.cli.__all__) == ["ExitCode", "app", "main"]


def test_the_workers_json_log_has_the_tasks_fields(capsys: pytest.CaptureFixture[str]) -> None:
    """``tapeflow worker --log-format json``: one object per line, the task's fields in it."""
    root = logging.getLogger()
    kept = (root.handlers[:], root.level)
    try:
        configure_logging(logging.INFO, LogFormat.JSON)
        with about(workflow_id="order-7", run="r-1", activity="charge", attempt=2):
            worker_logger().warning("activity %r failed", "charge")
    finally:
        root.handlers[:], level = kept
        root.setLevel(level)
    (line,) = capsys.readouterr().err.strip().splitlines()
    record = json.loads(line)
    assert record["message"] == "activity 'charge' failed"
    assert (record["level"], record["logger"]) == ("WARNING", "tapeflow.worker")
    assert (record["workflow_id"], record["run"], record["activity"], record["attempt"]) == (
        "order-7",
        "r-1",
        "charge",
        2,
    )
    assert "time" in record
