"""The ``tapeflow`` command's tree: each command's function, its examples, its place."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Annotated, Any

import typer

from tapeflow.backends.connect import DEFAULT_URL
from tapeflow.cli import _db, _schedules, _workflows
from tapeflow.cli._exits import EXIT_CODES_HELP, CliError
from tapeflow.cli._params import Modules, Url
from tapeflow.cli._queues import queues
from tapeflow.cli._run import reported
from tapeflow.cli._worker import worker
from tapeflow.cli._workers import workers


def _examples(*lines: str) -> str:
    """An epilog of example command lines, one per paragraph (help text rewraps lines)."""
    return "\n\n".join(["Examples:", *(f"  $ {line}" for line in lines)])


app = typer.Typer(
    name="tapeflow",
    help="Run and inspect tapeflow workflows.\n\n"
    "The database is --url, else $TAPEFLOW_DATABASE_URL, else sqlite:///tapeflow.db. "
    "Encrypted payloads are decoded (and new ones encrypted) with the keys of "
    "$TAPEFLOW_CODEC_KEYS, if set; without them they show as stored. "
    "Add --json to any command that prints for output a script can parse. " + EXIT_CODES_HELP,
    epilog=_examples(
        "export TAPEFLOW_DATABASE_URL=sqlite:///billing.db",
        "tapeflow worker billing",
        'tapeflow start subscription --input \'{"total_amount": 100, "cycles": 3, '
        '"cycle_duration": 2}\' --id sub-1',
        "tapeflow list --status running",
        "tapeflow result sub-1 --wait",
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
db = typer.Typer(
    help="The database schema and its upkeep.",
    no_args_is_help=True,
    epilog=_examples(
        "tapeflow db status", "tapeflow db migrate", "tapeflow db gc --older-than 30d"
    ),
)
app.add_typer(db, name="db")
schedule = typer.Typer(
    help="One schedule: describe, pause, unpause, trigger or delete it.",
    no_args_is_help=True,
    epilog=_examples(
        "tapeflow schedule describe nightly-report", "tapeflow schedule pause nightly-report"
    ),
)
app.add_typer(schedule, name="schedule")


def _add(group: typer.Typer, name: str, command: Callable[..., Any], *examples: str) -> None:
    group.command(name, epilog=_examples(*examples))(command)


_add(
    app,
    "worker",
    worker,
    "tapeflow worker billing",
    "tapeflow worker app/jobs.py --max-activities 8",
    "tapeflow worker billing --queue default --queue emails",
)
_add(app, "workers", workers, "tapeflow workers", "tapeflow workers --within 5 --json")
_add(app, "queues", queues, "tapeflow queues", "tapeflow queues --json")
_add(
    app,
    "start",
    _workflows.start,
    "tapeflow start greeter --input '\"Ada\"'",
    'tapeflow start transfer --input \'["alice", "bob", 10]\' --id transfer-7',
    "tapeflow start send_campaign --input '\"spring\"' --queue emails --priority 1",
)
_add(app, "list", _workflows.list_, "tapeflow list --status failed", "tapeflow list --count --json")
_add(
    app,
    "describe",
    _workflows.describe,
    "tapeflow describe sub-1",
    "tapeflow describe sub-1 --json",
)
_add(app, "history", _workflows.history, "tapeflow history sub-1", "tapeflow history sub-1 --json")
_add(
    app,
    "vars",
    _workflows.vars_,
    "tapeflow vars sub-1 --module billing",
    "tapeflow vars sub-1 --at 12 --module billing",
)
_add(
    app,
    "event",
    _workflows.event,
    "tapeflow event greeting-1 hello '\"world\"'",
    "tapeflow event order-9 approved --idempotency-key approval-9",
)
_add(
    app,
    "update",
    _workflows.update,
    "tapeflow update cart-1 add '\"apple\"'",
    "tapeflow update cart-1 add '[\"pear\", 2]' --update-id add-pear --timeout 30 --json",
)
_add(app, "cancel", _workflows.cancel, "tapeflow cancel sub-1 --reason 'customer left'")
_add(app, "terminate", _workflows.terminate, "tapeflow terminate sub-1 --reason stuck")
_add(app, "reset", _workflows.reset, "tapeflow reset sub-1 --event 12 --reason 'bad deploy'")
_add(
    app,
    "result",
    _workflows.result,
    "tapeflow result sub-1",
    "tapeflow result sub-1 --wait --timeout 60 && echo completed",
)
_add(app, "delete", _workflows.delete, "tapeflow delete sub-1")
_add(
    app,
    "schedules",
    _schedules.schedules,
    "tapeflow schedules",
    "tapeflow schedules --json",
)
_add(schedule, "describe", _schedules.describe, "tapeflow schedule describe nightly-report")
_add(schedule, "pause", _schedules.pause, "tapeflow schedule pause nightly-report")
_add(schedule, "unpause", _schedules.unpause, "tapeflow schedule unpause nightly-report")
_add(schedule, "trigger", _schedules.trigger, "tapeflow schedule trigger nightly-report --json")
_add(schedule, "delete", _schedules.delete, "tapeflow schedule delete nightly-report")
_add(db, "migrate", _db.migrate, "tapeflow db migrate --url postgresql://tapeflow@db/prod")
_add(db, "status", _db.status, "tapeflow db status", "tapeflow db status --json")
_add(db, "gc", _db.gc, "tapeflow db gc --older-than 30d --batch 500")


@app.command(
    epilog=_examples(
        "pip install 'tapeflow[ui]'",
        "tapeflow ui --module billing",
        "TAPEFLOW_UI_TOKEN=... tapeflow ui --host 0.0.0.0 --port 8080",
    )
)
def ui(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port.")] = 8233,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="TAPEFLOW_UI_TOKEN",
            help="Required beyond loopback: anyone reaching the UI could cancel workflows.",
            show_default=False,
        ),
    ] = None,
    modules: Modules = None,
    url: Url = None,
) -> None:
    """Serve the web UI until Ctrl-C (needs the 'ui' extra)."""
    with reported():
        try:
            serve = importlib.import_module("tapeflow.ui").serve
        except ModuleNotFoundError as exc:
            if exc.name != "tapeflow.ui":
                raise CliError(str(exc)) from None  # the extra is missing: its message says so
            raise CliError(
                "the web UI is not in this tapeflow yet; it will need "
                "\"pip install 'tapeflow[ui]'\""
            ) from None
        except ImportError as exc:
            raise CliError(str(exc)) from None
        serve(url or DEFAULT_URL, host=host, port=port, token=token, modules=modules or ())


def main() -> None:
    """The console script ``tapeflow`` and ``python -m tapeflow``."""
    app(prog_name="tapeflow")
