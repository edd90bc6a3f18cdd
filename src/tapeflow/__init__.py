"""tapeflow: durable workflows as ordinary async Python.

A workflow is a tape of history events; running it is replaying the tape.
"""

import logging as _logging
from importlib import metadata as _metadata

from tapeflow import activity, workflow
from tapeflow._listing import WorkflowPage
from tapeflow.backends.base import Backend, WorkflowRecord, WorkflowStatus, WorkflowSummary
from tapeflow.backends.connect import connect
from tapeflow.client import Client, WorkflowHandle
from tapeflow.codec import AesGcmCodec, PayloadCodec, ZlibCodec
from tapeflow.debugger import WorkflowDebugger
from tapeflow.errors import (
    ActivityCancelled,
    ActivityError,
    BackendUnavailable,
    ChildWorkflowError,
    CodecError,
    InvalidArgument,
    LeaseLost,
    NonDeterminismError,
    NonRetryableError,
    NotADefinition,
    PayloadError,
    ScheduleAlreadyExists,
    ScheduleNotFound,
    SchemaVersionError,
    TapeflowError,
    UpdateFailed,
    WorkflowAlreadyCompleted,
    WorkflowAlreadyExists,
    WorkflowCancelled,
    WorkflowFailed,
    WorkflowInterrupted,
    WorkflowNotFound,
    WorkflowSandboxError,
    WorkflowStillOpen,
    WorkflowTerminated,
    WorkflowTimedOut,
)
from tapeflow.options import RetryPolicy, WorkerOptions
from tapeflow.queues import Queue
from tapeflow.schedules import ScheduleDescription, ScheduleHandle, ScheduleSpec
from tapeflow.sync_client import SyncClient, SyncScheduleHandle, SyncWorkflowHandle
from tapeflow.worker import Worker, WorkerHealth

try:
    __version__ = _metadata.version("tapeflow")
except _metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

# A library leaves logging to the application: without this, Python's last-resort handler
# would print tapeflow's warnings to stderr of programs that never configured logging.
_logging.getLogger("tapeflow").addHandler(_logging.NullHandler())

__all__ = [
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
