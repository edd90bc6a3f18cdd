"""PostgreSQL backend: a psycopg connection pool, SKIP LOCKED claims, LISTEN/NOTIFY wake-ups.

The database's clock decides everything time-based (claims, leases, timers, retries), so
a worker with a wrong clock cannot steal a lease or fire a timer early. Every state change
of a run is one transaction, fenced by the lease token handed out at claim time. Writes
reach the functions of functions.sql as JSON (a commit is its plan's ``as_json()``) and
come back as JSON outcomes, refused with a code (``Refusal``) or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import hashlib
import logging
import random
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from tapeflow.backends._batcher import Batcher
from tapeflow.backends._lifecycle import OpensAndCloses
from tapeflow.backends._pollers import PollRecorder
from tapeflow.backends._redact import redact
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
from tapeflow.backends._sql_files import load_queries, migrations, read_sql
from tapeflow.backends._visibility import filtered, summary
from tapeflow.backends.base import (
    STICKY_FOR,
    ActivityTask,
    Continued,
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
from tapeflow.backends.plan import (
    CommitPlan,
    OfRun,
    commit_topics,
    new_workflow_json,
    taken_activity,
)
from tapeflow.backends.postgres._conninfo import checked
from tapeflow.backends.presence import FORGET_AFTER, WorkerInfo, WorkerRecord
from tapeflow.backends.queue_limits import Admission, QueueRecord
from tapeflow.backends.reset import ResetPlan
from tapeflow.backends.schedules import (
    KEEP_RUNS,
    Decide,
    DueSchedules,
    Fired,
    ScheduleRecord,
    ScheduleRun,
    ScheduleState,
    ScheduleWrite,
    StoredSchedule,
    schedule_run,
    stored_schedule,
)
from tapeflow.backends.wakeups import Wakeups, Watch, queue_topics, schedule_topic, work_topic
from tapeflow.errors import (
    ActivityTaskGone,
    BackendUnavailable,
    InvalidArgument,
    LeaseLost,
    ScheduleAlreadyExists,
    ScheduleNotFound,
    SchemaVersionError,
    TapeflowError,
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
    Failure,
    HistoryEvent,
    JSONValue,
    UpdateRequested,
    WorkflowCancelRequested,
    encode_event,
)
from tapeflow.queues import DEFAULT_QUEUE, Queue

log = logging.getLogger("tapeflow.postgres")
_PACKAGE = __package__ or "tapeflow.backends.postgres"
_Q = load_queries(_PACKAGE)
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,50}")
SENDER_BYTES = 8
_SENDER = re.compile(rf"[0-9a-f]{{{2 * SENDER_BYTES}}}")
"""A NOTIFY payload's sender: topics start with a word and a colon, never like this."""
_REVISION = re.compile(r"^-- revision: (\d+)$", re.MULTILINE)

T = TypeVar("T")
Connection = psycopg.AsyncConnection[DictRow]
DEADLOCK_RETRIES = 5
Outcome = dict[str, Any]
"""What a function in functions.sql returned for one write, decoded from JSON."""


class Refusal(enum.StrEnum):
    """Why a function in functions.sql refused a write (its outcome's ``refused``)."""

    LEASE_LOST = "lease_lost"
    GONE = "gone"
    """An activity task that no longer exists (cancelled, or its run ended)."""
    HISTORY_MOVED = "history_moved"
    UNSEEN_EVENTS = "unseen_events"
    """Nothing was written: ending the run would drop events its task did not see."""
    FAILED = "failed"
    """The database raised (the outcome's ``error``); the write's savepoint was undone."""


def _refused(outcome: Outcome, what: str) -> TapeflowError | None:
    """The error a refused outcome means to the caller, or None if it was not refused."""
    if outcome["refused"] is None:
        return None
    match Refusal(outcome["refused"]):
        case Refusal.LEASE_LOST:
            return LeaseLost(f"{what}: lease lost")
        case Refusal.GONE:
            return ActivityTaskGone(f"{what}: cancelled, or its workflow ended")
        case Refusal.HISTORY_MOVED:
            return LeaseLost(f"{what}: the run's history moved on")
        case Refusal.UNSEEN_EVENTS:
            return UnseenEvents(f"{what}: events came while it ran")
        case Refusal.FAILED:
            return TapeflowError(f"{what} could not be stored: {outcome['error']}")


def _rolled_back(error: BaseException | None) -> bool:
    """Whether the database undid the transaction for a conflict with another (a deadlock,
    a serialization failure: SQLSTATE class 40), which sending it again resolves."""
    return isinstance(error, psycopg.Error) and (error.sqlstate or "").startswith("40")


async def _resent(what: str, send: Callable[[], Awaitable[T]]) -> T:
    """``send()``, sent again at once if the database undid it for a conflict with another
    transaction (a deadlock: batches lock some rows in an order no sort can fix), up to
    DEADLOCK_RETRIES times. Undone, it wrote nothing."""
    attempt = 1
    while True:
        try:
            return await send()
        except BackendUnavailable as exc:
            if attempt == DEADLOCK_RETRIES or not _rolled_back(exc.__cause__):
                raise
            log.debug("%s: %s; sent again", what, exc.__cause__)
        await asyncio.sleep(random.uniform(0, 0.01 * attempt))
        attempt += 1


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def _from_json_time(text: str) -> datetime:
    """A time as json_build_object writes it."""
    return _utc(datetime.fromisoformat(text))


def _interval(duration: timedelta) -> str:
    """A duration as interval text, for the parts of a JSON argument."""
    return f"{duration.total_seconds()} seconds"


def _take(take: Take | None) -> dict[str, JSONValue] | None:
    """A ``Take`` as functions.sql takes it."""
    if take is None:
        return None
    return {
        "owner": take.owner,
        "lease": _interval(take.lease),
        "activities": sorted(take.activities),
    }


def _leased(row: Mapping[str, Any]) -> WorkflowTask:
    """A workflow task as ``leased_task`` (functions.sql) gives it."""
    return workflow_task(row, row["inbox"], _from_json_time(row["claimed_at"]))


def _same(span: timedelta) -> timedelta:
    return span


def _schedule_params(schedule: StoredSchedule) -> dict[str, object]:
    """The columns of a ``schedules`` row a write sets (all but its name and times)."""
    spec = schedule.spec
    return {
        "id": schedule.id,
        "args": json_text(schedule.args),
        "cron": spec.cron,
        "every": spec.every,
        "timezone": spec.timezone,
        "overlap": spec.overlap,
        "catchup_window": spec.catchup_window,
        "paused": schedule.paused,
        "next_due_at": schedule.next_due,
        "buffered_at": schedule.buffered,
        "skipped_catchup": schedule.skipped_catchup,
        "skipped_overlap": schedule.skipped_overlap,
    }


def _schedule_json(schedule: StoredSchedule) -> dict[str, JSONValue]:
    """A schedule's columns as ``store_schedules`` takes them."""
    spec, buffered = schedule.spec, schedule.buffered
    return {
        "id": schedule.id,
        "args": schedule.args,
        "cron": spec.cron,
        "every": None if spec.every is None else _interval(spec.every),
        "timezone": spec.timezone,
        "overlap": spec.overlap,
        "catchup_window": _interval(spec.catchup_window),
        "paused": schedule.paused,
        "next_due_at": schedule.next_due.isoformat(),
        "buffered_at": None if buffered is None else buffered.isoformat(),
        "skipped_catchup": schedule.skipped_catchup,
        "skipped_overlap": schedule.skipped_overlap,
    }


def _seconds(value: float | None) -> timedelta | None:
    return None if value is None else timedelta(seconds=float(value))


def _plan_topics(task: OfRun, plan: CommitPlan, take: Take | None, outcome: Outcome) -> list[str]:
    """Whom to wake once ``plan`` is stored as ``outcome`` says (plan step 8)."""
    if outcome["refused"] is not None:
        return []
    return commit_topics(
        task,
        plan,
        taken=take.activities if take else frozenset(),
        wake_run=outcome["wake"],
        woken=outcome["woken"],
    )


def _taken(task: OfRun, plan: CommitPlan, outcome: Outcome) -> list[ActivityTask]:
    """The new activity tasks the stored plan leased to its worker."""
    return [taken_activity(task, plan, seq, task_id) for task_id, seq in outcome["leased"]]


@dataclass(frozen=True)
class _Start:
    """One item of a batch of starts: ``create_workflow``'s arguments."""

    new: NewWorkflow
    use_existing: bool


Started = tuple[str, str, str, str]
"""What ``start_run`` (functions.sql) said of a start: its outcome ("created", "found",
"taken" or "closed"), and the run id, workflow name and status of the run it made or
found."""


@dataclass(frozen=True)
class _Write:
    """One item of a batched write: the batch function's parameters for it, and whom to
    wake once it is committed, given its outcome."""

    params: dict[str, Any]
    wake: Callable[[Outcome], Iterable[str]]


async def _apply_functions(conn: Connection) -> None:
    """Apply functions.sql when it differs from the copy in place, unless that copy has a
    higher revision (a newer tapeflow applied it): run under the migration lock."""
    text = read_sql(_PACKAGE, "functions.sql")
    found = _REVISION.search(text)
    assert found is not None, "functions.sql names its revision"
    revision, checksum = int(found.group(1)), hashlib.sha256(text.encode()).hexdigest()
    cursor = await conn.execute("SELECT revision, checksum FROM schema_functions")
    applied = await cursor.fetchone()
    if applied is not None and (applied["revision"] > revision or applied["checksum"] == checksum):
        return
    await conn.execute(text.encode())
    await conn.execute("DELETE FROM schema_functions")
    await conn.execute("INSERT INTO schema_functions VALUES (%s, %s)", (revision, checksum))


class PostgresBackend(OpensAndCloses):
    """The core protocol, the ``HandOffs`` and ``InspectsSchema`` capabilities and the
    ``Visibility`` reads."""

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
        self._sender = secrets.token_hex(SENDER_BYTES)
        """Names this backend's NOTIFYs, so that it skips their echo."""
        self._shown = redact(conninfo)
        self._session: dict[str, Any] = {
            "autocommit": True,
            "options": f"-c search_path={schema}",
            "row_factory": dict_row,
        }
        self._pool = AsyncConnectionPool(
            self.conninfo,
            connection_class=Connection,
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
    async def _connection(self) -> AsyncIterator[Connection]:
        """A pooled connection (autocommit: every write is one statement, or one function);
        connection failures surface as BackendUnavailable, and the broken connection is
        dropped from the pool."""
        try:
            async with self._pool.connection() as conn:
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
            conn = await Connection.connect(self.conninfo, **self._session)
            async with conn, conn.transaction():
                await self._migrate_on(conn)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise self._unavailable(exc) from exc

    async def schema_version(self) -> SchemaVersion:
        latest = len(migrations(_PACKAGE))
        try:
            conn = await Connection.connect(self.conninfo, **self._session)
            async with conn:
                # search_path is the schema alone: a missing schema or table reads as NULL
                cursor = await conn.execute("SELECT to_regclass('schema_version') AS found")
                row = await cursor.fetchone()
                if row is None or row["found"] is None:
                    return SchemaVersion(0, latest)
                cursor = await conn.execute(
                    "SELECT coalesce(max(version), 0) AS version FROM schema_version"
                )
                row = await cursor.fetchone()
                return SchemaVersion(int(row["version"]) if row else 0, latest)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise self._unavailable(exc) from exc

    async def _migrate_on(self, conn: Connection) -> None:
        steps = migrations(_PACKAGE)
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('tapeflow.migrate.' || %s))", (self.schema,)
        )
        await conn.execute(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema))
        )
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
        cursor = await conn.execute(
            "SELECT coalesce(max(version), 0) AS version FROM schema_version"
        )
        row = await cursor.fetchone()
        current = int(row["version"]) if row else 0
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
                        topic = self._heard(notification.payload)
                        if topic is not None:
                            self._wakeups.notify((topic,))
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

    def _heard(self, payload: str) -> str | None:
        """The topic of a NOTIFY's payload, None for this backend's own echo: its watchers
        were woken when it sent it. A payload without a sender (an older tapeflow's) is
        the topic itself."""
        sender, mark, topic = payload.partition("|")
        if not mark or not _SENDER.fullmatch(sender):
            return payload
        return None if sender == self._sender else topic

    async def _wake(self, conn: Connection, topics: set[str]) -> None:
        """Wake-ups for work just committed: this process's watchers at once (not after a
        round trip through the server), then every other process. A failure here loses
        nothing: the work is stored, and pollers look again at their fallback interval."""
        if not topics:
            return
        self._wakeups.notify(topics)
        try:
            await conn.execute(
                _Q["notify"],
                {"channel": self.channel, "sender": self._sender, "topics": list(topics)},
            )
        except psycopg.Error as exc:
            log.warning("sending wake-ups failed (%s); pollers will find the work", exc)

    async def _rows(self, query: str, params: Mapping[str, Any]) -> list[DictRow]:
        return await self._fetch(_Q[query], params)

    async def _execute(self, query: str, params: Mapping[str, Any]) -> None:
        async with self._connection() as conn:
            await conn.execute(_Q[query], params)

    async def _fetch(self, text: str, params: Mapping[str, Any]) -> list[DictRow]:
        async with self._connection() as conn:
            cursor = await conn.execute(text, params)
            return await cursor.fetchall()

    # -- clients ---------------------------------------------------------------------------

    async def create_workflow(self, new: NewWorkflow, *, use_existing: bool = False) -> str:
        outcome, run_id, _, status = await self._starts.submit(_Start(new, use_existing))
        if outcome == "taken":
            raise WorkflowAlreadyExists(new.id)
        if outcome == "closed":
            raise WorkflowAlreadyCompleted(new.id, WorkflowStatus(status))
        return run_id

    async def _flush_starts(self, starts: list[_Start]) -> list[Started]:
        """Starts that arrive together go out in one statement (start_runs, functions.sql):
        the first of each id made together, then the others settled in the order they
        came."""
        first: dict[str, int] = {}  # each id's first start
        for index, start in enumerate(starts):
            first.setdefault(start.new.id, index)
        order = [*first.values(), *(i for i, s in enumerate(starts) if first[s.new.id] != i)]
        rows = [
            {**new_workflow_json(starts[i].new), "use_existing": starts[i].use_existing}
            for i in order
        ]
        params = {"runs": json_text(rows[: len(first)]), "later": json_text(rows[len(first) :])}
        return await _resent("start_workflows", lambda: self._run_starts(starts, order, params))

    async def _run_starts(
        self, starts: list[_Start], order: list[int], params: dict[str, str]
    ) -> list[Started]:
        async with self._connection() as conn:
            cursor = await conn.execute(_Q["start_workflows"], params)
            row = await cursor.fetchone()
            assert row is not None
            settled = {order[position]: tuple(said) for position, said in row["settled"]}
            outcomes: list[Started] = [  # each start not settled was made
                settled.get(i, ("created", s.new.run_id, s.new.name, "pending"))
                for i, s in enumerate(starts)
            ]
            woken = {
                work_topic(TaskKind.WORKFLOW, name)
                for start, (outcome, _, name, _) in zip(starts, outcomes, strict=True)
                if outcome == "created" or (outcome == "found" and start.new.events)
            }
            made = (s.new.queue for s, o in zip(starts, outcomes, strict=True) if o[0] == "created")
            await self._wake(conn, woken | queue_topics(made))
        return outcomes

    async def request_cancel(self, workflow_id: str, reason: str) -> None:
        event = encode_event(WorkflowCancelRequested(reason=reason))
        async with self._connection() as conn:
            cursor = await conn.execute(
                _Q["request_cancel"], {"id": workflow_id, "event": event, "reason": reason}
            )
            row = await cursor.fetchone()
            if row is None:
                raise WorkflowNotFound(workflow_id)
            if (status := WorkflowStatus(row["status"])).finished:
                raise WorkflowAlreadyCompleted(workflow_id, status)
            if row["asked"]:
                await self._wake(conn, {work_topic(TaskKind.WORKFLOW, row["name"])})

    async def reset_workflow(self, plan: ResetPlan) -> None:
        async with self._connection() as conn:
            cursor = await conn.execute(_Q["reset_run"], {"reset": json_text(plan.as_json())})
            row = await cursor.fetchone()
            assert row is not None
            outcome = row["outcome"]
            if (error := _refused(outcome, f"the reset of {plan.workflow_id!r}")) is not None:
                raise error
            topics = commit_topics(plan.new_run(), plan.rows)
            if plan.ending is not None:
                topics += commit_topics(plan.old_run(), plan.ending, woken=outcome["woken"])
            await self._wake(conn, set(topics))

    async def delete_workflow(self, workflow_id: str) -> None:
        rows = await self._rows("delete_workflow", {"id": workflow_id})
        status = rows[0]["status"]
        if status is None:
            raise WorkflowNotFound(workflow_id)
        if not WorkflowStatus(status).finished:
            raise WorkflowStillOpen(workflow_id, status)

    async def delete_closed(self, older_than: timedelta, limit: int) -> int | None:
        rows = await self._rows("delete_closed", {"older_than": older_than, "limit": limit})
        deleted: int | None = rows[0]["deleted"]
        return deleted

    async def get_workflow(self, workflow_id: str, run_id: str | None = None) -> WorkflowRecord:
        rows = await self._rows("get_workflow", {"id": workflow_id, "run_id": run_id})
        if not rows:
            raise WorkflowNotFound(workflow_id)
        return workflow_record(rows[0], _utc)

    async def load_history(self, workflow_id: str, run_id: str | None = None) -> list[HistoryEvent]:
        rows = await self._rows("load_history", {"id": workflow_id, "run_id": run_id})
        if not rows:
            raise WorkflowNotFound(workflow_id)
        return history(workflow_id, (row["event"] for row in rows if row["event"] is not None))

    async def list_runs(
        self, where: RunFilter, limit: int, after: RunKey | None = None
    ) -> list[WorkflowSummary]:
        text, params = filtered(_Q["list_runs"], _Q, where, after, _utc, list)
        return [summary(row, _utc) for row in await self._fetch(text, {**params, "limit": limit})]

    async def count_runs(self, where: RunFilter) -> dict[WorkflowStatus, int]:
        text, params = filtered(_Q["count_runs"], _Q, where, None, _utc, list)
        return {WorkflowStatus(row["status"]): row["n"] for row in await self._fetch(text, params)}

    async def send_event(
        self,
        workflow_id: str,
        name: str,
        payload: JSONValue,
        *,
        idempotency_key: str | None = None,
    ) -> None:
        event = EventReceived(name=name, payload=payload)
        params = {"id": workflow_id, "event": encode_event(event), "key": idempotency_key}
        async with self._connection() as conn:
            cursor = await conn.execute(_Q["send_event"], params)
            row = await cursor.fetchone()
            if row is not None and row["delivered"]:
                await self._wake(conn, {work_topic(TaskKind.WORKFLOW, row["name"])})
        if row is None:
            raise WorkflowNotFound(workflow_id)
        if not row["fresh"]:  # sent with this key already
            return
        if (status := WorkflowStatus(row["status"])).finished:
            raise WorkflowAlreadyCompleted(workflow_id, status)

    async def request_update(self, workflow_id: str, request: UpdateRequested) -> None:
        params = {"id": workflow_id, "update_id": request.update_id, "event": encode_event(request)}
        async with self._connection() as conn:
            cursor = await conn.execute(_Q["request_update"], params)
            row = await cursor.fetchone()
            if row is None:
                raise WorkflowNotFound(workflow_id)
            if not row["fresh"]:  # requested already: its answer stands
                return
            if (status := WorkflowStatus(row["status"])).finished:
                raise WorkflowAlreadyCompleted(workflow_id, status)
            await self._wake(conn, {work_topic(TaskKind.WORKFLOW, row["name"])})

    async def get_update(self, workflow_id: str, update_id: str) -> UpdateRecord | None:
        rows = await self._rows("get_update", {"id": workflow_id, "update_id": update_id})
        return update_record(rows[0]) if rows else None

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
        params = {
            "names": list(names),
            "queues": list(queues),
            "owner": owner,
            "lease": lease,
            "limit": limit,
            "sticky": STICKY_FOR,
            "polled": self._polls.due(TaskKind.WORKFLOW, names),
        }
        return [_leased(row["task"]) for row in await self._rows("claim_workflow_tasks", params)]

    async def commit_workflow_task(self, task: WorkflowTask, plan: CommitPlan) -> None:
        await self._commit(task, plan, None)

    async def commit_and_take(
        self, task: WorkflowTask, plan: CommitPlan, take: Take
    ) -> list[ActivityTask]:
        return await self._commit(task, plan, take)

    async def impose_ending(self, task: WorkflowTask, plan: CommitPlan) -> None:
        await self._commit(task, plan, None, leased=False)

    async def _commit(
        self, task: WorkflowTask, plan: CommitPlan, take: Take | None, *, leased: bool = True
    ) -> list[ActivityTask]:
        params = {
            "run_id": task.run_id,
            "token": task.lease_token if leased else None,  # None: fenced by length alone
            "history_length": task.history_length,
            "plan": plan.as_json(),
            "take": _take(take),
        }
        outcome = await self._commits.submit(
            _Write(params, lambda done: _plan_topics(task, plan, take, done))
        )
        if (error := _refused(outcome, f"the workflow task of {task.workflow_id!r}")) is not None:
            raise error
        return _taken(task, plan, outcome)

    async def _flush_commits(self, writes: list[_Write]) -> list[Outcome]:
        return await self._in_run_order(writes, "commit_workflow_tasks")

    async def _in_run_order(self, writes: list[_Write], query: str) -> list[Outcome]:
        """Run a batch function over ``writes`` sorted by run id, so that concurrent batches
        lock their own runs' rows in the same order, then wake whom they ask for; outcomes
        come back in the writes' order.

        Rows of other runs (a child's parent, an event's target) are locked later, in an
        order no sort can fix: two batches may deadlock (see ``_resent``)."""
        order = sorted(range(len(writes)), key=lambda i: str(writes[i].params["run_id"]))
        items = json_text([writes[i].params for i in order])
        return await _resent(query, lambda: self._run_batch(writes, order, query, items))

    async def _run_batch(
        self, writes: list[_Write], order: list[int], query: str, items: str
    ) -> list[Outcome]:
        async with self._connection() as conn:
            cursor = await conn.execute(_Q[query], {"items": items})
            row = await cursor.fetchone()
            assert row is not None
            outcomes: list[Outcome] = [{}] * len(writes)
            for position, outcome in zip(order, row["outcomes"], strict=True):
                outcomes[position] = outcome
            topics = {t for write, o in zip(writes, outcomes, strict=True) for t in write.wake(o)}
            await self._wake(conn, topics)
        return outcomes

    async def abandon_workflow_task(
        self, task: WorkflowTask, error: str | None, delay: timedelta
    ) -> None:
        await self._fenced(
            "abandon_workflow_task",
            {"run_id": task.run_id, "token": task.lease_token, "error": error, "delay": delay},
            f"the workflow task of {task.workflow_id!r}",
            [work_topic(TaskKind.WORKFLOW, task.workflow_name)],
        )

    async def reclaim(self, run_id: str, take: Take) -> Reclaimed:
        rows = await self._rows("reclaim", {"run_id": run_id, "take": json_text(_take(take))})
        found = rows[0]["reclaimed"]
        task = found["task"]
        return Reclaimed(
            None if task is None else _leased(task),
            [activity_task(row, _from_json_time) for row in found["activities"]],
        )

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
        params = {
            "names": list(names),
            "queues": list(queues),
            "owner": owner,
            "lease": lease,
            "limit": limit,
            "polled": self._polls.due(TaskKind.ACTIVITY, names),
        }
        rows = await self._rows("claim_activity_tasks", params)
        return [activity_task(row, _utc) for row in rows]

    async def complete_activity_task(
        self, task: ActivityTask, outcome: ActivityCompleted | ActivityFailed
    ) -> None:
        await self._complete(task, outcome, None, None)

    async def complete_and_continue(
        self,
        task: ActivityTask,
        outcome: ActivityCompleted | ActivityFailed,
        take: Take,
        ahead: RunAhead | None = None,
    ) -> Continued:
        return await self._complete(task, outcome, take, ahead)

    async def _complete(
        self,
        task: ActivityTask,
        outcome: ActivityCompleted | ActivityFailed,
        take: Take | None,
        ahead: RunAhead | None,
    ) -> Continued:
        params: dict[str, Any] = {
            "id": task.id,
            "run_id": task.run_id,
            "token": task.lease_token,
            "event": encode_event(outcome),
            "take": _take(take),
            "ahead": None
            if ahead is None
            else {"history_length": ahead.history_length, "plan": ahead.plan.as_json()},
        }

        def committed(done: Outcome) -> bool:
            return done["ahead"] is not None and done["ahead"]["refused"] is None

        def wake(done: Outcome) -> list[str]:
            if done["refused"] is not None:
                return []
            room = sorted(queue_topics([task.queue]))  # its queue has room for another
            if ahead is not None and committed(done):
                return [*_plan_topics(task, ahead.plan, take, done["ahead"]), *room]
            if done["task"]:
                return room
            return [work_topic(TaskKind.WORKFLOW, task.workflow_name), *room]

        done = await self._completions.submit(_Write(params, wake))
        if (error := _refused(done, f"activity task {task.id} ({task.name!r})")) is not None:
            raise error
        if ahead is not None and committed(done):
            return Continued(True, _taken(task, ahead.plan, done["ahead"]), None)
        if done["ahead"] is not None and done["ahead"]["refused"] == Refusal.FAILED:
            log.warning(
                "the run-ahead task of %r could not be stored: %s",
                task.workflow_id,
                done["ahead"]["error"],
            )
        return Continued(False, [], None if done["task"] is None else _leased(done["task"]))

    async def _flush_completions(self, writes: list[_Write]) -> list[Outcome]:
        return await self._in_run_order(writes, "complete_activity_tasks")

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
            [work_topic(TaskKind.ACTIVITY, task.name), *queue_topics([task.queue])],
            activity=task.id,
        )

    async def _fenced(
        self,
        query: str,
        params: dict[str, Any],
        what: str,
        topics: list[str],
        *,
        activity: int | None = None,
    ) -> None:
        """One statement that writes only while our lease holds, then wakes ``topics``;
        no row changed means the lease was lost (for an ``activity`` task that no longer
        exists: ActivityTaskGone)."""
        async with self._connection() as conn:
            cursor = await conn.execute(_Q[query], params)
            if cursor.rowcount == 0:
                if activity is not None:
                    found = await conn.execute(_Q["activity_task_exists"], {"id": activity})
                    row = await found.fetchone()
                    if row is not None and not row["found"]:
                        raise ActivityTaskGone(f"{what}: cancelled, or its workflow ended")
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
                kept.update((kind, row["id"]) for row in await cursor.fetchall())
        return [ref for ref in leases if (ref.kind, ref.id) not in kept]

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
        params = {"names": list(names), "queues": list(queues), "owner": owner}
        rows = await self._rows(query, {**params, "sticky": STICKY_FOR})
        seconds = rows[0]["seconds"] if rows else None
        return None if seconds is None else timedelta(seconds=float(seconds))

    # -- reads for operators (PollerReads) -------------------------------------------------

    async def list_pollers(self) -> list[PollerRecord]:
        rows = await self._rows("list_pollers", {})
        return [PollerRecord(TaskKind(r["kind"]), r["name"], _utc(r["last_poll_at"])) for r in rows]

    # -- queues with limits (QueueLimits) --------------------------------------------------

    async def declare_queue(self, queue: Queue) -> Queue | None:
        rate = queue.rate_limit
        params = {
            "name": queue.name,
            "concurrency": queue.concurrency,
            "rate_limit": None if rate is None else rate[0],
            "rate_period": None if rate is None else rate[1],
        }
        async with self._connection() as conn:
            cursor = await conn.execute(_Q["declare_queue"], params)
            before = await cursor.fetchone()
            # Limits lifted: what waits is admitted by the next claim of a worker serving it.
            await self._wake(conn, queue_topics([queue.name]))
        previous = None if before is None else declared_queue(before, _same)
        return previous if previous != queue else None

    async def admit_workflow_tasks(
        self, queue: str, names: Sequence[str], owner: str, lease: timedelta, limit: int
    ) -> Admission[WorkflowTask]:
        done = await self._admit(TaskKind.WORKFLOW, queue, names, owner, lease, limit)
        return Admission([_leased(task) for task in done["tasks"]], _seconds(done["retry_in"]))

    async def admit_activity_tasks(
        self, queue: str, names: Sequence[str], owner: str, lease: timedelta, limit: int
    ) -> Admission[ActivityTask]:
        done = await self._admit(TaskKind.ACTIVITY, queue, names, owner, lease, limit)
        tasks = [activity_task(row, _from_json_time) for row in done["tasks"]]
        return Admission(tasks, _seconds(done["retry_in"]))

    async def _admit(
        self,
        kind: TaskKind,
        queue: str,
        names: Sequence[str],
        owner: str,
        lease: timedelta,
        limit: int,
    ) -> Any:
        params = {
            "kind": kind.value,
            "queue": queue,
            "names": list(names),
            "owner": owner,
            "lease": lease,
            "limit": limit,
        }
        (row,) = await self._rows("admit_queue", params)
        return row["admitted"]

    async def list_queues(self) -> list[QueueRecord]:
        rows = await self._rows("list_queues", {})
        return [queue_record(row, _same) for row in rows]

    # -- who runs (WorkerPresence) ---------------------------------------------------------

    async def report_worker(self, info: WorkerInfo) -> None:
        params = {"id": info.id, "info": json_text(info.to_json()), "forget": FORGET_AFTER}
        await self._execute("report_worker", params)

    async def report_worker_stopped(self, worker_id: str) -> None:
        await self._execute("report_worker_stopped", {"id": worker_id})

    async def list_workers(self, seen_within: timedelta) -> list[WorkerRecord]:
        rows = await self._rows("list_workers", {"within": seen_within})
        return [worker_record(r, _utc) for r in rows]

    # -- schedules (Schedules) -------------------------------------------------------------

    async def create_schedule(self, make: Callable[[datetime], StoredSchedule]) -> StoredSchedule:
        async with self._connection() as conn:
            cursor = await conn.execute(_Q["database_now"])
            row = await cursor.fetchone()
            assert row is not None
            schedule = make(_utc(row["now"]))
            params = {**_schedule_params(schedule), "workflow_name": schedule.workflow}
            cursor = await conn.execute(_Q["insert_schedule"], params)
            made = await cursor.fetchone()
            if made is None:
                raise ScheduleAlreadyExists(schedule.id)
            await self._wake(conn, {schedule_topic(schedule.workflow)})
        return dataclasses.replace(
            schedule, created_at=_utc(made["created_at"]), updated_at=_utc(made["updated_at"])
        )

    async def change_schedule(self, schedule_id: str, decide: Decide) -> list[str] | None:
        async with self._connection() as conn:
            async with conn.transaction():
                cursor = await conn.execute(_Q["lock_schedule"], {"id": schedule_id})
                row = await cursor.fetchone()
                if row is None:
                    raise ScheduleNotFound(schedule_id)
                cursor = await conn.execute(_Q["open_schedule_runs"], {"id": schedule_id})
                open_runs = tuple(r["workflow_id"] for r in await cursor.fetchall())
                schedule = stored_schedule(row, _utc, _same)
                decided = decide(ScheduleState(schedule, open_runs, _utc(row["now"])))
                if decided is None:
                    return None
                created, topics = await self._store_schedules(conn, [(decided, open_runs)])
            await self._wake(conn, topics)
        return created

    async def fire_schedules(self, schedule_ids: Sequence[str], decide: Decide) -> Fired:
        fired = Fired()
        async with self._connection() as conn:
            async with conn.transaction():
                cursor = await conn.execute(_Q["lock_due_schedules"], {"ids": list(schedule_ids)})
                decided: list[tuple[ScheduleWrite, tuple[str, ...]]] = []
                for row in await cursor.fetchall():
                    open_runs = tuple(row["open_runs"])
                    try:
                        schedule = stored_schedule(row, _utc, _same)
                        write = decide(ScheduleState(schedule, open_runs, _utc(row["now"])))
                    except Exception as exc:  # this one alone: the others fire
                        fired.failed[row["id"]] = f"{type(exc).__name__}: {exc}"
                        continue
                    fired.handled.append(row["id"])
                    if write is not None:
                        decided.append((write, open_runs))
                created, topics = await self._store_schedules(conn, decided)
            await self._wake(conn, topics)
        fired.created.extend(created)
        return fired

    async def _store_schedules(
        self, conn: Connection, decided: list[tuple[ScheduleWrite, tuple[str, ...]]]
    ) -> tuple[list[str], set[str]]:
        """Store decisions (``ScheduleWrite``, each with the open runs it saw) in the
        transaction that locked their rows: their workflows (an id taken is left as it is)
        in one statement, each recorded as its schedule's run, their cancels, their rows;
        returns the workflows created and the topics to wake."""
        created: list[str] = []
        topics: set[str] = set()
        if not decided:
            return created, topics
        starts = [start for write, _ in decided for start in write.starts]
        if starts:
            runs = json_text([new_workflow_json(start.workflow) for start in starts])
            cursor = await conn.execute(_Q["create_scheduled_runs"], {"runs": runs})
            made = {row["run_id"] for row in await cursor.fetchall()}
            for start in starts:
                if start.workflow.run_id in made:
                    created.append(start.workflow.id)
                    topics.add(work_topic(TaskKind.WORKFLOW, start.workflow.name))
        for write, _ in decided:
            event = encode_event(WorkflowCancelRequested(reason=write.cancel_reason))
            for workflow_id in write.cancels:
                cancel = {"id": workflow_id, "event": event, "reason": write.cancel_reason}
                cursor = await conn.execute(_Q["request_cancel"], cancel)
                asked = await cursor.fetchone()
                if asked is not None and asked["asked"]:
                    topics.add(work_topic(TaskKind.WORKFLOW, asked["name"]))
            if write.wake:
                topics.add(schedule_topic(write.schedule.workflow))
        items = [
            {
                **_schedule_json(write.schedule),
                "runs": [
                    {"workflow_id": s.workflow.id, "due_at": s.due_at.isoformat()}
                    for s in write.starts
                ],
                "open": list(open_runs),  # the new runs are not seen by the prune
            }
            for write, open_runs in decided
        ]
        await conn.execute(_Q["store_schedules"], {"items": json_text(items), "keep": KEEP_RUNS})
        return created, topics

    async def due_schedules(self, workflows: Sequence[str], limit: int) -> DueSchedules:
        (row,) = await self._rows("due_schedules", {"names": list(workflows), "limit": limit})
        due: list[str] = list(row["due"])
        awaiting: list[str] = []
        for schedule_id, waits_for in row["buffering"]:
            awaiting += waits_for
            if not waits_for and schedule_id not in due:
                due.append(schedule_id)
        return DueSchedules(due[:limit], _seconds(row["seconds"]), awaiting)

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord:
        rows = await self._rows("get_schedule", {"id": schedule_id})
        if not rows:
            raise ScheduleNotFound(schedule_id)
        return (await self._schedule_records(rows))[0]

    async def list_schedules(self) -> list[ScheduleRecord]:
        return await self._schedule_records(await self._rows("list_schedules", {}))

    async def _schedule_records(self, rows: list[DictRow]) -> list[ScheduleRecord]:
        ids = [row["id"] for row in rows]
        runs: dict[str, list[ScheduleRun]] = {schedule_id: [] for schedule_id in ids}
        for run in await self._rows("schedule_runs", {"ids": ids}) if ids else []:
            runs[run["schedule_id"]].append(schedule_run(run, _utc))
        return [ScheduleRecord(stored_schedule(row, _utc, _same), runs[row["id"]]) for row in rows]

    async def delete_schedule(self, schedule_id: str) -> None:
        if not await self._rows("delete_schedule", {"id": schedule_id}):
            raise ScheduleNotFound(schedule_id)
