"""The public surface is locked: changing it is a decision, not an accident."""

from __future__ import annotations

import tomllib
from pathlib import Path

import tapeflow
from tapeflow import activity, testing, workflow


def test_package_exports() -> None:
    assert sorted(tapeflow.__all__) == [
        "ActivityCancelled",
        "ActivityError",
        "AesGcmCodec",
        "Backend",
        "BackendUnavailable",
        "ChildWorkflowError",
        "Client",
        "CodecError",
        "InvalidArgument",
        "LeaseLost",
        "NonDeterminismError",
        "NonRetryableError",
        "NotADefinition",
        "PayloadCodec",
        "PayloadError",
        "Queue",
        "RetryPolicy",
        "ScheduleAlreadyExists",
        "ScheduleDescription",
        "ScheduleHandle",
        "ScheduleNotFound",
        "ScheduleSpec",
        "SchemaVersionError",
        "SyncClient",
        "SyncScheduleHandle",
        "SyncWorkflowHandle",
        "TapeflowError",
        "UpdateFailed",
        "Worker",
        "WorkerHealth",
        "WorkerOptions",
        "WorkflowAlreadyCompleted",
        "WorkflowAlreadyExists",
        "WorkflowCancelled",
        "WorkflowDebugger",
        "WorkflowFailed",
        "WorkflowHandle",
        "WorkflowInterrupted",
        "WorkflowNotFound",
        "WorkflowPage",
        "WorkflowRecord",
        "WorkflowSandboxError",
        "WorkflowStatus",
        "WorkflowStillOpen",
        "WorkflowSummary",
        "WorkflowTerminated",
        "WorkflowTimedOut",
        "ZlibCodec",
        "activity",
        "connect",
        "workflow",
    ]
    for name in tapeflow.__all__:
        assert getattr(tapeflow, name) is not None


def test_workflow_api_exports() -> None:
    assert sorted(workflow.__all__) == [
        "ChildWorkflowHandle",
        "ParentClosePolicy",
        "WorkflowInfo",
        "continue_as_new",
        "defn",
        "deprecate_patch",
        "execute_activity",
        "execute_child_workflow",
        "info",
        "is_replaying",
        "logger",
        "now",
        "on_event",
        "on_update",
        "patched",
        "random",
        "send_event",
        "set_var",
        "side_effect",
        "sleep",
        "sleep_until",
        "start_child_workflow",
        "uuid4",
        "wait_condition",
        "wait_event",
    ]


def test_activity_api_exports() -> None:
    assert sorted(activity.__all__) == [
        "ActivityInfo",
        "defn",
        "heartbeat",
        "info",
        "is_cancelled",
        "retry_after",
        "retry_at",
    ]


def test_testing_exports() -> None:
    assert sorted(testing.__all__) == [
        "Replayed",
        "WorkflowEnvironment",
        "load_history",
        "replay",
        "save_history",
    ]


def test_every_error_has_one_root() -> None:
    errors = [getattr(tapeflow, n) for n in tapeflow.__all__ if n.endswith(("Error", "Failed"))]
    errors += [tapeflow.WorkflowNotFound, tapeflow.WorkflowAlreadyExists, tapeflow.LeaseLost]
    errors += [tapeflow.WorkflowCancelled, tapeflow.WorkflowTerminated, tapeflow.WorkflowTimedOut]
    errors += [
        tapeflow.ActivityCancelled,
        tapeflow.ScheduleNotFound,
        tapeflow.ScheduleAlreadyExists,
    ]
    assert all(issubclass(e, tapeflow.TapeflowError) for e in errors)


def test_version_is_the_one_the_package_declares() -> None:
    """`__version__` is read from the installed metadata, so it cannot drift from pyproject."""
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    declared = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"]
    assert tapeflow.__version__ == declared
    assert "__version__" not in tapeflow.__all__
