"""SQLite backend: one connection owned by one thread, a whole transaction per hop.

Every method runs its transaction as one function on the connection's own thread, so the
event loop never blocks and a transaction is never interleaved with another. Writers take
the database lock up front (``BEGIN IMMEDIATE``); several processes may share one file
(WAL mode), waiting on each other through ``busy_timeout``.

A workflow task's commit is a ``CommitPlan`` stored by one function, ``_apply_plan``, step
by step as ``tapeflow.backends.plan`` says; it knows no decisions. The ``HandOffs``
capability is the same writes with a ``Take``.

Every time it keeps is its clock's: the process's wall clock, or the clock it is given (a
test's virtual one, see ``tapeflow.backends.clock``), read once per transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from tapeflow.backends._lifecycle import OpensAndCloses
from tapeflow.backends._pollers import PollRecorder
from tapeflow.backends._rows import (
    FAILURE,
    activity_task,
    declared_queue,
    history,
    json_text,
    queue_record,
    update_record,
    worker_record,
    workflow_record,
    workflow_task,
)
from tapeflow.backends._sql_files import load_queries, migrations
from tapeflow.backends._visibility import filtered, summary
from tapeflow.backends.base import (
    EXECUTION_TIMEOUT_SEQ,
    STICKY_FOR,
    ActivityTask,
    Continued,
    IdReuse,
    LeaseRef,
    NewWorkflow,
    PollerRecord,
    Reclaimed,
    RunAhead,
    RunFilter,
    RunKey,
    SchemaVersion,
    Take,
    TaskKind,
    UpdateRecord,
    WorkflowRecord,
    WorkflowStatus,
    WorkflowSummary,
    WorkflowTask,
)
from tapeflow.backends.clock import Agenda, Clock, wall_clock
from tapeflow.backends.plan import (
    CommitPlan,
    Ending,
    NewActivity,
    NewInboxEvent,
    commit_topics,
    taken_activity,
)
from tapeflow.backends.presence import FORGET_AFTER, WorkerInfo, WorkerRecord
from tapeflow.backends.queue_limits import Admission, QueueRecord
from tapeflow.backends.reset import ResetPlan
from tapeflow.backends.schedules import (
    KEEP_RUNS,
    Decide,
    DueSchedules,
    Fired,
    ScheduleRecord,
    ScheduleState,
    ScheduleWrite,
    StoredSchedule,
    schedule_run,
    stored_schedule,
)
from tapeflow.backends.sqlite.peer_wakeups import PeerWakeups
from tapeflow.backends.wakeups import Wakeups, Watch, queue_topics, schedule_topic, work_topic
from tapeflow.errors import (
    ActivityTaskGone,
    BackendUnavailable,
    LeaseLost,
    ScheduleAlreadyExists,
    ScheduleNotFound,
    SchemaVersionError,
    UnseenEvents,
    WorkflowAlreadyCompleted,
    WorkflowAlreadyExists,
    WorkflowNotFound,
    WorkflowStillOpen,
)
from tapeflow.history import (
    ActivityCompleted,
    ActivityFailed,
    EventReceived,
    ExecutionTimeoutReached,
    Failure,
    HistoryEvent,
    JSONValue,
    UpdateRequested,
    WorkflowCancelRequested,
    WorkflowExecutionStarted,
    encode_event,
)
from tapeflow.queues import DEFAULT_QUEUE, Queue

_T = TypeVar("_T")
_Q = load_queries(__package__ or "tapeflow.backends.sqlite")

Write = Callable[[sqlite3.Connection, int], tuple[_T, Iterable[str]]]
"""A write transaction's body: given the connection and the backend's time (microseconds,
read once the write lock is held), its result and the topics to wake once it commits."""


def _now_us() -> int:
    return time.time_ns() // 1000


def _us(moment: datetime) -> int:
    return round(moment.timestamp() * 1_000_000)


def _dt(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, UTC)


def _read_user_version(path: str) -> int:
    """The schema version of the file at ``path``, opened read-only: looking changes nothing
    (a missing file is version 0, and stays missing)."""
    if not Path(path).exists():
        return 0
    conn = sqlite3.connect(f"{Path(path).absolute().as_uri()}?mode=ro", uri=True)
    try:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        return int(version)
    finally:
        conn.close()


def _micros(span: timedelta) -> int:
    return round(span.total_seconds() * 1_000_000)


class SQLiteBackend(OpensAndCloses):
    def __init__(
        self, path: str | Path, *, synchronous: str = "FULL", clock: Clock | None = None
    ) -> None:
        self.path = str(path)
        self._synchronous = synchronous
        self.clock: Clock = clock or wall_clock
        """Its time (``LocalClock``): a worker in this process reads it too."""
        self._now_us: Callable[[], int] = _now_us if clock is None else lambda: _us(clock())
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._wakeups = Wakeups()
        self._peers: PeerWakeups | None = None
        if self.path not in ("", ":memory:"):
            self._peers = PeerWakeups(self.path, self._wakeups.notify, self._wakeups.notify_all)
        self._polls = PollRecorder()

    def __repr__(self) -> str:
        return f"SQLiteBackend({self.path!r})"

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="tapeflow-sqlite")
        await self._run(self._connect)
        if self._peers is not None:
            self._peers.open()

    async def close(self) -> None:
        if self._executor is None:
            return
        if self._peers is not None:
            self._peers.close()
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
        conn.row_factory = sqlite3.Row
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
            (current,) = conn.execute("PRAGMA user_version").fetchone()
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

    async def schema_version(self) -> SchemaVersion:
        latest = len(migrations("tapeflow.backends.sqlite"))
        if self._conn is not None:  # open, so migrated; in memory, only this connection sees it
            conn = self._conn
            (current,) = await self._run(lambda: conn.execute("PRAGMA user_version").fetchone())
            return SchemaVersion(current, latest)
        if self.path in ("", ":memory:"):
            return SchemaVersion(0, latest)
        try:
            return SchemaVersion(await asyncio.to_thread(_read_user_version, self.path), latest)
        except sqlite3.Error as exc:  # not a database, unreadable
            raise BackendUnavailable(f"SQLite database {self.path!r}: {exc}") from exc

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

    async def _write(self, fn: Write[_T]) -> _T:
        """Run ``fn`` in one write transaction, then wake the topics it returns, here and in
        the other processes on this file."""
        done: tuple[_T, Iterable[str]] = await self._run(self._transaction, fn)
        result, topics = done
        topics = list(topics)
        self._wakeups.notify(topics)
        if self._peers is not None:
            self._peers.tell(topics)
        return result

    def _transaction(self, fn: Write[_T]) -> tuple[_T, Iterable[str]]:
        conn = self._conn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            done = fn(conn, self._now_us())
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # a failed COMMIT may leave it open
                conn.execute("ROLLBACK")
            raise
        return done

    async def _read(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        def run() -> _T:
            assert self._conn is not None
            result: _T = fn(self._conn)
            return result

        return await self._run(run)

    # -- clients ---------------------------------------------------------------------------

    async def create_workflow(self, new: NewWorkflow, *, use_existing: bool = False) -> str:
        def write(conn: sqlite3.Connection, now: int) -> tuple[str, list[str]]:
            try:
                _create_run(conn, now, new)
                return new.run_id, [
                    work_topic(TaskKind.WORKFLOW, new.name),
                    *queue_topics([new.queue]),
                ]
            except WorkflowAlreadyExists:
                if not use_existing:
                    raise
            run = _find_run(conn, new.id)
            if run is None:  # its run id was another's: not this id's run to use
                raise WorkflowAlreadyExists(new.id)
            if not new.events:
                return run["run_id"], []
            if (status := WorkflowStatus(run["status"])).finished:
                raise WorkflowAlreadyCompleted(new.id, status)
            for event in new.events:
                _deliver(conn, run, event, now)
            return run["run_id"], [work_topic(TaskKind.WORKFLOW, run["name"])]

        return await self._write(write)

    async def get_workflow(self, workflow_id: str, run_id: str | None = None) -> WorkflowRecord:
        def read(conn: sqlite3.Connection) -> WorkflowRecord:
            params = {"id": workflow_id, "run_id": run_id, "now": self._now_us()}
            row = conn.execute(_Q["get_workflow"], params).fetchone()
            if row is None:
                raise WorkflowNotFound(workflow_id)
            return workflow_record(row, _dt)

        return await self._read(read)

    async def load_history(self, workflow_id: str, run_id: str | None = None) -> list[HistoryEvent]:
        def read(conn: sqlite3.Connection) -> list[HistoryEvent]:
            run = _find_run(conn, workflow_id, run_id)
            if run is None:
                raise WorkflowNotFound(workflow_id)
            rows = conn.execute(_Q["load_history"], {"run_id": run["run_id"]})
            return history(workflow_id, (row["event"] for row in rows))

        return await self._read(read)

    async def list_runs(
        self, where: RunFilter, limit: int, after: RunKey | None = None
    ) -> list[WorkflowSummary]:
        text, params = filtered(_Q["list_runs"], _Q, where, after, _us, json_text)

        def read(conn: sqlite3.Connection) -> list[WorkflowSummary]:
            rows = conn.execute(text, {**params, "limit": limit})
            return [summary(row, _dt) for row in rows]

        return await self._read(read)

    async def count_runs(self, where: RunFilter) -> dict[WorkflowStatus, int]:
        text, params = filtered(_Q["count_runs"], _Q, where, None, _us, json_text)

        def read(conn: sqlite3.Connection) -> dict[WorkflowStatus, int]:
            return {WorkflowStatus(row["status"]): row["n"] for row in conn.execute(text, params)}

        return await self._read(read)

    async def send_event(
        self,
        workflow_id: str,
        name: str,
        payload: JSONValue,
        *,
        idempotency_key: str | None = None,
    ) -> None:
        def write(conn: sqlite3.Connection, now: int) -> tuple[None, list[str]]:
            if idempotency_key is not None:  # kept only if delivered: a raise rolls it back
                key = {"id": workflow_id, "key": idempotency_key}
                if conn.execute(_Q["insert_event_key"], key).rowcount == 0:
                    return None, []  # sent with this key already
            run = _open_run(conn, workflow_id)
            _deliver(conn, run, encode_event(EventReceived(name=name, payload=payload)), now)
            return None, [work_topic(TaskKind.WORKFLOW, run["name"])]

        await self._write(write)

    async def request_update(self, workflow_id: str, request: UpdateRequested) -> None:
        def write(conn: sqlite3.Connection, now: int) -> tuple[None, list[str]]:
            if _find_update(conn, workflow_id, request.update_id) is not None:
                return None, []  # requested already: its answer stands
            run = _open_run(conn, workflow_id)
            params = {"id": workflow_id, "update_id": request.update_id, "run_id": run["run_id"]}
            conn.execute(_Q["insert_update"], params)
            _deliver(conn, run, encode_event(request), now)
            return None, [work_topic(TaskKind.WORKFLOW, run["name"])]

        await self._write(write)

    async def get_update(self, workflow_id: str, update_id: str) -> UpdateRecord | None:
        def read(conn: sqlite3.Connection) -> UpdateRecord | None:
            row = _find_update(conn, workflow_id, update_id)
            return None if row is None else update_record(row)

        return await self._read(read)

    async def request_cancel(self, workflow_id: str, reason: str) -> None:
        def write(conn: sqlite3.Connection, now: int) -> tuple[None, list[str]]:
            return None, _request_cancel(conn, now, _open_run(conn, workflow_id), reason)

        await self._write(write)

    async def impose_ending(self, task: WorkflowTask, plan: CommitPlan) -> None:
        await self._write(lambda conn, now: _apply_plan(conn, now, task, plan, leased=False))

    async def reset_workflow(self, plan: ResetPlan) -> None:
        def write(conn: sqlite3.Connection, now: int) -> tuple[None, list[str]]:
            latest = _find_run(conn, plan.workflow_id)  # 1
            if latest is None or (latest["run_id"], latest["history_length"]) != (
                plan.from_run_id,
                plan.history_length,
            ):
                raise LeaseLost(f"workflow {plan.workflow_id!r}: its latest run moved on")
            new_run_id = plan.run.run_id  # 2
            _insert_run(conn, now, plan.run, latest)
            moved = {"run_id": new_run_id, "from_run_id": plan.from_run_id}
            conn.execute(_Q["copy_history"], {**moved, "upto": plan.event})
            advanced = {"run_id": new_run_id, "history_length": plan.event, "vars": None}
            conn.execute(_Q["advance_run"], advanced)  # its first task stores its vars
            _, topics = _apply_plan(conn, now, plan.new_run(), plan.rows, leased=False)  # 3
            conn.execute(_Q["carry_inbox"], {**moved, "timeout_seq": EXECUTION_TIMEOUT_SEQ})  # 4
            if plan.ending is not None:  # 5
                _, ended = _apply_plan(conn, now, plan.old_run(), plan.ending, leased=False)
                topics = [*topics, *ended]
            return None, topics

        await self._write(write)

    async def delete_workflow(self, workflow_id: str) -> None:
        def write(conn: sqlite3.Connection, now: int) -> tuple[None, list[str]]:
            latest = _find_run(conn, workflow_id)
            if latest is None:
                raise WorkflowNotFound(workflow_id)
            if not (status := WorkflowStatus(latest["status"])).finished:
                raise WorkflowStillOpen(workflow_id, status)
            _delete_runs(conn, workflow_id, latest["run_number"])
            return None, []

        await self._write(write)

    async def delete_closed(self, older_than: timedelta, limit: int) -> int | None:
        """Never None: a writer holds the whole database (``BEGIN IMMEDIATE``), so two
        processes deleting take turns."""

        def write(conn: sqlite3.Connection, now: int) -> tuple[int, list[str]]:
            params = {"cutoff": now - _micros(older_than), "limit": limit}
            closed = conn.execute(_Q["closed_workflows"], params).fetchall()
            for row in closed:
                _delete_runs(conn, row["id"], row["run_number"])
            return len(closed), []

        return await self._write(write)

    @property
    def wakes_other_processes(self) -> bool:
        """No: other processes' commits wake watchers here when their datagrams arrive
        (``peer_wakeups``), but a datagram may be dropped, so watchers still look again at
        the poll interval, which bounds the wait for a lost one as before."""
        return False

    def watch(self, topics: Iterable[str], on_wake: Callable[[], None] | None = None) -> Watch:
        return self._wakeups.watch(topics, on_wake)

    # -- workflow tasks --------------------------------------------------------------------

    async def claim_workflow_tasks(
        self,
        names: Sequence[str],
        owner: str,
        lease: timedelta,
        limit: int,
        queues: Sequence[str] = (DEFAULT_QUEUE,),
    ) -> list[WorkflowTask]:
        if not names or not queues:
            return []
        polled = self._polls.due(TaskKind.WORKFLOW, names)

        def write(conn: sqlite3.Connection, now: int) -> tuple[list[WorkflowTask], list[str]]:
            _record_poll(conn, TaskKind.WORKFLOW, polled, now)
            params = {
                "names": json_text(list(names)),
                "queues": json_text(list(queues)),
                "now": now,
                "limit": limit,
                "owner": owner,
                "sticky": _micros(STICKY_FOR),
            }
            run_ids = [row["run_id"] for row in conn.execute(_Q["ready_workflow_tasks"], params)]
            expires = now + _micros(lease)
            leased = (
                _lease_run(conn, now, run_id, owner, expires, steal=True) for run_id in run_ids
            )
            return [_with_inbox(conn, now, row) for row in leased if row is not None], []

        return await self._write(write)

    async def commit_workflow_task(self, task: WorkflowTask, plan: CommitPlan) -> None:
        await self._write(lambda conn, now: _apply_plan(conn, now, task, plan))

    async def abandon_workflow_task(
        self, task: WorkflowTask, error: str | None, delay: timedelta
    ) -> None:
        def write(conn: sqlite3.Connection, now: int) -> tuple[None, list[str]]:
            cursor = conn.execute(
                _Q["abandon_workflow_task"],
                {
                    "run_id": task.run_id,
                    "token": task.lease_token,
                    "now": now,
                    "error": error,
                    "not_before": now + _micros(delay),
                },
            )
            if cursor.rowcount == 0:
                raise LeaseLost(f"workflow task {task.workflow_id!r}: lease lost")
            return None, [work_topic(TaskKind.WORKFLOW, task.workflow_name)]

        await self._write(write)

    # -- activity tasks --------------------------------------------------------------------

    async def claim_activity_tasks(
        self,
        names: Sequence[str],
        owner: str,
        lease: timedelta,
        limit: int,
        queues: Sequence[str] = (DEFAULT_QUEUE,),
    ) -> list[ActivityTask]:
        if not names or not queues:
            return []
        polled = self._polls.due(TaskKind.ACTIVITY, names)

        def write(conn: sqlite3.Connection, now: int) -> tuple[list[ActivityTask], list[str]]:
            _record_poll(conn, TaskKind.ACTIVITY, polled, now)
            params = {
                "names": json_text(list(names)),
                "queues": json_text(list(queues)),
                "now": now,
                "limit": limit,
            }
            ids = [row["id"] for row in conn.execute(_Q["ready_activity_tasks"], params)]
            lease_params = {"owner": owner, "expires": now + _micros(lease), "now": now}
            rows = (
                conn.execute(_Q["lease_activity_task"], {**lease_params, "id": id_}).fetchone()
                for id_ in ids
            )
            return [activity_task(row, _dt) for row in rows], []

        return await self._write(write)

    async def complete_activity_task(
        self, task: ActivityTask, outcome: ActivityCompleted | ActivityFailed
    ) -> None:
        await self._write(lambda conn, now: _complete(conn, now, task, outcome))

    async def retry_activity_task(
        self,
        task: ActivityTask,
        failure: Failure,
        delay: timedelta,
        heartbeat_details: JSONValue = None,
    ) -> None:
        def write(conn: sqlite3.Connection, now: int) -> tuple[None, list[str]]:
            cursor = conn.execute(
                _Q["retry_activity_task"],
                {
                    "id": task.id,
                    "token": task.lease_token,
                    "now": now,
                    "visible_at": now + _micros(delay),
                    "details": None if heartbeat_details is None else json_text(heartbeat_details),
                    "failure": FAILURE.dump_json(failure).decode(),
                    "admitted": _admits(conn, task.queue),
                },
            )
            if cursor.rowcount == 0:
                raise _activity_lease_lost(conn, task)
            return None, [work_topic(TaskKind.ACTIVITY, task.name), *queue_topics([task.queue])]

        await self._write(write)

    # -- both ------------------------------------------------------------------------------

    async def extend_leases(
        self,
        leases: Sequence[LeaseRef],
        lease: timedelta,
        heartbeats: Mapping[str, JSONValue] | None = None,
    ) -> list[LeaseRef]:
        if not leases:
            return []
        beats = heartbeats or {}

        def write(conn: sqlite3.Connection, now: int) -> tuple[list[LeaseRef], list[str]]:
            lost = []
            for ref in leases:
                workflow = ref.kind is TaskKind.WORKFLOW
                cursor = conn.execute(
                    _Q["extend_workflow_lease" if workflow else "extend_activity_lease"],
                    {
                        "id": ref.id if workflow else int(ref.id),
                        "token": ref.token,
                        "now": now,
                        "expires": now + _micros(lease),
                        "details": json_text(beats[ref.id]) if ref.id in beats else None,
                    },
                )
                if cursor.rowcount == 0:
                    lost.append(ref)
            return lost, []

        return await self._write(write)

    async def next_due(
        self,
        kind: TaskKind,
        names: Sequence[str],
        owner: str | None = None,
        queues: Sequence[str] = (DEFAULT_QUEUE,),
    ) -> timedelta | None:
        if not names or not queues:
            return None
        query = "next_due_workflow" if kind is TaskKind.WORKFLOW else "next_due_activity"
        params = {
            "names": json_text(list(names)),
            "queues": json_text(list(queues)),
            "owner": owner,
            "sticky": _micros(STICKY_FOR),
        }

        def read(conn: sqlite3.Connection) -> timedelta | None:
            now = self._now_us()
            due = conn.execute(_Q[query], {**params, "now": now}).fetchone()["due"]
            return None if due is None else timedelta(microseconds=due - now)

        return await self._read(read)

    # -- a clock a test moves (tapeflow.testing) -------------------------------------------

    async def agenda(
        self, workflows: Sequence[str], activities: Sequence[str], queues: Sequence[str]
    ) -> Agenda:
        """The tasks leased now (of any name), and when the earliest other admitted task
        of these names in these queues is due, or a schedule of these workflows fires. A
        workflow task that failed is left out until its retry is due: a test's clock must
        not race through the retries of code that fails every time."""
        params = {
            "workflows": json_text(list(workflows)),
            "activities": json_text(list(activities)),
            "queues": json_text(list(queues)),
        }

        def read(conn: sqlite3.Connection) -> Agenda:
            row = conn.execute(_Q["agenda"], {**params, "now": self._now_us()}).fetchone()
            return Agenda(row["held"], None if row["due"] is None else _dt(row["due"]))

        return await self._read(read)

    def time_moved(self) -> None:
        """Its clock jumped (a test moved it): wake every watcher, since what was due later
        may be due now and no commit will say so."""
        self._wakeups.notify_all()

    # -- reads for operators (PollerReads) -------------------------------------------------

    async def list_pollers(self) -> list[PollerRecord]:
        def read(conn: sqlite3.Connection) -> list[PollerRecord]:
            rows = conn.execute(_Q["list_pollers"]).fetchall()
            return [
                PollerRecord(TaskKind(r["kind"]), r["name"], _dt(r["last_poll_at"])) for r in rows
            ]

        return await self._read(read)

    # -- queues with limits (QueueLimits) --------------------------------------------------

    async def declare_queue(self, queue: Queue) -> Queue | None:
        def write(conn: sqlite3.Connection, now: int) -> tuple[Queue | None, list[str]]:
            before = conn.execute(_Q["get_queue"], {"queue": queue.name}).fetchone()
            rate = queue.rate_limit
            conn.execute(
                _Q["declare_queue"],
                {
                    "name": queue.name,
                    "concurrency": queue.concurrency,
                    "rate_limit": None if rate is None else rate[0],
                    "rate_period": None if rate is None else _micros(rate[1]),
                    "now": now,
                },
            )
            previous = None if before is None else declared_queue(before, _span)
            # Limits lifted: what waits is admitted by the next claim of a worker serving it.
            return (previous if previous != queue else None), sorted(queue_topics([queue.name]))

        return await self._write(write)

    async def admit_workflow_tasks(
        self, queue: str, names: Sequence[str], owner: str, lease: timedelta, limit: int
    ) -> Admission[WorkflowTask]:
        def write(conn: sqlite3.Connection, now: int) -> tuple[Admission[WorkflowTask], list[str]]:
            keys, retry_in = _admit(conn, now, TaskKind.WORKFLOW, queue, names, limit)
            expires = now + _micros(lease)
            leased = (_lease_run(conn, now, key, owner, expires, steal=True) for key in keys)
            tasks = [_with_inbox(conn, now, row) for row in leased if row is not None]
            return Admission(tasks, retry_in), []

        return await self._write(write)

    async def admit_activity_tasks(
        self, queue: str, names: Sequence[str], owner: str, lease: timedelta, limit: int
    ) -> Admission[ActivityTask]:
        def write(conn: sqlite3.Connection, now: int) -> tuple[Admission[ActivityTask], list[str]]:
            keys, retry_in = _admit(conn, now, TaskKind.ACTIVITY, queue, names, limit)
            lease_params = {"owner": owner, "expires": now + _micros(lease), "now": now}
            rows = (
                conn.execute(_Q["lease_activity_task"], {**lease_params, "id": key}).fetchone()
                for key in keys
            )
            return Admission([activity_task(row, _dt) for row in rows], retry_in), []

        return await self._write(write)

    async def list_queues(self) -> list[QueueRecord]:
        def read(conn: sqlite3.Connection) -> list[QueueRecord]:
            rows = conn.execute(_Q["list_queues"], {"now": self._now_us()})
            return [queue_record(row, _span) for row in rows]

        return await self._read(read)

    # -- who runs (WorkerPresence) ---------------------------------------------------------

    async def report_worker(self, info: WorkerInfo) -> None:
        def write(conn: sqlite3.Connection, now: int) -> tuple[None, Iterable[str]]:
            conn.execute(
                _Q["forget_workers"], {"before": now - _micros(FORGET_AFTER), "id": info.id}
            )
            conn.execute(
                _Q["report_worker"], {"id": info.id, "info": json_text(info.to_json()), "now": now}
            )
            return None, ()

        await self._write(write)

    async def report_worker_stopped(self, worker_id: str) -> None:
        def write(conn: sqlite3.Connection, now: int) -> tuple[None, Iterable[str]]:
            conn.execute(_Q["report_worker_stopped"], {"id": worker_id, "now": now})
            return None, ()

        await self._write(write)

    async def list_workers(self, seen_within: timedelta) -> list[WorkerRecord]:
        def read(conn: sqlite3.Connection) -> list[WorkerRecord]:
            now = self._now_us()
            params = {"now": now, "since": now - _micros(seen_within)}
            return [worker_record(r, _dt) for r in conn.execute(_Q["list_workers"], params)]

        return await self._read(read)

    # -- schedules (Schedules) -------------------------------------------------------------

    async def create_schedule(self, make: Callable[[datetime], StoredSchedule]) -> StoredSchedule:
        def write(conn: sqlite3.Connection, now: int) -> tuple[StoredSchedule, list[str]]:
            schedule = make(_dt(now))
            params = {**_schedule_params(schedule, now), "workflow_name": schedule.workflow}
            if conn.execute(_Q["insert_schedule"], params).rowcount == 0:
                raise ScheduleAlreadyExists(schedule.id)
            stored = dataclasses.replace(schedule, created_at=_dt(now), updated_at=_dt(now))
            return stored, [schedule_topic(schedule.workflow)]

        return await self._write(write)

    async def change_schedule(self, schedule_id: str, decide: Decide) -> list[str] | None:
        def write(conn: sqlite3.Connection, now: int) -> tuple[list[str] | None, list[str]]:
            row = conn.execute(_Q["get_schedule"], {"id": schedule_id}).fetchone()
            if row is None:
                raise ScheduleNotFound(schedule_id)
            open_runs = _open_schedule_runs(conn, schedule_id)
            state = ScheduleState(stored_schedule(row, _dt, _span), open_runs, _dt(now))
            decided = decide(state)
            if decided is None:
                return None, []
            return _apply_schedule_write(conn, now, decided, open_runs)

        return await self._write(write)

    async def fire_schedules(self, schedule_ids: Sequence[str], decide: Decide) -> Fired:
        """No row is ever held by another here: a writer holds the whole database, so two
        firings take turns, the second seeing what the first did."""

        def write(conn: sqlite3.Connection, now: int) -> tuple[Fired, list[str]]:
            fired, topics = Fired(), set()
            for schedule_id in schedule_ids:
                row = conn.execute(_Q["get_schedule"], {"id": schedule_id}).fetchone()
                if row is None:
                    continue
                open_runs = _open_schedule_runs(conn, schedule_id)
                try:
                    schedule = stored_schedule(row, _dt, _span)
                    decided = decide(ScheduleState(schedule, open_runs, _dt(now)))
                except Exception as exc:  # this one alone: the others fire
                    fired.failed[schedule_id] = f"{type(exc).__name__}: {exc}"
                    continue
                fired.handled.append(schedule_id)
                if decided is not None:
                    created, woken = _apply_schedule_write(conn, now, decided, open_runs)
                    fired.created.extend(created)
                    topics.update(woken)
            return fired, sorted(topics)

        return await self._write(write)

    async def due_schedules(self, workflows: Sequence[str], limit: int) -> DueSchedules:
        def read(conn: sqlite3.Connection) -> DueSchedules:
            now = self._now_us()
            params = {"names": json_text(list(workflows)), "now": now}
            due, awaiting = [], []
            for row in conn.execute(_Q["due_schedules"], params):
                waits_for = json.loads(row["open_runs"] or "[]")
                awaiting += waits_for
                if row["next_due_at"] <= now or (row["buffered_at"] is not None and not waits_for):
                    due.append(row["id"])
            soonest = conn.execute(_Q["next_schedule_due"], params).fetchone()["due"]
            next_in = None if soonest is None else timedelta(microseconds=soonest - now)
            return DueSchedules(due[:limit], next_in, awaiting)

        return await self._read(read)

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord:
        def read(conn: sqlite3.Connection) -> ScheduleRecord:
            row = conn.execute(_Q["get_schedule"], {"id": schedule_id}).fetchone()
            if row is None:
                raise ScheduleNotFound(schedule_id)
            return _schedule_record(conn, row)

        return await self._read(read)

    async def list_schedules(self) -> list[ScheduleRecord]:
        def read(conn: sqlite3.Connection) -> list[ScheduleRecord]:
            rows = conn.execute(_Q["list_schedules"]).fetchall()
            return [_schedule_record(conn, row) for row in rows]

        return await self._read(read)

    async def delete_schedule(self, schedule_id: str) -> None:
        def write(conn: sqlite3.Connection, now: int) -> tuple[None, list[str]]:
            if conn.execute(_Q["delete_schedule"], {"id": schedule_id}).rowcount == 0:
                raise ScheduleNotFound(schedule_id)
            conn.execute(_Q["delete_schedule_runs"], {"id": schedule_id})
            return None, []

        await self._write(write)

    # -- hand-offs (HandOffs) --------------------------------------------------------------

    async def commit_and_take(
        self, task: WorkflowTask, plan: CommitPlan, take: Take
    ) -> list[ActivityTask]:
        return await self._write(lambda conn, now: _apply_plan(conn, now, task, plan, take))

    async def complete_and_continue(
        self,
        task: ActivityTask,
        outcome: ActivityCompleted | ActivityFailed,
        take: Take,
        ahead: RunAhead | None = None,
    ) -> Continued:
        return await self._write(lambda conn, now: _complete(conn, now, task, outcome, take, ahead))

    async def reclaim(self, run_id: str, take: Take) -> Reclaimed:
        def write(conn: sqlite3.Connection, now: int) -> tuple[Reclaimed, list[str]]:
            params = {
                "run_id": run_id,
                "owner": take.owner,
                "now": now,
                "expires": now + _micros(take.lease),
                "seqs": json_text(sorted(take.activities)),
            }
            held = conn.execute(_Q["reclaim_workflow_task"], params).fetchone()
            activities = conn.execute(_Q["reclaim_activity_tasks"], params).fetchall()
            workflow = None if held is None else _with_inbox(conn, now, held)
            return Reclaimed(workflow, [activity_task(row, _dt) for row in activities]), []

        return await self._write(write)


# -- runs and inboxes ----------------------------------------------------------------------


def _find_run(
    conn: sqlite3.Connection, workflow_id: str, run_id: str | None = None
) -> sqlite3.Row | None:
    """The workflow's latest run, or the run named if it is one of the workflow's."""
    row: sqlite3.Row | None = conn.execute(
        _Q["find_run"], {"id": workflow_id, "run_id": run_id}
    ).fetchone()
    return row


def _find_update(conn: sqlite3.Connection, workflow_id: str, update_id: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        _Q["find_update"], {"id": workflow_id, "update_id": update_id}
    ).fetchone()
    return row


def _open_run(conn: sqlite3.Connection, workflow_id: str) -> sqlite3.Row:
    """The workflow's latest run, unfinished. Raises WorkflowNotFound,
    WorkflowAlreadyCompleted."""
    run = _find_run(conn, workflow_id)
    if run is None:
        raise WorkflowNotFound(workflow_id)
    if (status := WorkflowStatus(run["status"])).finished:
        raise WorkflowAlreadyCompleted(workflow_id, status)
    return run


def _create_run(conn: sqlite3.Connection, now: int, new: NewWorkflow) -> None:
    """Write ``new`` as the next run of its id: its row, its workflow task, its start event
    and its other events. Raises WorkflowAlreadyExists, having written nothing, if the id
    is taken (``new.id_reuse``)."""
    latest = _find_run(conn, new.id)
    if latest is not None and not _reusable(WorkflowStatus(latest["status"]), new.id_reuse):
        raise WorkflowAlreadyExists(new.id)
    start_at = _insert_run(conn, now, new, latest)
    started = WorkflowExecutionStarted(
        name=new.name,
        version=new.version,
        args=new.args,
        started_at=_dt(start_at),
        trace_context=new.trace_context,
    )
    for event in (encode_event(started), *new.events):
        _insert_inbox(conn, new.run_id, event, start_at)
    if new.execution_timeout is not None:
        timeout = new.execution_timeout.total_seconds()
        due = start_at + _micros(new.execution_timeout)
        reached = encode_event(ExecutionTimeoutReached(timeout=timeout))
        _insert_inbox(conn, new.run_id, reached, due, EXECUTION_TIMEOUT_SEQ)


def _insert_run(
    conn: sqlite3.Connection, now: int, new: NewWorkflow, latest: sqlite3.Row | None
) -> int:
    """The row of ``new`` as the run after ``latest`` (its id's latest run, if any) and its
    workflow task; returns its start time. Raises WorkflowAlreadyExists if the run id is
    taken."""
    start_at = _us(new.start_at) if new.start_at else now
    parent = new.parent
    try:
        conn.execute(
            _Q["insert_run"],
            {
                "run_id": new.run_id,
                "id": new.id,
                "run_number": 1 if latest is None else latest["run_number"] + 1,
                "name": new.name,
                "version": new.version,
                "args": json_text(new.args),
                "now": now,
                "start_at": start_at,
                "parent_id": None if parent is None else parent.workflow_id,
                "parent_run_id": None if parent is None else parent.run_id,
                "parent_seq": None if parent is None else parent.seq,
                "on_parent_close": None if parent is None else parent.on_close,
                "queue": new.queue,
                "priority": new.priority,
            },
        )
    except sqlite3.IntegrityError:  # the run id is taken
        raise WorkflowAlreadyExists(new.id) from None
    task = {"run_id": new.run_id, "name": new.name, "queue": new.queue, "priority": new.priority}
    conn.execute(_Q["insert_workflow_task"], {**task, "admitted": _admits(conn, new.queue)})
    return start_at


def _admits(conn: sqlite3.Connection, queue: str) -> bool:
    """Whether work of ``queue`` is admitted as it is written: a queue without limits."""
    if queue == DEFAULT_QUEUE:
        return True
    return not conn.execute(_Q["queue_limited"], {"queue": queue}).fetchone()["limited"]


def _delete_runs(conn: sqlite3.Connection, workflow_id: str, upto: int) -> None:
    """Delete a workflow's runs up to run number ``upto``, all they own, and its event keys
    and updates."""
    params = {"id": workflow_id, "upto": upto}
    for query in (
        "delete_history_of",
        "delete_inbox_of",
        "delete_activity_tasks_of",
        "delete_workflow_tasks_of",
        "delete_event_keys_of",
        "delete_updates_of",
        "delete_runs_of",
    ):
        conn.execute(_Q[query], params)


def _reusable(latest: WorkflowStatus, reuse: IdReuse) -> bool:
    """Whether a new run may follow an id's latest run, in status ``latest``."""
    if not latest.finished:
        return False
    return reuse == "allow" or (reuse == "allow_failed" and latest is not WorkflowStatus.COMPLETED)


def _deliver(
    conn: sqlite3.Connection,
    run: sqlite3.Row,
    event: str,
    visible_at: int,
    timer_seq: int | None = None,
) -> None:
    """Put an event in the inbox of a run (a ``find_run`` row), not seen before the run
    starts: its history begins with its start."""
    _insert_inbox(conn, run["run_id"], event, max(visible_at, run["start_at"]), timer_seq)


def _insert_inbox(
    conn: sqlite3.Connection,
    run_id: str,
    event: str,
    visible_at: int,
    timer_seq: int | None = None,
) -> None:
    conn.execute(
        _Q["insert_inbox"],
        {"run_id": run_id, "visible_at": visible_at, "timer_seq": timer_seq, "event": event},
    )


def _request_cancel(conn: sqlite3.Connection, now: int, run: sqlite3.Row, reason: str) -> list[str]:
    """Ask the unfinished run (a ``find_run`` row) to cancel, once; the topics to wake."""
    if run["stop_requested_by"] is not None:  # asked already: once is enough
        return []
    params = {"run_id": run["run_id"], "reason": reason, "requested_by": "client"}
    conn.execute(_Q["request_stop"], params)
    _deliver(conn, run, encode_event(WorkflowCancelRequested(reason=reason)), now)
    return [work_topic(TaskKind.WORKFLOW, run["name"])]


# -- schedules -----------------------------------------------------------------------------


def _span(micros: int) -> timedelta:
    return timedelta(microseconds=micros)


def _schedule_params(schedule: StoredSchedule, now: int) -> dict[str, Any]:
    """The columns of a ``schedules`` row a write sets (all but its name and creation)."""
    spec, buffered = schedule.spec, schedule.buffered
    return {
        "id": schedule.id,
        "args": json_text(schedule.args),
        "cron": spec.cron,
        "every": None if spec.every is None else _micros(spec.every),
        "timezone": spec.timezone,
        "overlap": spec.overlap,
        "catchup_window": _micros(spec.catchup_window),
        "paused": int(schedule.paused),
        "next_due_at": _us(schedule.next_due),
        "buffered_at": None if buffered is None else _us(buffered),
        "skipped_catchup": schedule.skipped_catchup,
        "skipped_overlap": schedule.skipped_overlap,
        "now": now,
    }


def _apply_schedule_write(
    conn: sqlite3.Connection, now: int, decided: ScheduleWrite, open_runs: tuple[str, ...]
) -> tuple[list[str], list[str]]:
    """Store a decision (``ScheduleWrite``): its workflows (an id taken is left as it is),
    each recorded as the schedule's run, its cancels, the row; returns the workflows
    created and the topics to wake."""
    schedule = decided.schedule
    created, topics = [], set()
    for start in decided.starts:
        new = start.workflow
        try:
            _create_run(conn, now, new)
            created.append(new.id)
            topics.add(work_topic(TaskKind.WORKFLOW, new.name))
        except WorkflowAlreadyExists:
            pass
        params = {"id": schedule.id, "workflow_id": new.id, "due_at": _us(start.due_at)}
        conn.execute(_Q["insert_schedule_run"], {**params, "now": now})
    for workflow_id in decided.cancels:
        run = _find_run(conn, workflow_id)
        if run is not None and not WorkflowStatus(run["status"]).finished:
            topics.update(_request_cancel(conn, now, run, decided.cancel_reason))
    conn.execute(_Q["update_schedule"], _schedule_params(schedule, now))
    still_open = json_text([*open_runs, *created])
    prune = {"id": schedule.id, "open": still_open, "keep": KEEP_RUNS}
    conn.execute(_Q["prune_schedule_runs"], prune)
    if decided.wake:
        topics.add(schedule_topic(schedule.workflow))
    return created, sorted(topics)


def _open_schedule_runs(conn: sqlite3.Connection, schedule_id: str) -> tuple[str, ...]:
    opened = conn.execute(_Q["open_schedule_runs"], {"id": schedule_id})
    return tuple(row["workflow_id"] for row in opened)


def _schedule_record(conn: sqlite3.Connection, row: sqlite3.Row) -> ScheduleRecord:
    runs = conn.execute(_Q["schedule_runs"], {"id": row["id"]})
    return ScheduleRecord(stored_schedule(row, _dt, _span), [schedule_run(r, _dt) for r in runs])


# -- workflow tasks ------------------------------------------------------------------------


def _admit(
    conn: sqlite3.Connection,
    now: int,
    kind: TaskKind,
    queue: str,
    names: Sequence[str],
    limit: int,
) -> tuple[list[Any], timedelta | None]:
    """The keys (run ids, activity task ids) of up to ``limit`` waiting due tasks of
    ``queue`` admitted now within its limits, recorded as started; and when more may be
    (``Admission.retry_in``)."""
    workflows = kind is TaskKind.WORKFLOW
    limits = conn.execute(_Q["get_queue"], {"queue": queue}).fetchone()
    room, rate_moves_at, started = limit, None, None
    if limits is not None and limits["concurrency"] is not None:
        held = conn.execute(_Q["queue_held"], {"queue": queue}).fetchone()["n"]
        room = min(room, limits["concurrency"] - held)
    rated = limits is not None and limits["rate_limit"] is not None
    if rated:
        period = limits["rate_period"]
        conn.execute(_Q["forget_queue_starts"], {"queue": queue, "before": now - period})
        started = conn.execute(_Q["queue_started"], {"queue": queue}).fetchone()
        room = min(room, limits["rate_limit"] - started["n"])
    params = {"queue": queue, "names": json_text(list(names)), "now": now}
    waiting = "waiting_workflow_tasks" if workflows else "waiting_activity_tasks"
    keys = []
    if room > 0:
        keys = [row["key"] for row in conn.execute(_Q[waiting], {**params, "limit": room})]
        admit = "admit_workflow_task" if workflows else "admit_activity_task"
        conn.executemany(_Q[admit], [{"key": key} for key in keys])
    if started is not None:  # the rate is spent until the oldest start leaves the window
        conn.executemany(_Q["record_queue_start"], [{"queue": queue, "now": now}] * len(keys))
        if started["n"] + len(keys) >= limits["rate_limit"]:
            rate_moves_at = (started["oldest"] or now) + limits["rate_period"]
    coming = "next_waiting_workflow" if workflows else "next_waiting_activity"
    due = conn.execute(_Q[coming], params).fetchone()["due"]
    times = [due, rate_moves_at]
    soonest = min((t for t in times if t is not None), default=None)
    return keys, None if soonest is None else timedelta(microseconds=max(soonest - now, 0))


def _lease_run(
    conn: sqlite3.Connection, now: int, run_id: str, owner: str, expires: int, *, steal: bool
) -> sqlite3.Row | None:
    """Lease a run's workflow task if it is free and due, and not sticky to another worker
    unless ``steal``: its row (``lease_workflow_task``), or None."""
    params = {"run_id": run_id, "owner": owner, "expires": expires, "now": now, "steal": steal}
    row: sqlite3.Row | None = conn.execute(_Q["lease_workflow_task"], params).fetchone()
    return row


def _with_inbox(conn: sqlite3.Connection, now: int, leased: sqlite3.Row) -> WorkflowTask:
    """A leased workflow task, from its lease row, with its run's visible inbox."""
    rows = conn.execute(_Q["visible_inbox"], {"run_id": leased["run_id"], "now": now})
    return workflow_task(leased, ((row["id"], row["event"]) for row in rows), _dt(now))


def _record_poll(conn: sqlite3.Connection, kind: TaskKind, names: list[str], now: int) -> None:
    conn.executemany(
        _Q["record_poll"], [{"kind": kind.value, "name": name, "now": now} for name in names]
    )


def _apply_plan(
    conn: sqlite3.Connection,
    now: int,
    task: WorkflowTask,
    plan: CommitPlan,
    take: Take | None = None,
    *,
    leased: bool = True,
) -> tuple[list[ActivityTask], list[str]]:
    """Store ``plan`` for ``task`` as ``tapeflow.backends.plan`` says (steps 1 to 8, by
    number below); with ``take``, the new activities of ``take.activities`` are leased to
    its owner (and returned) and the run's next task is sticky to it. Not ``leased``: an
    imposed ending, fenced by the history's length alone. Raises LeaseLost or UnseenEvents
    having written nothing."""
    run_id = task.run_id
    _check_lease(conn, now, task, leased)  # 1
    if plan.ending is not None and plan.ending.by_code:  # 2
        _refuse_unseen(conn, task, plan.consumed)
    ids = json_text(list(plan.consumed))  # 3
    conn.execute(_Q["delete_consumed_inbox"], {"run_id": run_id, "ids": ids})
    conn.executemany(
        _Q["insert_history"],
        [
            {"run_id": run_id, "seq": task.history_length + n, "event": event}
            for n, event in enumerate(plan.history, start=1)
        ],
    )
    conn.executemany(
        _Q["answer_update"],
        [
            {"id": task.workflow_id, "update_id": answer.update_id, "outcome": answer.outcome}
            for answer in plan.updates
        ],
    )
    length = task.history_length + len(plan.history)
    going_on = plan.ending is None  # an ending drops the run's own new rows (step 6)
    woken = _insert_plan_inbox(conn, now, run_id, plan.inbox, own=going_on)  # 4
    taken = _insert_activities(conn, now, run_id, plan.activities, take) if going_on else {}
    for query, seqs in (
        ("cancel_activity_tasks", plan.cancelled_activities),
        ("cancel_timers", plan.cancelled_timers),
    ):
        conn.execute(_Q[query], {"run_id": run_id, "seqs": json_text(list(seqs))})
    if plan.ending is not None:  # 6
        woken |= _end_run(conn, now, run_id, plan.ending, length, plan.vars)
    else:
        params = {"run_id": run_id, "history_length": length, "vars": plan.vars}
        conn.execute(_Q["advance_run"], params)
        sticky = None if take is None else take.owner
        conn.execute(_Q["release_workflow_task"], {"run_id": run_id, "sticky_owner": sticky})
    for new in plan.workflows:  # 7
        try:
            _create_run(conn, now, new)
            created = True
        except WorkflowAlreadyExists:
            created = False
        if new.receipt is not None and going_on:
            _insert_inbox(conn, run_id, new.receipt[0 if created else 1], now)
    wake_run = plan.ending is None and _has_inbox(conn, run_id)  # 8
    topics = commit_topics(task, plan, taken=frozenset(taken), wake_run=wake_run, woken=woken)
    return [taken_activity(task, plan, seq, task_id) for seq, task_id in taken.items()], topics


def _check_lease(conn: sqlite3.Connection, now: int, task: WorkflowTask, leased: bool) -> None:
    row = conn.execute(_Q["workflow_task_fence"], {"run_id": task.run_id}).fetchone()
    if row is None or (
        leased and (row["lease_token"] != task.lease_token or (row["lease_expires_at"] or 0) <= now)
    ):
        raise LeaseLost(f"workflow task {task.workflow_id!r}: lease lost")
    if row["history_length"] != task.history_length:
        raise LeaseLost(f"workflow task {task.workflow_id!r}: history moved on")


def _refuse_unseen(conn: sqlite3.Connection, task: WorkflowTask, consumed: Sequence[int]) -> None:
    """A run may not end past events in its inbox that its task did not see."""
    params = {"run_id": task.run_id, "consumed": json_text(list(consumed))}
    if conn.execute(_Q["unseen_inbox"], params).fetchone()["unseen"]:
        raise UnseenEvents(f"workflow task {task.workflow_id!r}: events came while it ran")


def _insert_plan_inbox(
    conn: sqlite3.Connection, now: int, run_id: str, rows: Iterable[NewInboxEvent], *, own: bool
) -> set[str]:
    """The plan's inbox rows (step 4): into this run's inbox (if ``own``: it goes on), or
    another run's if it is unfinished (else dropped), their receipts into this run's;
    returns the names of the other workflows written to."""
    woken = set()
    for row in rows:
        visible_at = now if row.visible_at is None else _us(row.visible_at)
        if row.workflow_id is None and row.run_id is None:
            if own:
                _insert_inbox(conn, run_id, row.event, visible_at, row.timer_seq)
            continue
        if row.run_id is not None:
            target = conn.execute(_Q["get_run"], {"run_id": row.run_id}).fetchone()
        else:
            target = _find_run(conn, row.workflow_id or "")
        delivered = target is not None and not WorkflowStatus(target["status"]).finished
        if delivered:
            _deliver(conn, target, row.event, visible_at, row.timer_seq)
            woken.add(target["name"])
        if row.receipt is not None and own:
            receipt = row.receipt
            said = receipt.delivered if delivered else receipt.closed if target else receipt.missing
            _insert_inbox(conn, run_id, said, now)
    return woken


def _insert_activities(
    conn: sqlite3.Connection,
    now: int,
    run_id: str,
    activities: Iterable[NewActivity],
    take: Take | None,
) -> dict[int, int]:
    """The plan's activity tasks, due now, those of ``take`` leased to its owner (attempt
    1); returns the task ids of those taken, by seq."""
    taken = {}
    for activity in activities:
        admitted = _admits(conn, activity.queue)
        leased = take is not None and activity.seq in take.activities and admitted
        cursor = conn.execute(
            _Q["insert_activity_task"],
            {
                "run_id": run_id,
                "seq": activity.seq,
                "name": activity.name,
                "args": activity.args,
                "retry": activity.retry,
                "timeouts": activity.timeouts,
                "trace_context": activity.trace_context,
                "now": now,
                "owner": take.owner if take and leased else None,
                "expires": now + _micros(take.lease) if take and leased else None,
                "leased": int(leased),
                "queue": activity.queue,
                "priority": activity.priority,
                "admitted": admitted,
            },
        )
        if leased:
            taken[activity.seq] = cursor.lastrowid or 0
    return taken


def _end_run(
    conn: sqlite3.Connection, now: int, run_id: str, ending: Ending, length: int, vars: str | None
) -> set[str]:
    """The run takes its ending; its task, activity tasks and inbox go; its open children
    get its close (step 6). Returns the names of the children written to."""
    conn.execute(
        _Q["end_run"],
        {
            "run_id": run_id,
            "status": ending.status.value,
            "result": ending.result,
            "failure": ending.failure,
            "now": now,
            "history_length": length,
            "reason": ending.reason,
            "requested_by": ending.requested_by,
            "vars": vars,
        },
    )
    for query in ("drop_workflow_task", "drop_activity_tasks", "drop_inbox"):
        conn.execute(_Q[query], {"run_id": run_id})
    children = conn.execute(_Q["open_children"], {"run_id": run_id}).fetchall()
    for child in children:  # their parent close policy
        _deliver(conn, child, child["on_parent_close"], now)
    return {child["name"] for child in children}


def _has_inbox(conn: sqlite3.Connection, run_id: str) -> bool:
    return bool(conn.execute(_Q["run_has_inbox"], {"run_id": run_id}).fetchone()["waiting"])


# -- activity outcomes ---------------------------------------------------------------------


def _activity_lease_lost(conn: sqlite3.Connection, task: ActivityTask) -> LeaseLost:
    """Why a write of the attempt's outcome was refused: the task is gone, or not held."""
    what = f"activity task {task.id} ({task.name!r})"
    if conn.execute(_Q["activity_task_exists"], {"id": task.id}).fetchone()["found"]:
        return LeaseLost(f"{what}: lease lost")
    return ActivityTaskGone(f"{what}: cancelled, or its workflow ended")


def _complete(
    conn: sqlite3.Connection,
    now: int,
    task: ActivityTask,
    outcome: ActivityCompleted | ActivityFailed,
    take: Take | None = None,
    ahead: RunAhead | None = None,
) -> tuple[Continued, list[str]]:
    """Record an activity's final outcome, its lease checked. With ``take``, the run's task
    is leased to its owner if free, and ``ahead`` committed with it if the run's history is
    still as long as it expects (and it is not refused); otherwise the outcome goes to the
    inbox, and the task leased comes back resumed, the outcome in its inbox."""
    params = {"id": task.id, "token": task.lease_token, "now": now}
    if conn.execute(_Q["delete_activity_task"], params).rowcount == 0:
        raise _activity_lease_lost(conn, task)
    room = sorted(queue_topics([task.queue]))  # its queue has room for another
    held = None
    if take is not None:
        held = _lease_run(
            conn, now, task.run_id, take.owner, now + _micros(take.lease), steal=False
        )
    if held is not None and ahead is not None and held["history_length"] == ahead.history_length:
        with contextlib.suppress(UnseenEvents), _savepoint(conn):
            ran_ahead = workflow_task(held, (), _dt(now))
            taken, topics = _apply_plan(conn, now, ran_ahead, ahead.plan, take)
            return Continued(True, taken, None), [*topics, *room]
    _insert_inbox(conn, task.run_id, encode_event(outcome), now)
    if held is None:
        woken = [work_topic(TaskKind.WORKFLOW, task.workflow_name), *room]
        return Continued(False, [], None), woken
    return Continued(False, [], _with_inbox(conn, now, held)), room


@contextlib.contextmanager
def _savepoint(conn: sqlite3.Connection) -> Iterator[None]:
    """Undo the block's writes, and only those, if it raises."""
    conn.execute("SAVEPOINT block")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK TO block")
        raise
    finally:
        conn.execute("RELEASE block")


# -- setup ---------------------------------------------------------------------------------


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
