"""Reads tapeflow's tables directly, for what the public API does not show: history sequence
numbers, leases, tasks ready and waiting, inbox rows. Synchronous; the driver calls it in a
thread. A PostgreSQL connection that breaks (a restart run) is reopened on the next call."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from tests.chaos.location import Location, locate

INSPECTOR_APPLICATION = "tapeflow-chaos-inspector"


@dataclass(frozen=True)
class Held:
    """A task a worker held when it died, and its lease token then."""

    kind: str
    """"workflow" or "activity"."""
    id: str
    token: int


@dataclass(frozen=True)
class Waiting:
    """The task that has waited longest, ready to be claimed and unclaimed."""

    seconds: float
    kind: str
    id: str


@dataclass(frozen=True)
class WorkflowRow:
    """One run of a workflow id."""

    id: str
    run_id: str
    run_number: int
    status: str
    history_length: int
    result: str | None
    created_at: float
    completed_at: float | None
    parent_id: str | None


class Inspector:
    def __init__(self, url: str) -> None:
        self.location: Location = locate(url)
        self._conn: Any = None
        self.sqlite = self.location.kind == "sqlite"

    def _connect(self) -> Any:
        if self.sqlite:
            conn = sqlite3.connect(self.location.path, isolation_level=None)
            conn.execute("PRAGMA busy_timeout = 30000")
            return conn
        return psycopg.connect(
            self.location.postgres_url(INSPECTOR_APPLICATION),
            autocommit=True,
            connect_timeout=3,
            options=f"-c search_path={self.location.schema}",
        )

    def _rows(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if not self.sqlite:
            query = query.replace("?", "%s")
        for retry in (True, False):  # a connection broken by a restart: once more on a new one
            try:
                if self._conn is None:
                    self._conn = self._connect()
                rows: list[tuple[Any, ...]] = self._conn.execute(query, tuple(params)).fetchall()
                return rows
            except psycopg.OperationalError:
                self.close()
                if not retry:
                    raise
            except (sqlite3.Error, psycopg.Error):
                self.close()
                raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    # -- times: SQLite stores integer microseconds, PostgreSQL timestamptz ----------------------

    def _now(self) -> str:
        return "?" if self.sqlite else "now()"

    def _seconds(self, expression: str) -> str:
        """An interval (or microseconds) as seconds."""
        if self.sqlite:
            return f"(({expression}) / 1000000.0)"
        return f"extract(epoch FROM ({expression}))"

    def _epoch(self, column: str) -> str:
        return f"({column} / 1000000.0)" if self.sqlite else f"extract(epoch FROM {column})"

    def _now_params(self, count: int) -> list[Any]:
        return [time.time_ns() // 1000] * count if self.sqlite else []

    # -- reads ---------------------------------------------------------------------------------

    def ping(self) -> None:
        self._rows("SELECT 1")

    def workflows(self) -> dict[str, list[WorkflowRow]]:
        """Every workflow id's runs, first to last."""
        result = "result" if self.sqlite else "result::text"
        rows = self._rows(
            f"""SELECT id, run_id, run_number, status, history_length, {result},
                       {self._epoch("created_at")}, {self._epoch("completed_at")}, parent_id
                FROM workflows ORDER BY id, run_number"""
        )
        found: dict[str, list[WorkflowRow]] = {}
        for wid, run_id, number, status, length, stored, created, completed, parent in rows:
            found.setdefault(wid, []).append(
                WorkflowRow(
                    wid,
                    str(run_id),
                    int(number),
                    status,
                    int(length),
                    stored,
                    float(created),
                    None if completed is None else float(completed),
                    parent,
                )
            )
        return found

    def history(self) -> dict[str, list[tuple[int, str]]]:
        """Every run's history rows, (seq, event JSON), in seq order, by run id."""
        event = "event" if self.sqlite else "event::text"
        found: dict[str, list[tuple[int, str]]] = {}
        for run_id, seq, text in self._rows(
            f"SELECT run_id, seq, {event} FROM history ORDER BY run_id, seq"
        ):
            found.setdefault(str(run_id), []).append((int(seq), text))
        return found

    def leftovers(self) -> dict[str, int]:
        """Rows left in the task tables: none once every workflow has finished."""
        return {
            table: int(self._rows(f"SELECT count(*) FROM {table}")[0][0])
            for table in ("workflow_tasks", "activity_tasks", "inbox")
        }

    def finished_count(self) -> int:
        """Workflows started by the client (not children) whose last run has ended,
        whichever way (a cancelled or terminated one too)."""
        rows = self._rows(
            """SELECT count(*) FROM workflows
               WHERE parent_id IS NULL
                 AND status NOT IN ('pending', 'running', 'continued_as_new')"""
        )
        return int(rows[0][0])

    def open_count(self) -> int:
        """Runs not ended: a terminated parent's children end after it."""
        rows = self._rows("SELECT count(*) FROM workflows WHERE status IN ('pending', 'running')")
        return int(rows[0][0])

    def progress(self) -> int:
        """History events committed so far, in all: grows whenever any worker commits."""
        return int(self._rows("SELECT coalesce(sum(history_length), 0) FROM workflows")[0][0])

    def event_delivered(self, workflow_id: str, send_id: str) -> bool:
        """Whether an event carrying this send id (an event's, or the reason of a cancel or a
        terminate) is in the workflow's inbox or history (one read)."""
        event = "event" if self.sqlite else "event::text"
        pattern = f'%"{send_id}"%'  # send ids are distinct and never a quoted substring
        rows = self._rows(
            f"""SELECT count(*) FROM (
                    SELECT 1 FROM inbox JOIN workflows w USING (run_id)
                    WHERE w.id = ? AND {event} LIKE ?
                    UNION ALL
                    SELECT 1 FROM history JOIN workflows w USING (run_id)
                    WHERE w.id = ? AND {event} LIKE ?) found""",
            (workflow_id, pattern, workflow_id, pattern),
        )
        return int(rows[0][0]) > 0

    def held_by(self, owner: str) -> list[Held]:
        """The tasks whose lease names ``owner`` (expired or not): what it held when it died.
        A worker's lease owner is its name, or its name then ``/`` and a suffix."""
        rows = self._rows(
            """SELECT 'workflow', run_id, lease_token FROM workflow_tasks
               WHERE lease_owner = ? OR lease_owner LIKE ?
               UNION ALL
               SELECT 'activity', CAST(id AS TEXT), lease_token FROM activity_tasks
               WHERE lease_owner = ? OR lease_owner LIKE ?""",
            (owner, owner + "/%", owner, owner + "/%"),
        )
        return [Held(kind, str(task_id), int(token)) for kind, task_id, token in rows]

    def leases(self, held: Sequence[Held]) -> dict[tuple[str, str], tuple[str | None, int]]:
        """(owner, token) now of each of these tasks; a task that is gone is left out."""
        found: dict[tuple[str, str], tuple[str | None, int]] = {}
        run_ids = [h.id for h in held if h.kind == "workflow"]
        activity_ids = [int(h.id) for h in held if h.kind == "activity"]
        for kind, table, column, ids in (
            ("workflow", "workflow_tasks", "run_id", run_ids),
            ("activity", "activity_tasks", "id", activity_ids),
        ):
            if not ids:
                continue
            marks = ", ".join("?" * len(ids))
            query = f"SELECT {column}, lease_owner, lease_token FROM {table} WHERE {column} IN "
            for task_id, owner, token in self._rows(f"{query}({marks})", ids):
                found[(kind, str(task_id))] = (owner, int(token))
        return found

    def ready_tasks(self) -> tuple[float, list[tuple[str, str, float]]]:
        """The database's time now (Unix), and every task ready to be claimed and unclaimed:
        (kind, id, ready since, Unix time).

        A workflow task is ready (what the claim query takes) while its inbox holds a visible
        event, it is not leased (never, or its lease ran out) and no backoff holds it; it is
        ready since the latest of its oldest visible event, its lease's end and its backoff's
        end. An activity task likewise since the latest of its visible time and its lease's
        end. An event's visible time is its transaction's start, earlier than its commit:
        ``ReadyWatch`` also bounds the wait by when the task was first seen ready."""
        now = self._now()
        if self.sqlite:
            since_workflow = "max(v.first_seen, coalesce(t.lease_expires_at, 0), t.not_before)"
            since_activity = "max(visible_at, coalesce(lease_expires_at, 0))"
        else:
            since_workflow = (
                "greatest(v.first_seen, coalesce(t.lease_expires_at, '-infinity'), t.not_before)"
            )
            since_activity = "greatest(visible_at, coalesce(lease_expires_at, '-infinity'))"
        query = f"""SELECT 'workflow', t.run_id, {self._epoch(since_workflow)}
                FROM workflow_tasks t
                JOIN (SELECT run_id, min(visible_at) AS first_seen FROM inbox
                      WHERE visible_at <= {now} GROUP BY run_id) v
                  ON v.run_id = t.run_id
                WHERE (t.lease_expires_at IS NULL OR t.lease_expires_at <= {now})
                  AND t.not_before <= {now}
                UNION ALL
                SELECT 'activity', CAST(id AS TEXT), {self._epoch(since_activity)}
                FROM activity_tasks
                WHERE visible_at <= {now}
                  AND (lease_expires_at IS NULL OR lease_expires_at <= {now})"""
        at = time.time()  # the database's clock is this machine's
        params = [round(at * 1_000_000)] * query.count("?") if self.sqlite else []
        rows = self._rows(query, params)
        return at, [(str(kind), str(task_id), float(since)) for kind, task_id, since in rows]

    def describe_task(self, kind: str, task_id: str) -> dict[str, Any]:
        """A task's row (and a workflow task's inbox), for a report."""
        if kind == "workflow":
            columns = "lease_owner, lease_token, lease_expires_at, not_before, failures, last_error"
            rows = self._rows(f"SELECT {columns} FROM workflow_tasks WHERE run_id = ?", (task_id,))
            inbox = self._rows(
                "SELECT id, visible_at, timer_seq FROM inbox WHERE run_id = ? ORDER BY id",
                (task_id,),
            )
            return {"task": [str(v) for v in rows[0]] if rows else None, "inbox": inbox}
        columns = "run_id, seq, attempt, visible_at, lease_owner, lease_token, lease_expires_at"
        rows = self._rows(f"SELECT {columns} FROM activity_tasks WHERE id = ?", (int(task_id),))
        return {"task": [str(v) for v in rows[0]] if rows else None}

    def connections(self, application_name: str) -> int:
        """Open PostgreSQL connections of that application_name."""
        rows = self._rows(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = ?",
            (application_name,),
        )
        return int(rows[0][0])

    def latencies(self, since: float) -> list[float]:
        """Start-to-end seconds of the workflows that ended after ``since`` (Unix time):
        both ends are the database's clock."""
        rows = self._rows(
            f"""SELECT {self._epoch("completed_at")} - {self._epoch("created_at")}
                FROM workflows WHERE completed_at > ?""",
            (since * 1_000_000 if self.sqlite else _timestamp(since),),
        )
        return [float(row[0]) for row in rows]

    def terminate(self, application_name: str) -> int:
        """pg_terminate_backend on every connection of that application_name."""
        rows = self._rows(
            """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
               WHERE application_name = ?""",
            (application_name,),
        )
        return int(rows[0][0])


def _timestamp(unix: float) -> datetime:
    return datetime.fromtimestamp(unix, UTC)


class ReadyWatch:
    """Turns samples of ``Inspector.ready_tasks`` into how long the longest-waiting ready task
    has waited so far: from the latest of its ready-since time and the last sample before the
    one that first saw it ready (so a transaction that took long to commit does not count
    against the workers), to now. It errs long by at most one sampling interval."""

    def __init__(self) -> None:
        self._first_seen: dict[tuple[str, str, float], float] = {}
        self._previous: float | None = None

    def sample(self, at: float, ready: list[tuple[str, str, float]]) -> Waiting:
        seen: dict[tuple[str, str, float], float] = {}
        longest = Waiting(0.0, "", "")
        for kind, task_id, since in ready:
            key = (kind, task_id, since)
            before = self._first_seen.get(key, self._previous if self._previous else since)
            seen[key] = before
            wait = at - max(since, before)
            if wait > longest.seconds:
                longest = Waiting(wait, kind, task_id)
        self._first_seen = seen
        self._previous = at
        return longest


def owned_by(lease_owner: str | None, name: str) -> bool:
    """Whether a lease owner is the worker named ``name``."""
    return lease_owner is not None and (lease_owner == name or lease_owner.startswith(name + "/"))
