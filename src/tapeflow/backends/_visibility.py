"""Lists and counts of runs, the same way for every backend: which filters a ``RunFilter``
asks for, as the named fragments of the backend's queries.sql (``filter_...``), joined into
the query's ``/* filters */``.

A query built per combination of filters, rather than one query with every filter behind
"parameter IS NULL OR ...", lets the database plan each combination on its own indexes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from tapeflow.backends._rows import NamedRow, json_text, stored_vars
from tapeflow.backends.base import RunFilter, RunKey, WorkflowStatus, WorkflowSummary

FILTERS = "/* filters */"


def filtered(
    query: str,
    fragments: Mapping[str, str],
    where: RunFilter,
    after: RunKey | None,
    when: Callable[[datetime], Any],
    many: Callable[[list[str]], Any],
) -> tuple[str, dict[str, Any]]:
    """``query`` with the fragments ``where`` (and a page's ``after``) needs, and their
    parameters: times as ``when`` stores them, lists as ``many`` passes them."""
    names: list[str] = []
    params: dict[str, Any] = {}

    def use(fragment: str, **values: Any) -> None:
        names.append(fragment)
        params.update(values)

    if len(where.statuses) == 1:  # equality: the status index gives the order too
        use("filter_status", status=where.statuses[0].value)
    elif where.statuses:
        use("filter_statuses", statuses=many([status.value for status in where.statuses]))
    if where.name is not None:
        use("filter_name", name=where.name)
    if where.id_prefix is not None:
        low, high = prefix_range(where.id_prefix)
        use("filter_id_from", id_from=low)
        if high is not None:
            use("filter_id_to", id_to=high)
    if where.created_after is not None:
        use("filter_created_after", created_after=when(where.created_after))
    if where.created_before is not None:
        use("filter_created_before", created_before=when(where.created_before))
    if where.vars:
        use("filter_vars", vars=json_text(dict(where.vars)))
    if not where.all_runs:
        use("filter_latest")
    if after is not None:
        use("filter_after", after_at=when(after.created_at), after_run=after.run_id)
    clause = "\n  AND ".join(f"({fragments[name]})" for name in names) or "TRUE"
    return query.replace(FILTERS, clause), params


def prefix_range(prefix: str) -> tuple[str, str | None]:
    """The ids that start with ``prefix`` as a range in code point order (which UTF-8 bytes
    keep: SQLite's BINARY, PostgreSQL's "C"), so that an index on the id serves it: from
    ``prefix`` up to the next string of its length (None: no end)."""
    stem = prefix
    while stem and stem[-1] == chr(sys.maxunicode):
        stem = stem[:-1]
    if not stem:
        return prefix, None
    following = ord(stem[-1]) + 1
    if 0xD800 <= following <= 0xDFFF:  # surrogates are never in an id
        following = 0xE000
    return prefix, stem[:-1] + chr(following)


def summary(row: NamedRow, when: Callable[[Any], datetime]) -> WorkflowSummary:
    """A ``list_runs`` row, its variables as JSON text and times as stored."""
    completed = row["completed_at"]
    return WorkflowSummary(
        id=row["id"],
        run_id=row["run_id"],
        name=row["name"],
        status=WorkflowStatus(row["status"]),
        created_at=when(row["created_at"]),
        start_at=when(row["start_at"]),
        completed_at=None if completed is None else when(completed),
        task_error=row["last_error"],
        vars=stored_vars(row["vars"]),
    )
