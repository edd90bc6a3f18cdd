"""``tapeflow worker billing``: a worker program for the definitions of some modules."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Annotated

import typer

from tapeflow.cli._backend import opened
from tapeflow.cli._exits import CliError, ExitCode
from tapeflow.cli._logs import LogFormat, configure_logging
from tapeflow.cli._modules import load_definitions
from tapeflow.cli._params import Url
from tapeflow.cli._run import run
from tapeflow.options import WorkerOptions
from tapeflow.worker import Worker

_DEFAULTS = WorkerOptions()


def worker(
    modules: Annotated[
        list[str],
        typer.Argument(
            help="Modules to import ('billing', 'pkg.mod', 'path/to/billing.py'): every "
            "@workflow.defn and @activity.defn function in them is run.",
            show_default=False,
        ),
    ],
    max_workflow_tasks: Annotated[
        int, typer.Option("--max-workflow-tasks", min=1, help="Workflow tasks run at once.")
    ] = _DEFAULTS.max_concurrent_workflow_tasks,
    max_activities: Annotated[
        int, typer.Option("--max-activities", min=1, help="Activities run at once.")
    ] = _DEFAULTS.max_concurrent_activities,
    name: Annotated[
        str | None,
        typer.Option(
            "--name", help="Shown as the lease owner (default: host:pid).", show_default=False
        ),
    ] = None,
    lease: Annotated[
        float,
        typer.Option(
            "--lease",
            min=0.001,
            help="Seconds before another worker takes over this one's tasks if it dies.",
        ),
    ] = _DEFAULTS.lease_duration.total_seconds(),
    queues: Annotated[
        list[str] | None,
        typer.Option(
            "--queue",
            "-q",
            help="A queue to take work from; repeatable (default: the default queue). A "
            "tapeflow.Queue of that name in MODULES is served with its limits.",
            show_default=False,
        ),
    ] = None,
    log_level: Annotated[
        str, typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR.")
    ] = "INFO",
    log_format: Annotated[
        LogFormat,
        typer.Option(
            "--log-format",
            help="text, or json: one object per line, with workflow_id, run, activity "
            "and attempt on the worker's records.",
        ),
    ] = LogFormat.TEXT,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=1,
            max=65535,
            help="Serve /metrics (Prometheus) and /healthz on this port; needs tapeflow[metrics].",
            show_default=False,
        ),
    ] = None,
    url: Url = None,
) -> None:
    """Run a worker for the workflows and activities of MODULES until SIGINT or SIGTERM."""

    async def work() -> None:
        level = logging.getLevelName(log_level.upper())
        if not isinstance(level, int):
            raise CliError(f"--log-level: no level {log_level!r}", ExitCode.USAGE)
        configure_logging(level, log_format)
        definitions = load_definitions(modules)
        if not definitions.workflows and not definitions.activities:
            raise CliError(
                f"no @workflow.defn or @activity.defn functions in {' '.join(modules)}",
                ExitCode.USAGE,
            )
        options = WorkerOptions(
            queues=[definitions.queues.get(q, q) for q in queues] if queues else _DEFAULTS.queues,
            name=name,
            max_concurrent_workflow_tasks=max_workflow_tasks,
            max_concurrent_activities=max_activities,
            lease_duration=timedelta(seconds=lease),
            metrics_port=metrics_port,
        )
        async with opened(url, create=True) as backend:
            await Worker(
                backend,
                workflows=[d.function for d in definitions.workflows],
                activities=[d.function for d in definitions.activities],
                options=options,
            ).run()

    run(work())
