"""tapeflow's exceptions: one root, a name for every outcome a caller may want to catch."""

from __future__ import annotations


class TapeflowError(Exception):
    """Root of every error tapeflow raises on purpose."""


class NonRetryableError(TapeflowError):
    """Raised by an activity to make its failure final: no retry, handed to the workflow.

    Any other exception escaping an activity is treated as transient and retried.
    """

    def __init__(self, message: str, *, type: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.type = type or "NonRetryableError"


class ActivityError(TapeflowError):
    """Raised inside a workflow when an activity failed for good (final error or retries spent)."""

    def __init__(
        self, activity: str, type: str, message: str, *, attempt: int, traceback: str | None = None
    ) -> None:
        super().__init__(
            f"activity {activity!r} failed after {attempt} attempt(s): {type}: {message}"
        )
        self.activity = activity
        self.type = type
        self.message = message
        self.attempt = attempt
        self.traceback = traceback


class ChildWorkflowError(TapeflowError):
    """Raised inside a parent workflow when a child did not complete: it failed, was
    cancelled, terminated or timed out (``type``: its error's type, ``"CancelledError"``,
    ``"Terminated"``, ``"TimeoutError"``), or its id was taken (``"WorkflowAlreadyExists"``)."""

    def __init__(
        self,
        workflow_id: str,
        type: str,
        message: str,
        *,
        status: str | None = None,
        traceback: str | None = None,
    ) -> None:
        super().__init__(f"child workflow {workflow_id!r} did not complete: {type}: {message}")
        self.workflow_id = workflow_id
        self.type = type
        self.message = message
        self.status = status
        """The child's status (``WorkflowStatus`` value); None if it never started."""
        self.traceback = traceback


class WorkflowFailed(TapeflowError):
    """Raised by a workflow handle's ``result()`` when the workflow ended with an error."""

    def __init__(self, workflow_id: str, type: str, message: str, traceback: str | None = None):
        super().__init__(f"workflow {workflow_id!r} failed: {type}: {message}")
        self.workflow_id = workflow_id
        self.type = type
        self.message = message
        self.traceback = traceback


class WorkflowCancelled(WorkflowFailed):
    """The workflow was asked to cancel (``handle.cancel``) and let the ``CancelledError``
    escape: ``type`` is ``"CancelledError"``, ``message`` the reason given."""


class WorkflowTerminated(WorkflowFailed):
    """The workflow was ended by ``handle.terminate``, no code of it run: ``type`` is
    ``"Terminated"``, ``message`` the reason given."""


class WorkflowTimedOut(WorkflowFailed):
    """The workflow ran past its ``execution_timeout`` and was ended, no code of it run:
    ``type`` is ``"TimeoutError"``."""


class UpdateFailed(TapeflowError):
    """Raised by ``handle.execute_update`` when the update gave no result; the workflow goes
    on. ``rejected``: it was refused before anything of it was recorded (its validator
    raised, the workflow has no handler of that name, the arguments do not fit it, or it
    had finished). Otherwise it ran and is in history: its handler raised, or the workflow
    ended before the handler finished (``type`` ``"WorkflowAlreadyCompleted"``). ``type``,
    ``message`` and ``traceback`` are the error's."""

    def __init__(
        self,
        workflow_id: str,
        update_id: str,
        name: str,
        type: str,
        message: str,
        *,
        rejected: bool,
        traceback: str | None = None,
    ) -> None:
        how = "was rejected" if rejected else "failed"
        super().__init__(f"update {name!r} of workflow {workflow_id!r} {how}: {type}: {message}")
        self.workflow_id = workflow_id
        self.update_id = update_id
        self.name = name
        self.type = type
        self.message = message
        self.rejected = rejected
        self.traceback = traceback


class ActivityCancelled(TapeflowError):
    """Raised inside an activity by ``activity.heartbeat()`` once its attempt no longer
    counts: the workflow cancelled it, the attempt timed out, or the workflow ended. Its
    outcome would be discarded; let it end the attempt (cleaning up on the way)."""


class WorkflowAlreadyExists(TapeflowError):
    """A workflow with this id was already started; ids are unique for all time."""

    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"a workflow with id {workflow_id!r} already exists")
        self.workflow_id = workflow_id


class WorkflowNotFound(TapeflowError):
    """No workflow has this id."""

    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"no workflow with id {workflow_id!r}")
        self.workflow_id = workflow_id


class WorkflowAlreadyCompleted(TapeflowError):
    """The workflow has ended, however it ended; it accepts no more events, cancels or
    terminates.

    ``status`` says how it ended (a ``WorkflowStatus`` value: ``"completed"``, ``"failed"``,
    ``"cancelled"``, ``"terminated"``, ``"timed_out"``).
    """

    def __init__(self, workflow_id: str, status: str) -> None:
        ended = status.replace("_", " ")
        super().__init__(f"workflow {workflow_id!r} has already {ended}: it accepts no more events")
        self.workflow_id = workflow_id
        self.status = status


class WorkflowStillOpen(TapeflowError):
    """The workflow's latest run has not ended (``status``: ``"pending"`` or ``"running"``),
    and what was asked (a delete) is only for a closed workflow; nothing was written."""

    def __init__(self, workflow_id: str, status: str) -> None:
        super().__init__(
            f"workflow {workflow_id!r} is still {status}: only a closed workflow can be deleted"
        )
        self.workflow_id = workflow_id
        self.status = status


class ScheduleNotFound(TapeflowError):
    """No schedule has this id."""

    def __init__(self, schedule_id: str) -> None:
        super().__init__(f"no schedule with id {schedule_id!r}")
        self.schedule_id = schedule_id


class ScheduleAlreadyExists(TapeflowError):
    """A schedule with this id exists; nothing was written."""

    def __init__(self, schedule_id: str) -> None:
        super().__init__(f"a schedule with id {schedule_id!r} already exists")
        self.schedule_id = schedule_id


class InvalidArgument(TapeflowError, ValueError):
    """Bad input from the caller (ids, durations, arguments); nothing was written."""


class NotADefinition(InvalidArgument, TypeError):
    """A function was used as a workflow or activity without its ``defn`` decorator."""


class CodecError(TapeflowError):
    """A stored payload cannot be decoded by the configured codecs (its key is not among
    them, or it was altered). Not a PayloadError: the data is fine, the configuration is
    not, so a workflow task that meets it is retried (its error shown) until the key is
    given, never failed for good."""


class PayloadError(InvalidArgument):
    """A value does not match its annotation or cannot be turned into JSON (or back)."""


class NonDeterminismError(TapeflowError):
    """Replaying a workflow took a different decision than its recorded history.

    The workflow task fails and is retried later; nothing is written to history, so the
    workflow resumes once its code is fixed.
    """


class WorkflowSandboxError(TapeflowError):
    """Workflow code tried something that would break replay (real I/O, threads, executors)."""


class WorkflowInterrupted(TapeflowError):
    """Workflow code raised a BaseException outside Exception (SystemExit, KeyboardInterrupt,
    a subclass of the user's own); the original is its ``__cause__``.

    Such an exception stops a process, not a workflow: recording it as the workflow's
    failed result would end the workflow for good over a stray ``sys.exit()`` or a Ctrl-C
    handler. So the workflow task fails instead, like a non-determinism error: nothing is
    written to history, the task is retried with backoff (its error shown by ``describe()``),
    and the workflow resumes once the code stops raising. ``asyncio.CancelledError`` is not
    one of them: cancelling is the workflow's own business, and fails the workflow.
    """


class LeaseLost(TapeflowError):
    """This worker no longer holds the task's lease: another worker took it over.

    The caller's result is discarded, never written.
    """


class ActivityTaskGone(LeaseLost):
    """The activity task no longer exists: its workflow cancelled it, or ended. The
    attempt's outcome is discarded, as it should be; nothing went wrong."""


class UnseenEvents(TapeflowError):
    """A workflow task would have ended its workflow while its inbox held events the task
    had not seen (an event sent while the task ran): ending would drop them. Nothing of
    the task was written; given back, it runs again with them in view."""


class BackendUnavailable(TapeflowError):
    """The database could not be reached or dropped the connection; the operation may or
    may not have been committed. Workers retry with backoff; fenced writes make a retry of
    something already committed harmless."""


class SchemaVersionError(TapeflowError):
    """The database schema is newer than this version of tapeflow understands."""
