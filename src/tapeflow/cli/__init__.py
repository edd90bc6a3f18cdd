"""The ``tapeflow`` command: workers, workflows and the database from a shell.

Built on Typer (and rich for tables) over the same public API a program uses: ``Client``,
``WorkflowHandle``, ``WorkflowDebugger`` and ``Worker``. Every command that prints takes
``--json``; exit codes are listed in ``ExitCode``.
"""

from tapeflow.cli._app import app, main
from tapeflow.cli._exits import ExitCode

__all__ = ["ExitCode", "app", "main"]
