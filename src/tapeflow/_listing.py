"""Finding workflows: the client's list and count arguments, checked once, as a backend's
``RunFilter``, and the opaque cursor that carries a page's end to the next page."""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from tapeflow._validate import check_bool, check_int, check_moment, check_name, fail
from tapeflow.backends.base import (
    Backend,
    RunFilter,
    RunKey,
    VarValue,
    Visibility,
    WorkflowStatus,
    WorkflowSummary,
)
from tapeflow.errors import InvalidArgument, TapeflowError

MAX_LIMIT = 1000
"""The most workflows one page holds."""

Statuses = WorkflowStatus | str | Iterable[WorkflowStatus | str] | None
"""One status, several (any of them), or None: any status."""


@dataclass(frozen=True)
class WorkflowPage:
    """One page of a list: its workflows, newest first, and the cursor of the next page
    (None: this is the last)."""

    workflows: list[WorkflowSummary]
    next_cursor: str | None


def visibility(backend: Backend) -> Visibility:
    """The backend's list and count reads; a backend without them cannot find workflows."""
    if not isinstance(backend, Visibility):
        raise TapeflowError(f"{backend!r} cannot list workflows (no Visibility reads)")
    return backend


def run_filter(
    status: Statuses,
    name: str | None,
    id_prefix: str | None,
    started_after: datetime | None,
    started_before: datetime | None,
    vars: Mapping[str, VarValue] | None,
    all_runs: bool,
) -> RunFilter:
    return RunFilter(
        statuses=_statuses(status),
        name=None if name is None else check_name(name, "name"),
        id_prefix=None if id_prefix is None else check_name(id_prefix, "id_prefix"),
        created_after=None
        if started_after is None
        else check_moment(started_after, "started_after"),
        created_before=None
        if started_before is None
        else check_moment(started_before, "started_before"),
        vars=_vars(vars),
        all_runs=check_bool(all_runs, "all_runs"),
    )


def check_limit(limit: object) -> int:
    value = check_int(limit, "limit", minimum=1)
    if value > MAX_LIMIT:
        fail("limit", limit, f"an integer from 1 to {MAX_LIMIT}")
    return value


def _statuses(status: Statuses) -> tuple[WorkflowStatus, ...]:
    if status is None:
        return ()
    given = [status] if isinstance(status, str) else list(status)
    if not given:
        fail("status", status, "a status, several, or None")
    found = []
    for one in given:
        try:
            found.append(WorkflowStatus(one))
        except ValueError:
            fail("status", one, "one of " + ", ".join(repr(s.value) for s in WorkflowStatus))
    return tuple(dict.fromkeys(found))


def _vars(vars: Mapping[str, VarValue] | None) -> tuple[tuple[str, VarValue], ...]:
    """Variables to match, each to a JSON scalar (what a list compares exactly alike on
    every backend)."""
    if vars is None:
        return ()
    if not isinstance(vars, Mapping):
        fail("vars", vars, "a mapping of variable names to values")
    checked = []
    for key, value in vars.items():
        what = f"vars[{key!r}]"
        check_name(key, "a variable name in vars")
        if not (value is None or isinstance(value, str | int | float)):
            fail(what, value, "a string, a number, a bool or None")
        if isinstance(value, float) and not math.isfinite(value):
            fail(what, value, "a finite number")
        checked.append((key, value))
    return tuple(checked)


def encode_cursor(last: WorkflowSummary) -> str:
    """Where the next page starts: just past ``last`` in the list's order."""
    key = json.dumps([last.created_at.isoformat(), last.run_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def decode_cursor(cursor: object) -> RunKey:
    expected = "a next_cursor a page of this list gave"
    if not isinstance(cursor, str):
        fail("cursor", cursor, expected)
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, run_id = json.loads(text)
        moment = datetime.fromisoformat(at)
        if not isinstance(run_id, str) or moment.utcoffset() is None:
            raise ValueError(text)
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError) as exc:
        raise InvalidArgument(f"cursor must be {expected}, got {cursor!r}") from exc
    return RunKey(moment, run_id)
