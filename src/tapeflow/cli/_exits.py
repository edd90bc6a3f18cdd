"""Exit codes a script can branch on, and the one place errors become them."""

from __future__ import annotations

import enum

from tapeflow.errors import (
    BackendUnavailable,
    InvalidArgument,
    ScheduleAlreadyExists,
    ScheduleNotFound,
    SchemaVersionError,
    TapeflowError,
    UpdateFailed,
    WorkflowAlreadyCompleted,
    WorkflowAlreadyExists,
    WorkflowFailed,
    WorkflowNotFound,
    WorkflowStillOpen,
)


class ExitCode(enum.IntEnum):
    OK = 0
    ERROR = 1
    """Anything else: the database is unavailable, the command is not available yet..."""
    USAGE = 2
    """The command line is wrong: an unknown option, a bad URL, JSON that does not parse."""
    NOT_FOUND = 3
    """No workflow (or schedule) has that id."""
    WORKFLOW_FAILED = 4
    """``result``: the workflow ended without completing (failed, cancelled, terminated,
    timed out); the failure is printed."""
    NOT_FINISHED = 5
    """``result``: the workflow is still running (without ``--wait``, or past ``--timeout``);
    ``update``: no answer yet, past ``--timeout``."""
    CONFLICT = 6
    """The id is taken (``start``), the workflow has ended (``event``, ``cancel``...), or
    it has not (``delete``)."""
    UPDATE_FAILED = 7
    """``update``: the update was rejected, or its handler failed; the failure is printed."""


class CliError(Exception):
    """An error the command reports as one line, exiting with ``code``."""

    def __init__(self, message: str, code: ExitCode = ExitCode.ERROR) -> None:
        super().__init__(message)
        self.code = code


def exit_code_for(error: BaseException) -> ExitCode:
    """The code a script sees for ``error``; the most specific class decides."""
    if isinstance(error, CliError):
        return error.code
    for kind, code in _CODES:
        if isinstance(error, kind):
            return code
    return ExitCode.ERROR


_CODES: tuple[tuple[type[TapeflowError], ExitCode], ...] = (
    (WorkflowNotFound, ExitCode.NOT_FOUND),
    (ScheduleNotFound, ExitCode.NOT_FOUND),
    (ScheduleAlreadyExists, ExitCode.CONFLICT),
    (WorkflowFailed, ExitCode.WORKFLOW_FAILED),
    (UpdateFailed, ExitCode.UPDATE_FAILED),
    (WorkflowAlreadyExists, ExitCode.CONFLICT),
    (WorkflowAlreadyCompleted, ExitCode.CONFLICT),
    (WorkflowStillOpen, ExitCode.CONFLICT),
    (InvalidArgument, ExitCode.USAGE),
    (BackendUnavailable, ExitCode.ERROR),
    (SchemaVersionError, ExitCode.ERROR),
)

EXIT_CODES_HELP = (
    "Exit codes: 0 ok, 1 error, 2 usage (bad option, URL or JSON), 3 workflow or schedule not "
    "found, 4 workflow did not complete (result), 5 not finished yet (result, update), "
    "6 id taken, or workflow ended (or, for delete, still open), "
    "7 update rejected or failed (update)."
)
