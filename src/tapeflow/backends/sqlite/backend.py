"""SQLite backend: one connection owned by one thread, a whole transaction per hop.

Every method runs its transaction as one function on the connection's own thread, so the
event loop never blocks and a transaction is never interleaved with another. Writers take
the database lock up front (``BEGIN IMMEDIATE``); several processes may share one file
(WAL mode), waiting on each other through ``busy_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from tapeflow.backends._pollers import PollRecorder
from tapeflow.backends._rows import (
    FAILURE,
    activity_task,
    history,
    json_text,
    workflow_record,
    workflow_task,
)
from tapeflow.backends._sql_files import load_queries, migrations
from tapeflow.backends.base import (
    STICKY_FOR,
    ActivityTask,
    Continuation,
    Continued,
    EagerActivities,
    LeaseRef,
    NewWorkflow,
    ResumeWorkflow,
    TaskKind,
    WorkflowRecord,
    WorkflowStatus,
    WorkflowTask,
)
from tapeflow.backends.plan import CommitPlan, commit_topics, eager_task, plan_commit
from tapeflow.backends.wakeups import Wakeups, Watch, work_topic
from tapeflow.errors import (
    BackendUnavailable,
    LeaseLost,
    SchemaVersionError,
    UnseenEvents,
    WorkflowAlreadyCompleted,
    WorkflowAlreadyExists,
    WorkflowNotFound,
)
from tapeflow.history import (
    ActivityCompleted,
    ActivityFailed,
    EventReceived,
    Failure,
    HistoryEvent,
    Incoming,
    JSONValue,
    WorkflowExecutionStarted,
    encode_event,
)

_T = TypeVar("_T")
_Q = load_queries(__package__ or "tapeflow.backends.sqlite")


def _now_us() -> int:
    return time.time_ns() // 1000


def _us(moment: datetime) -> int:
    return round(moment.timestamp() * 1_000_000)


def _dt(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, UTC)


def _maybe_dt(us: int | None) -> datetime | None:
    return None if us is None else _dt(us)


class SQLiteBackend:
    def __init__(self, path: str | Path, *, synchronous: str = "FULL") -> None:
        self.path = str(path)
        self._synchronous = synchronous
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._wakeups = Wakeups()
        self._polls = PollRecorder()

    def __repr__(self) -> str:
        return f"SQLiteBackend({self.path!r})"

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="tapeflow-sqlite")
        await self._run(self._connect)

    async def close(self) -> None:
        if self._executor is None:
            return
        await self._run(self._disconnect)
        self._executor.shutdown(wait=True)
        self._executor = None

    def _connect(self) -> None:
        if self.path not in ("", ":memory:"):
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            # Owner-only from its creation on; SQLite gives the WAL and SHM files the mode of
            # the database file.
            with contextlib.suppress(FileExistsError):  # it keeps the mode its owner chose
                Path(self.path).touch(mode=0o600, exist_ok=False)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 30000")
        _retry_while_locked(lambda: conn.execute("PRAGMA journal_mode = WAL"))
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        self._conn = conn
        self._migrate(conn)

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        """Bring the schema to the newest version, once, under the write lock."""
        steps = migrations("tapeflow.backends.sqlite")
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = conn.execute("PRAGMA user_version").fetchone()[0]
            if current > len(steps):
                raise SchemaVersionError(
                    f"the database schema is version {current}, newer than this tapeflow "
                    f"knows ({len(steps)}): upgrade tapeflow"
                )
            for version, script in steps[current:]:
                for statement in _statements(script):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        if self._executor is None:
            raise RuntimeError("the backend is not open: use 'async with tapeflow.connect(...)'")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except sqlite3.OperationalError as exc:  # locked past busy_timeout, disk I/O error
            raise BackendUnavailable(f"SQLite database {self.path!r}: {exc}") from exc

    async def _write(self, fn: Callable[[sqlite3.Connection], Iterable[str]]) -> None:
        """Run ``fn`` in one write transaction, then wake the topics it returns."""
        topics = await self._run(self._transaction, fn)
        self._wakeups.notify(topics)

    def _transaction(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        conn = self._conn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    async def _read(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        def run() -> _T:
            assert self._conn is not None
            result: _T = fn(self._conn)
            return result

        return await self._run(run)

    # -- clients ---------------------------------------------------------------------------

    async def create_workflow(self, new: NewWorkflow) -> None:
        def write(conn: sqlite3.Connection) -> list[str]:
            now = _now_us()
            start_at = _us(new.start_at) if new.start_at else now
            try:
                conn.execute(
                    _Q["insert_workflow"],
                    {
                        "id": new.id,
                        "name": new.name,
                        "version": new.version,
                        "args": json_text(new.args),
                        "now": now,
                        "start_at": start_at,
                    },
                )
            except sqlite3.IntegrityError:
                raise WorkflowAlreadyExists(new.id) from None
            conn.execute(_Q["insert_workflow_task"], {"id": new.id, "name": new.name})
            started = WorkflowExecutionStarted(
                name=new.name,
                version=new.version,
                args=new.args,
                started_at=_dt(start_at),
            )
            _insert_inbox(conn, new.id, started, start_at)
            return [work_topic(TaskKind.WORKFLOW, new.name)]

        await self._write(write)

    async def get_workflow(self, workflow_id: str) -> WorkflowRecord:
        def read(conn: sqlite3.Connection) -> WorkflowRecord:
            row = conn.execute(_Q["get_workflow"], {"id": workflow_id, "now": _now_us()}).fetchone()
            if row is None:
                raise WorkflowNotFound(workflow_id)
            times = (_dt(row[5]), _dt(row[6]), _maybe_dt(row[7]))
            return workflow_record((*row[:5], *times, *row[8:]))

        return await self._read(read)

    async def load_history(self, workflow_id: str) -> list[HistoryEvent]:
        def read(conn: sqlite3.Connection) -> list[HistoryEvent]:
            rows = conn.execute(_Q["load_history"], {"id": workflow_id}).fetchall()
            if not rows and not _exists(conn, workflow_id):
                raise WorkflowNotFound(workflow_id)
            return history(workflow_id, (row[0] for row in rows))

        return await self._read(read)

    async def send_event(self, workflow_id: str, name: str, payload: JSONValue) -> None:
        def write(conn: sqlite3.Connection) -> list[str]:
            row = conn.execute(_Q["workflow_status"], {"id": workflow_id}).fetchone()
            if row is None:
                raise WorkflowNotFound(workflow_id)
            if (status := WorkflowStatus(row[0])).finished:
                raise WorkflowAlreadyCompleted(workflow_id, status)
            event = EventReceived(name=name, payload=payload)
            # Not seen before the workflow starts: its history begins with its start.
            _insert_inbox(conn, workflow_id, event, max(_now_us(), row[2]))
            return [work_topic(TaskKind.WORKFLOW, row[1])]

        await self._write(write)

    @property
    def wakes_other_processes(self) -> bool:
        """No: other processes' commits are seen when the poll interval runs out."""
        return False

    def watch(self, topics: Iterable[str]) -> Watch:
        return self._wakeups.watch(topics)

    # -- workflow tasks --------------------------------------------------------------------

    async def claim_workflow_tasks(
        self, names: Sequence[str], owner: str, lease: timedelta, limit: int
    ) -> list[WorkflowTask]:
        polled = self._polls.due(TaskKind.WORKFLOW, names)

        def write(conn: sqlite3.Connection) -> list[WorkflowTask]:
            now = _now_us()
            _record_poll(conn, TaskKind.WORKFLOW, polled, now)
            ids = [
                row[0]
                for row in conn.execute(
                    _Q["ready_workflow_tasks"],
                    {
                        "names": json_text(list(names)),
                        "now": now,
                        "limit": limit,
                        "owner": owner,
                        "sticky": _micros(STICKY_FOR),
                    },
                )
            ]
            expires = now + _micros(lease)
            return [
                task
                for workflow_id in ids
                for task in _lease_workflow(conn, workflow_id, owner, expires, now, steal=True)
            ]

        if not names:
            return []
        return await self._run(self._transaction, write)

    async def commit_workflow_task(
        self,
        task: WorkflowTask,
        consumed: Sequence[int],
        events: Sequence[HistoryEvent],
        eager: EagerActivities | None = None,
    ) -> list[ActivityTask]:
        plan = plan_commit(events)
        topics = commit_topics(task.workflow_id, task.workflow_name, plan, eager)
        taken: list[ActivityTask] = []

        def write(conn: sqlite3.Connection) -> list[str]:
            now = _now_us()
            _check_workflow_lease(conn, task, now)
            taken.extend(_apply_commit(conn, task, consumed, events, plan, eager, now))
            return topics

        await self._write(write)
        return taken

    async def abandon_workflow_task(
        self, task: WorkflowTask, error: str | None, delay: timedelta
    ) -> None:
        def write(conn: sqlite3.Connection) -> list[str]:
            now = _now_us()
            cursor = conn.execute(
                _Q["abandon_workflow_task"],
                {
                    "id": task.workflow_id,
                    "token": task.lease_token,
                    "now": now,
                    "error": error,
                    "not_before": now + _micros(delay),
                },
            )
            if cursor.rowcount == 0:
                raise LeaseLost(f"workflow task {task.workflow_id!r}: lease lost")
            return [work_topic(TaskKind.WORKFLOW, task.workflow_name)]

        await self._write(write)

    # -- activity tasks --------------------------------------------------------------------

    async def claim_activity_tasks(
        self, names: Sequence[str], owner: str, lease: timedelta, limit: int
    ) -> list[ActivityTask]:
        polled = self._polls.due(TaskKind.ACTIVITY, names)

        def write(conn: sqlite3.Connection) -> list[ActivityTask]:
            now = _now_us()
            _record_poll(conn, TaskKind.ACTIVITY, polled, now)
            ids = [
                row[0]
                for row in conn.execute(
                    _Q["ready_activity_tasks"],
                    {"names": json_text(list(names)), "now": now, "limit": limit},
                )
            ]
            tasks = []
            for task_id in ids:
                row = conn.execute(
                    _Q["lease_activity_task"],
                    {"owner": owner, "expires": now + _micros(lease), "id": task_id},
                ).fetchone()
                (id_, wid, seq, name, args, retry, attempt, token, workflow_name, details) = row
                tasks.append(
                    activity_task(
                        id_, wid, workflow_name, seq, name, args, retry, attempt, token, details
                    )
                )
            return tasks

        if not names:
            return []
        return await self._run(self._transaction, write)

    async def reclaim_workflow_task(
        self, workflow_id: str, resume: ResumeWorkflow
    ) -> WorkflowTask | None:
        def write(conn: sqlite3.Connection) -> list[WorkflowTask]:
            now = _now_us()
            expires = now + _micros(resume.lease)
            return _lease_workflow(
                conn, workflow_id, resume.owner, expires, now, query="relet_workflow_task"
            )

        found = await self._run(self._transaction, write)
        return found[0] if found else None

    async def reclaim_eager_activities(
        self, workflow_id: str, eager: EagerActivities
    ) -> list[ActivityTask]:
        def write(conn: sqlite3.Connection) -> list[ActivityTask]:
            now = _now_us()
            rows = conn.execute(
                _Q["reclaim_eager_activities"],
                {
                    "workflow_id": workflow_id,
                    "seqs": json_text(sorted(eager.seqs)),
                    "owner": eager.owner,
                    "now": now,
                    "expires": now + _micros(eager.lease),
                },
            ).fetchall()
            return [
                activity_task(id_, wid, wf_name, seq, name, args, retry, attempt, token, details)
                for id_, wid, seq, name, args, retry, attempt, token, wf_name, details in rows
            ]

        return await self._run(self._transaction, write)

    async def complete_activity_task(
        self,
        task: ActivityTask,
        outcome: ActivityCompleted | ActivityFailed,
        resume: ResumeWorkflow | None = None,
    ) -> WorkflowTask | None:
        done = await self._complete(task, outcome, resume, None)
        return done.resumed

    async def continue_after_activity(
        self,
        task: ActivityTask,
        outcome: ActivityCompleted | ActivityFailed,
        continuation: Continuation,
    ) -> Continued:
        return await self._complete(task, outcome, continuation.resume, continuation)

    async def _complete(
        self,
        task: ActivityTask,
        outcome: ActivityCompleted | ActivityFailed,
        resume: ResumeWorkflow | None,
        continuation: Continuation | None,
    ) -> Continued:
        done: list[Continued] = []

        def write(conn: sqlite3.Connection) -> list[str]:
            now = _now_us()
            cursor = conn.execute(
                _Q["delete_activity_task"], {"id": task.id, "token": task.lease_token, "now": now}
            )
            if cursor.rowcount == 0:
                raise LeaseLost(f"activity task {task.id} ({task.name!r}): lease lost")
            wid = task.workflow_id
            expires = now + _micros(resume.lease) if resume else now
            held: list[WorkflowTask] = []
            if continuation is not None:
                held = _lease_workflow(conn, wid, continuation.resume.owner, expires, now)
                if held and held[0].history_length == continuation.history_length:
                    plan = plan_commit(continuation.events)
                    eager = continuation.eager
                    with contextlib.suppress(UnseenEvents):  # then recorded as without it
                        taken = _apply_commit(
                            conn, held[0], [], continuation.events, plan, eager, now
                        )
                        done.append(Continued(True, taken, None))
                        return commit_topics(wid, task.workflow_name, plan, eager)
            _insert_inbox(conn, wid, outcome, now)
            resumed: list[WorkflowTask] = []
            if resume is not None:  # leased now, or read again with the outcome in its inbox
                query = "relet_workflow_task" if held else "lease_workflow_task"
                resumed = _lease_workflow(conn, wid, resume.owner, expires, now, query=query)
            done.append(Continued(False, [], resumed[0] if resumed else None))
            return [] if resumed else [work_topic(TaskKind.WORKFLOW, task.workflow_name)]

        await self._write(write)
        return done[0]

    async def retry_activity_task(
        self,
        task: ActivityTask,
        failure: Failure,
        delay: timedelta,
        heartbeat_details: JSONValue = None,
    ) -> None:
        def write(conn: sqlite3.Connection) -> list[str]:
            now = _now_us()
            cursor = conn.execute(
                _Q["retry_activity_task"],
                {
                    "id": task.id,
                    "token": task.lease_token,
                    "now": now,
                    "visible_at": now + _micros(delay),
                    "details": None if heartbeat_details is None else json_text(heartbeat_details),
                    "failure": FAILURE.dump_json(failure).decode(),
                },
            )
            if cursor.rowcount == 0:
                raise LeaseLost(f"activity task {task.id} ({task.name!r}): lease lost")
            return [work_topic(TaskKind.ACTIVITY, task.name)]

        await self._write(write)

    # -- both ------------------------------------------------------------------------------

    async def extend_leases(
        self,
        leases: Sequence[LeaseRef],
        lease: timedelta,
        heartbeats: Mapping[str, JSONValue] | None = None,
    ) -> list[LeaseRef]:
        beats = heartbeats or {}

        def write(conn: sqlite3.Connection) -> list[LeaseRef]:
            now = _now_us()
            lost = []
            for ref in leases:
                query = (
                    "extend_workflow_lease"
                    if ref.kind is TaskKind.WORKFLOW
                    else "extend_activity_lease"
                )
                cursor = conn.execute(
                    _Q[query],
                    {
                        "id": ref.id if ref.kind is TaskKind.WORKFLOW else int(ref.id),
                        "token": ref.token,
                        "now": now,
                        "expires": now + _micros(lease),
                        "details": json_text(beats[ref.id]) if ref.id in beats else None,
                    },
                )
                if cursor.rowcount == 0:
                    lost.append(ref)
            return lost

        if not leases:
            return []
        return await self._run(self._transaction, write)

    async def next_due(
        self, kind: TaskKind, names: Sequence[str], owner: str | None = None
    ) -> timedelta | None:
        query = "next_due_workflow" if kind is TaskKind.WORKFLOW else "next_due_activity"
        params = {
            "names": json_text(list(names)),
            "owner": owner,
            "sticky": _micros(STICKY_FOR),
        }

        def read(conn: sqlite3.Connection) -> timedelta | None:
            now = _now_us()
            (due,) = conn.execute(_Q[query], {**params, "now": now}).fetchone()
            return None if due is None else timedelta(microseconds=due - now)

        return await self._read(read) if names else None


def _retry_while_locked(statement: Callable[[], object], patience: float = 30.0) -> None:
    """Switching to WAL ignores busy_timeout: when several processes open a new file at
    once, it fails at once with "database is locked". Try again for a while."""
    deadline = time.monotonic() + patience
    while True:
        try:
            statement()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _record_poll(conn: sqlite3.Connection, kind: TaskKind, names: list[str], now: int) -> None:
    conn.executemany(
        _Q["record_poll"], [{"kind": kind.value, "name": name, "now": now} for name in names]
    )


def _micros(span: timedelta) -> int:
    return round(span.total_seconds() * 1_000_000)


def _exists(conn: sqlite3.Connection, workflow_id: str) -> bool:
    return conn.execute(_Q["workflow_status"], {"id": workflow_id}).fetchone() is not None


def _insert_inbox(
    conn: sqlite3.Connection,
    workflow_id: str,
    event: Incoming,
    visible_at: int,
    timer_seq: int | None = None,
) -> None:
    conn.execute(
        _Q["insert_inbox"],
        {
            "workflow_id": workflow_id,
            "visible_at": visible_at,
            "timer_seq": timer_seq,
            "event": encode_event(event),
        },
    )


def _lease_workflow(
    conn: sqlite3.Connection,
    workflow_id: str,
    owner: str,
    expires: int,
    now: int,
    query: str = "lease_workflow_task",
    *,
    steal: bool = False,
) -> list[WorkflowTask]:
    """Lease a workflow task if it is free and due, and not sticky to another worker unless
    ``steal`` (a claim that found it waiting past STICKY_FOR); or, with
    ``relet_workflow_task``, if ``owner`` holds it already: the task, with its visible
    inbox."""
    row = conn.execute(
        _Q[query],
        {"owner": owner, "expires": expires, "id": workflow_id, "now": now, "steal": steal},
    ).fetchone()
    if row is None:
        return []
    token, name, failures = row
    (length,) = conn.execute(_Q["workflow_history_length"], {"id": workflow_id}).fetchone()
    inbox = conn.execute(_Q["visible_inbox"], {"id": workflow_id, "now": now})
    return [workflow_task(workflow_id, name, length, inbox, token, _dt(now), failures)]


def _apply_commit(
    conn: sqlite3.Connection,
    task: WorkflowTask,
    consumed: Sequence[int],
    events: Sequence[HistoryEvent],
    plan: CommitPlan,
    eager: EagerActivities | None,
    now: int,
) -> list[ActivityTask]:
    """Write a workflow task's outcome, its lease already checked; the activity tasks it
    leased to ``eager.owner`` come back. Raises UnseenEvents, having written nothing, if it
    would end the workflow while the inbox holds events (not timers) it did not consume."""
    wid = task.workflow_id
    taken: list[ActivityTask] = []
    if plan.ending is not None:
        (unseen,) = conn.execute(
            _Q["unseen_inbox"], {"id": wid, "consumed": json_text(list(consumed))}
        ).fetchone()
        if unseen:
            raise UnseenEvents(f"workflow task {wid!r}: events came while it ran")
    for inbox_id in consumed:
        conn.execute(_Q["delete_inbox_event"], {"id": inbox_id, "workflow_id": wid})
    conn.executemany(
        _Q["insert_history"],
        [
            {"workflow_id": wid, "seq": task.history_length + n, "event": encode_event(e)}
            for n, e in enumerate(events, start=1)
        ],
    )
    length = task.history_length + len(events)
    if plan.ending is not None:
        ending = plan.ending
        conn.execute(
            _Q["finish_workflow"],
            {
                "id": wid,
                "status": "completed" if ending.completed else "failed",
                "result": json_text(ending.result) if ending.completed else None,
                "failure": FAILURE.dump_json(ending.failure).decode() if ending.failure else None,
                "now": now,
                "history_length": length,
            },
        )
        for query in ("drop_workflow_task", "drop_activity_tasks", "drop_inbox"):
            conn.execute(_Q[query], {"id": wid})
        return taken
    for activity in plan.activities:
        leased = eager is not None and activity.seq in eager.seqs
        cursor = conn.execute(
            _Q["insert_activity_task"],
            {
                "workflow_id": wid,
                "seq": activity.seq,
                "name": activity.name,
                "args": json_text(activity.args),
                "retry": None if activity.retry is None else json_text(activity.retry),
                "now": now,
                "owner": eager.owner if eager and leased else None,
                "expires": now + _micros(eager.lease) if eager and leased else None,
                "leased": int(leased),
            },
        )
        if leased:
            taken.append(eager_task(wid, task.workflow_name, activity, cursor.lastrowid or 0))
    for seq, due, fired in plan.timers:
        _insert_inbox(conn, wid, fired, _us(due), timer_seq=seq)
    for seq in plan.cancelled_timers:
        conn.execute(_Q["cancel_timer"], {"workflow_id": wid, "seq": seq})
    conn.execute(_Q["advance_workflow"], {"id": wid, "history_length": length})
    conn.execute(_Q["release_workflow_task"], {"id": wid})
    return taken


def _check_workflow_lease(conn: sqlite3.Connection, task: WorkflowTask, now: int) -> None:
    row = conn.execute(_Q["workflow_lease"], {"id": task.workflow_id}).fetchone()
    (length,) = conn.execute(_Q["workflow_history_length"], {"id": task.workflow_id}).fetchone()
    if row is None or row[0] != task.lease_token or (row[1] or 0) <= now:
        raise LeaseLost(f"workflow task {task.workflow_id!r}: lease lost")
    if length != task.history_length:
        raise LeaseLost(f"workflow task {task.workflow_id!r}: history moved on")


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (sqlite3 runs one at a time in a txn)."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements
