"""PostgreSQL backend: a psycopg connection pool, SKIP LOCKED claims, LISTEN/NOTIFY wake-ups.

The database's clock decides everything time-based (claims, leases, timers, retries), so
a worker with a wrong clock cannot steal a lease or fire a timer early. Every state change
of a workflow is one transaction, fenced by the lease token handed out at claim time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from tapeflow.backends._batcher import Batcher
from tapeflow.backends._pollers import PollRecorder
from tapeflow.backends._redact import redact
from tapeflow.backends._rows import (
    FAILURE,
    activity_task,
    history,
    json_text,
    workflow_record,
    workflow_task,
)
from tapeflow.backends._sql_files import load_queries, migrations, read_sql
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
from tapeflow.backends.postgres._conninfo import checked
from tapeflow.backends.wakeups import Wakeups, Watch, work_topic
from tapeflow.errors import (
    BackendUnavailable,
    InvalidArgument,
    LeaseLost,
    SchemaVersionError,
    TapeflowError,
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
    JSONValue,
    encode_event,
)

log = logging.getLogger("tapeflow.postgres")
_PACKAGE = __package__ or "tapeflow.backends.postgres"
_Q = load_queries(_PACKAGE)
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,50}")
_UNSEEN = "unseen events"
"""The commit function's refusal to end a workflow past events its task did not see."""
_REVISION = re.compile(r"^-- revision: (\d+)$", re.MULTILINE)


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class _Write:
    """One item of a batched write: the batch function's parameters for it, and whom to
    wake once it is committed, given its outcome."""

    params: dict[str, Any]
    wake: Callable[[dict[str, Any]], Iterable[str]]


@dataclass(frozen=True)
class _Commit:
    """A workflow task's commit: its ``workflow_commit`` row (see schema.sql), and what the
    batch function's outcome for it means: whom to wake, which activities it leased."""

    workflow_id: str
    workflow_name: str
    plan: CommitPlan
    eager: EagerActivities | None
    params: dict[str, Any]

    @classmethod
    def of(
        cls,
        workflow_id: str,
        workflow_name: str,
        token: int,
        history_length: int,
        consumed: Sequence[int],
        events: Sequence[HistoryEvent],
        eager: EagerActivities | None,
    ) -> _Commit:
        plan = plan_commit(events)
        ending = plan.ending
        failure = ending.failure if ending else None
        params = {
            "id": workflow_id,
            "token": token,
            "history_length": history_length,
            "consumed": list(consumed),
            "events": [encode_event(e) for e in events],
            "activity_seqs": [a.seq for a in plan.activities],
            "activity_names": [a.name for a in plan.activities],
            "activity_args": [json_text(a.args) for a in plan.activities],
            "activity_retries": [
                None if a.retry is None else json_text(a.retry) for a in plan.activities
            ],
            "timer_dues": [due.isoformat() for _, due, _ in plan.timers],
            "timer_seqs": [seq for seq, _, _ in plan.timers],
            "timer_events": [encode_event(fired) for _, _, fired in plan.timers],
            "cancelled_timers": plan.cancelled_timers,
            "status": None if ending is None else "completed" if ending.completed else "failed",
            "result": json_text(ending.result) if ending and ending.completed else None,
            "failure": None if failure is None else FAILURE.dump_json(failure).decode(),
            "eager_seqs": sorted(eager.seqs) if eager else [],
            "owner": eager.owner if eager else None,
            "lease": f"{eager.lease.total_seconds()} seconds" if eager else None,
        }
        return cls(workflow_id, workflow_name, plan, eager, params)

    def wake(self, outcome: dict[str, Any]) -> list[str]:
        if outcome["error"] is not None:
            return []
        return commit_topics(
            self.workflow_id,
            self.workflow_name,
            self.plan,
            self.eager,
            wake_workflow=outcome["wake"],
        )

    def eager_tasks(self, outcome: dict[str, Any]) -> list[ActivityTask]:
        by_seq = {a.seq: a for a in self.plan.activities}
        return [
            eager_task(self.workflow_id, self.workflow_name, by_seq[seq], task_id)
            for task_id, seq in outcome["eager"]
        ]


async def _apply_functions(conn: psycopg.AsyncConnection[Any]) -> None:
    """Apply functions.sql when it differs from the copy in place, unless that copy has a
    higher revision (a newer tapeflow applied it): run under the migration lock."""
    text = read_sql(_PACKAGE, "functions.sql")
    found = _REVISION.search(text)
    assert found is not None, "functions.sql names its revision"
    revision, checksum = int(found.group(1)), hashlib.sha256(text.encode()).hexdigest()
    cursor = await conn.execute("SELECT revision, checksum FROM schema_functions")
    applied = await cursor.fetchone()
    if applied is not None and (applied[0] > revision or applied[1] == checksum):
        return
    await conn.execute(text.encode())
    await conn.execute("DELETE FROM schema_functions")
    await conn.execute("INSERT INTO schema_functions VALUES (%s, %s)", (revision, checksum))


class PostgresBackend:
    def __init__(
        self, conninfo: str, *, schema: str = "tapeflow", min_size: int = 1, max_size: int = 10
    ) -> None:
        if not _SCHEMA_NAME.fullmatch(schema):
            raise InvalidArgument(
                f"a tapeflow schema name is lower-case letters, digits and '_': {schema!r}"
            )
        self.conninfo = checked(conninfo)
        self.schema = schema
        self.channel = f"tapeflow_{schema}"
        self._shown = redact(conninfo)
        self._session: dict[str, Any] = {"autocommit": True, "options": f"-c search_path={schema}"}
        self._pool = AsyncConnectionPool(
            self.conninfo,
            min_size=min_size,
            max_size=max_size,
            kwargs=self._session,
            open=False,
            name=f"tapeflow-{schema}",
            timeout=5.0,  # a caller waits this long for a connection, then backs off
            reconnect_timeout=float("inf"),  # keep trying to reconnect through long outages
        )
        self._wakeups = Wakeups()
        self._polls = PollRecorder()
        self._starts = Batcher(self._flush_starts)
        self._commits = Batcher(self._flush_commits)
        self._completions = Batcher(self._flush_completions)
        self._listener: asyncio.Task[None] | None = None
        self._listening = False

    def __repr__(self) -> str:
        return f"PostgresBackend({self._shown!r}, schema={self.schema!r})"

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
        if self._listener is not None:
            return
        await self._migrate()
        try:
            await self._pool.open(wait=True, timeout=30)
        except PoolTimeout as exc:  # the database went away since the migration
            raise self._unavailable(exc) from exc
        self._listener = asyncio.create_task(self._listen(), name="tapeflow-listen")

    async def close(self) -> None:
        if self._listener is None:
            return
        self._listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._listener
        self._listener = None
        await self._pool.close()

    @contextlib.asynccontextmanager
    async def _connection(
        self, *, transaction: bool = False
    ) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection (in a transaction if asked); connection failures surface as
        BackendUnavailable, and the broken connection is dropped from the pool."""
        try:
            async with self._pool.connection() as conn:
                if transaction:
                    async with conn.transaction():
                        yield conn
                else:
                    yield conn
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
            raise BackendUnavailable(f"PostgreSQL is unavailable: {exc}") from exc

    def _unavailable(self, exc: Exception) -> BackendUnavailable:
        """libpq's message names the host, the port and the server's complaint (a missing
        database, a refused password); the URL adds the database and the user."""
        return BackendUnavailable(
            f"cannot use PostgreSQL at {self._shown}: {' '.join(str(exc).split())}"
        )

    async def _migrate(self) -> None:
        """Create or upgrade the schema: once, however many processes start together.

        Done on a connection of its own, before the pool opens, so that a wrong URL fails
        at once with libpq's reason instead of as a pool that retries until a timeout."""
        try:
            conn = await psycopg.AsyncConnection.connect(self.conninfo, **self._session)
            async with conn, conn.transaction():
                await self._migrate_on(conn)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise self._unavailable(exc) from exc

    async def _migrate_on(self, conn: psycopg.AsyncConnection[Any]) -> None:
        steps = migrations(_PACKAGE)
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('tapeflow.migrate.' || %s))", (self.schema,)
        )
        await conn.execute(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema))
        )
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
        cursor = await conn.execute("SELECT coalesce(max(version), 0) FROM schema_version")
        row = await cursor.fetchone()
        current = int(row[0]) if row else 0
        if current > len(steps):
            raise SchemaVersionError(
                f"the database schema {self.schema!r} is version {current}, newer than "
                f"this tapeflow knows ({len(steps)}): upgrade tapeflow"
            )
        for version, script in steps[current:]:
            await conn.execute(script.encode())
            await conn.execute("INSERT INTO schema_version VALUES (%s)", (version,))
        await _apply_functions(conn)

    async def _listen(self) -> None:
        """Turn NOTIFYs from every process into in-process wake-ups; reconnect if dropped."""
        backoff = 0.05
        while True:
            backoff = min(backoff * 2, 5.0)
            try:
                conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
                async with conn:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    if backoff > 0.1:  # back after a failure: drop pooled connections it broke
                        await self._pool.check()
                    self._listening, backoff = True, 0.1
                    self._wakeups.notify_all()  # wake-ups may have been missed while away
                    async for notification in conn.notifies():
                        self._wakeups.notify((notification.payload,))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("listening for wake-ups failed (%s); retrying in %.1fs", exc, backoff)
            finally:
                self._listening = False
            await asyncio.sleep(backoff)

    @property
    def wakes_other_processes(self) -> bool:
        return self._listening

    def _notify_here(self, topics: list[str]) -> None:
        """While not listening, at least this process's own watchers learn at once."""
        if not self._listening:
            self._wakeups.notify(topics)

    # -- clients ---------------------------------------------------------------------------

    async def create_workflow(self, new: NewWorkflow) -> None:
        if not await self._starts.submit(new):
            raise WorkflowAlreadyExists(new.id)

    async def _flush_starts(self, starts: list[NewWorkflow]) -> list[bool]:
        """Starts that arrive together go out in one statement; which of them were created
        (an id taken, in the database or earlier in the batch, is not)."""
        first: dict[str, int] = {}
        for index, new in enumerate(starts):
            first.setdefault(new.id, index)
        unique = sorted((starts[i] for i in first.values()), key=lambda new: new.id)
        async with self._connection() as conn:
            cursor = await conn.execute(
                _Q["create_workflows"],
                {
                    "ids": [new.id for new in unique],
                    "names": [new.name for new in unique],
                    "versions": [new.version for new in unique],
                    "args": [json_text(new.args) for new in unique],
                    "start_ats": [new.start_at for new in unique],
                },
            )
            created = {row[0] for row in await cursor.fetchall()}
            await self._wake(
                conn, {work_topic(TaskKind.WORKFLOW, n.name) for n in unique if n.id in created}
            )
        return [new.id in created and first[new.id] == i for i, new in enumerate(starts)]

    async def _wake(self, conn: psycopg.AsyncConnection[Any], topics: set[str]) -> None:
        """Send wake-ups for work just committed. A failure here loses nothing: the work is
        stored, and pollers look again at their fallback interval."""
        if not topics:
            return
        try:  # to every process, whether or not this one is listening right now
            await conn.execute(_Q["notify"], {"channel": self.channel, "topics": list(topics)})
        except psycopg.Error as exc:
            log.warning("sending wake-ups failed (%s); pollers will find the work", exc)
        self._notify_here(list(topics))

    async def get_workflow(self, workflow_id: str) -> WorkflowRecord:
        async with self._connection() as conn:
            cursor = await conn.execute(_Q["get_workflow"], {"id": workflow_id})
            row = await cursor.fetchone()
        if row is None:
            raise WorkflowNotFound(workflow_id)
        times = (_utc(row[5]), _utc(row[6]), row[7] and _utc(row[7]))
        return workflow_record((*row[:5], *times, *row[8:]))

    async def load_history(self, workflow_id: str) -> list[HistoryEvent]:
        async with self._connection() as conn:
            cursor = await conn.execute(_Q["load_history"], {"id": workflow_id})
            rows = await cursor.fetchall()
            if not rows:
                exists = await conn.execute(_Q["workflow_exists"], {"id": workflow_id})
                if await exists.fetchone() is None:
                    raise WorkflowNotFound(workflow_id)
        return history(workflow_id, (row[0] for row in rows))

    async def send_event(self, workflow_id: str, name: str, payload: JSONValue) -> None:
        event = EventReceived(name=name, payload=payload)
        async with self._connection() as conn:
            cursor = await conn.execute(
                _Q["send_event"], {"id": workflow_id, "event": encode_event(event)}
            )
            row = await cursor.fetchone()
            if row is not None and row[2]:
                await self._wake(conn, {work_topic(TaskKind.WORKFLOW, row[1])})
        if row is None:
            raise WorkflowNotFound(workflow_id)
        if (status := WorkflowStatus(row[0])).finished:
            raise WorkflowAlreadyCompleted(workflow_id, status)

    def watch(self, topics: Iterable[str]) -> Watch:
        return self._wakeups.watch(topics)

    # -- workflow tasks --------------------------------------------------------------------

    async def claim_workflow_tasks(
        self, names: Sequence[str], owner: str, lease: timedelta, limit: int
    ) -> list[WorkflowTask]:
        if not names:
            return []
        params = {
            "names": list(names),
            "owner": owner,
            "lease": lease,
            "limit": limit,
            "sticky": STICKY_FOR,
            "polled": self._polls.due(TaskKind.WORKFLOW, names),
        }
        return await self._workflow_tasks("claim_workflow_tasks", params)

    async def reclaim_workflow_task(
        self, workflow_id: str, resume: ResumeWorkflow
    ) -> WorkflowTask | None:
        params = {"id": workflow_id, "owner": resume.owner, "lease": resume.lease}
        found = await self._workflow_tasks("reclaim_workflow_task", params)
        return found[0] if found else None

    async def _workflow_tasks(self, query: str, params: dict[str, Any]) -> list[WorkflowTask]:
        async with self._connection() as conn:
            cursor = await conn.execute(_Q[query], params)
            rows = await cursor.fetchall()
        return [
            workflow_task(
                wid, name, length, zip(ids, events, strict=True), token, _utc(now), failures
            )
            for wid, name, token, failures, now, length, ids, events in rows
        ]

    async def commit_workflow_task(
        self,
        task: WorkflowTask,
        consumed: Sequence[int],
        events: Sequence[HistoryEvent],
        eager: EagerActivities | None = None,
    ) -> list[ActivityTask]:
        commit = _Commit.of(
            task.workflow_id,
            task.workflow_name,
            task.lease_token,
            task.history_length,
            consumed,
            events,
            eager,
        )
        outcome = await self._commits.submit(_Write(commit.params, commit.wake))
        error = outcome["error"]
        if error == _UNSEEN:
            raise UnseenEvents(f"workflow task {task.workflow_id!r}: events came while it ran")
        if error is not None:
            if error.startswith("failed:"):
                raise TapeflowError(f"committing the task of {task.workflow_id!r} {error}")
            raise LeaseLost(f"workflow task {task.workflow_id!r}: {error}")
        return commit.eager_tasks(outcome)

    async def _flush_commits(self, writes: list[_Write]) -> list[dict[str, Any]]:
        return await self._in_workflow_order(writes, "commit_workflow_tasks", "tasks", "id")

    async def _in_workflow_order(
        self, writes: list[_Write], query: str, parameter: str, workflow_key: str
    ) -> list[dict[str, Any]]:
        """Run a batch function over ``writes`` sorted by workflow id, so concurrent batches
        lock rows in the same order and never deadlock, then wake whom they ask for;
        outcomes come back in the writes' order."""
        order = sorted(range(len(writes)), key=lambda i: str(writes[i].params[workflow_key]))
        async with self._connection() as conn:
            cursor = await conn.execute(
                _Q[query], {parameter: json_text([writes[i].params for i in order])}
            )
            row = await cursor.fetchone()
            assert row is not None
            outcomes: list[dict[str, Any]] = [{}] * len(writes)
            for position, outcome in zip(order, row[0], strict=True):
                outcomes[position] = outcome
            topics = {t for write, o in zip(writes, outcomes, strict=True) for t in write.wake(o)}
            await self._wake(conn, topics)
        return outcomes

    async def abandon_workflow_task(
        self, task: WorkflowTask, error: str | None, delay: timedelta
    ) -> None:
        await self._fenced(
            "abandon_workflow_task",
            {"id": task.workflow_id, "token": task.lease_token, "error": error, "delay": delay},
            f"workflow task {task.workflow_id!r}",
            [work_topic(TaskKind.WORKFLOW, task.workflow_name)],
        )

    # -- activity tasks --------------------------------------------------------------------

    async def claim_activity_tasks(
        self, names: Sequence[str], owner: str, lease: timedelta, limit: int
    ) -> list[ActivityTask]:
        if not names:
            return []
        async with self._connection() as conn:
            cursor = await conn.execute(
                _Q["claim_activity_tasks"],
                {
                    "names": list(names),
                    "owner": owner,
                    "lease": lease,
                    "limit": limit,
                    "polled": self._polls.due(TaskKind.ACTIVITY, names),
                },
            )
            rows = await cursor.fetchall()
        return [
            activity_task(id_, wid, workflow_name, seq, name, args, retry, attempt, token, details)
            for id_, wid, seq, name, args, retry, attempt, token, workflow_name, details in rows
        ]

    async def reclaim_eager_activities(
        self, workflow_id: str, eager: EagerActivities
    ) -> list[ActivityTask]:
        async with self._connection() as conn:
            cursor = await conn.execute(
                _Q["reclaim_eager_activities"],
                {
                    "workflow_id": workflow_id,
                    "seqs": sorted(eager.seqs),
                    "owner": eager.owner,
                    "lease": eager.lease,
                },
            )
            rows = await cursor.fetchall()
        return [
            activity_task(id_, wid, wf_name, seq, name, args, retry, attempt, token, details)
            for id_, wid, seq, name, args, retry, attempt, token, wf_name, details in rows
        ]

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
        topic = work_topic(TaskKind.WORKFLOW, task.workflow_name)
        params: dict[str, Any] = {
            "id": task.id,
            "workflow_id": task.workflow_id,
            "token": task.lease_token,
            "event": encode_event(outcome),
            "owner": resume.owner if resume else None,
            "lease": f"{resume.lease.total_seconds()} seconds" if resume else None,
        }
        commit = None
        if continuation is not None:  # the task's token is the one leased in the same call
            commit = _Commit.of(
                task.workflow_id,
                task.workflow_name,
                0,
                continuation.history_length,
                [],
                continuation.events,
                continuation.eager,
            )
            params["commit"] = commit.params

        def wake(result: dict[str, Any]) -> list[str]:
            if not result["recorded"]:
                return []
            if commit is not None and result.get("continued") is not None:
                return commit.wake(result["continued"])
            return [topic] if result["resumed"] is None else []

        result = await self._completions.submit(_Write(params, wake))
        if not result["recorded"]:
            raise LeaseLost(f"activity task {task.id} ({task.name!r}): lease lost")
        if commit is not None and result.get("continued") is not None:
            return Continued(True, commit.eager_tasks(result["continued"]), None)
        resumed = result["resumed"]
        if resumed is None:
            return Continued(False, [], None)
        return Continued(
            False,
            [],
            workflow_task(
                task.workflow_id,
                task.workflow_name,
                resumed["history_length"],
                zip(resumed["ids"], resumed["events"], strict=True),
                resumed["token"],
                _utc(datetime.fromisoformat(resumed["claimed_at"])),
                resumed["failures"],
            ),
        )

    async def _flush_completions(self, writes: list[_Write]) -> list[dict[str, Any]]:
        return await self._in_workflow_order(
            writes, "complete_activity_tasks", "items", "workflow_id"
        )

    async def retry_activity_task(
        self,
        task: ActivityTask,
        failure: Failure,
        delay: timedelta,
        heartbeat_details: JSONValue = None,
    ) -> None:
        await self._fenced(
            "retry_activity_task",
            {
                "id": task.id,
                "token": task.lease_token,
                "delay": delay,
                "failure": FAILURE.dump_json(failure).decode(),
                "details": None if heartbeat_details is None else json_text(heartbeat_details),
            },
            f"activity task {task.id} ({task.name!r})",
            [work_topic(TaskKind.ACTIVITY, task.name)],
        )

    async def _fenced(
        self, query: str, params: dict[str, Any], what: str, topics: list[str]
    ) -> None:
        """One statement that writes only while our lease holds, then wakes ``topics``;
        no row changed means the lease was lost."""
        async with self._connection() as conn:
            cursor = await conn.execute(_Q[query], params)
            if cursor.rowcount == 0:
                raise LeaseLost(f"{what}: lease lost")
            await self._wake(conn, set(topics))

    # -- both ------------------------------------------------------------------------------

    async def extend_leases(
        self,
        leases: Sequence[LeaseRef],
        lease: timedelta,
        heartbeats: Mapping[str, JSONValue] | None = None,
    ) -> list[LeaseRef]:
        beats = heartbeats or {}
        kept: set[tuple[TaskKind, str]] = set()
        async with self._connection() as conn:
            for kind, query in (
                (TaskKind.WORKFLOW, "extend_workflow_leases"),
                (TaskKind.ACTIVITY, "extend_activity_leases"),
            ):
                refs = [ref for ref in leases if ref.kind is kind]
                if not refs:
                    continue
                params: dict[str, Any] = {"tokens": [r.token for r in refs], "lease": lease}
                if kind is TaskKind.WORKFLOW:
                    params["ids"] = [r.id for r in refs]
                else:
                    params["ids"] = [int(r.id) for r in refs]
                    params["details"] = [
                        json_text(beats[r.id]) if r.id in beats else None for r in refs
                    ]
                cursor = await conn.execute(_Q[query], params)
                kept.update((kind, row[0]) for row in await cursor.fetchall())
        return [ref for ref in leases if (ref.kind, ref.id) not in kept]

    async def next_due(
        self, kind: TaskKind, names: Sequence[str], owner: str | None = None
    ) -> timedelta | None:
        if not names:
            return None
        query = "next_due_workflow" if kind is TaskKind.WORKFLOW else "next_due_activity"
        params = {"names": list(names), "owner": owner, "sticky": STICKY_FOR}
        async with self._connection() as conn:
            cursor = await conn.execute(_Q[query], params)
            row = await cursor.fetchone()
        seconds = row[0] if row else None
        return None if seconds is None else timedelta(seconds=float(seconds))
