"""``python -m benchmarks.growth --closed 1000000``: does tapeflow stay flat as data grows?

Two databases side by side, one empty and one holding ``--closed`` closed workflows with
their histories, and on each the suite's own measurements (``benchmarks.scenarios``): the
throughput of one-activity workflows and the latency from start to result, with the
suite's worker processes. The pairs alternate (empty, full, empty, full, ...: ``--pairs``),
since the machine's load moves. Then, on the full one: the bytes on disk per closed
workflow by table, the plans of the claim and next-due queries (``EXPLAIN (ANALYZE,
BUFFERS)`` on PostgreSQL, with some claimable work present), and what retention does: the
backend's own ``delete_closed`` in batches of ``--retention-batch``, with a retention
(``--keep-days``) shorter than the oldest part of the fill, timed, and the bytes after it
(PostgreSQL: before and after a plain ``VACUUM``, which makes the space reusable but does
not give it back to the file system; SQLite's ``VACUUM`` rewrites the file), and after as
many new closed workflows as were deleted (how much of the freed space they take).
PostgreSQL also reports, per workflow of each throughput run, the blocks its statements
read from outside shared buffers by table, and the WAL the server wrote meanwhile (the
whole server's: other databases' writes are in it).

Both databases are dropped at the end (PostgreSQL: the two schemas in the database of
``--postgres-url``, which must exist; SQLite: two files in a temporary folder).

The fill. A closed workflow has rows in two tables: ``workflows`` (its run) and ``history``
(its events); its task, inbox and activity rows were deleted when it ended. A few
one-activity workflows (``--templates``) run through a real worker first; their rows are
then copied ``--closed`` times with new ids (random UUIDs, as the client makes them) and
times spread evenly over ``--days`` days ending an hour ago (created, started and
completed times each moved by the same amount, so a run keeps its own duration), in
transactions of ``--fill-batch`` workflows, into the schema with its indexes in place (so
they grow as they would in service, not packed by a rebuild). The events' bodies are the
templates' as they are (their own time stamps included: the same length either way).
PostgreSQL: ``INSERT ... SELECT`` over ``generate_series``, then ``VACUUM (ANALYZE)``;
SQLite: a recursive CTE, then ``ANALYZE``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import tapeflow
from benchmarks import scenarios
from benchmarks.databases import DEFAULT_POSTGRES_URL, Database, fresh
from benchmarks.scenarios import Figures, Settings, Sizes
from benchmarks.workloads import ACTIVITIES, WORKFLOWS, one_step
from tapeflow.backends import _sql_files

CLOSED_TABLES = ("workflows", "history")
"""The tables a closed workflow has rows in (``check_templates`` makes sure)."""

OPEN_TABLES = ("workflow_tasks", "inbox", "activity_tasks")

TEMPLATE = "template-"
"""The ids of the real workflows the fill copies start so."""

PENDING = 50
"""Claimable workflow tasks and activity tasks each, present while the plans are taken."""


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def _short(plan: str) -> str:
    """A plan with its long literal arrays (the run ids a claim read) cut short."""
    return re.sub(r"'\{([^}]{120})[^}]*\}'", r"'{\1...}'", plan)


def closed_scans(plans: dict[str, str]) -> list[str]:
    """The plans that read a table of closed rows whole (PostgreSQL "Seq Scan on workflows",
    SQLite "SCAN w" / "SCAN history")."""
    found = []
    for label, plan in plans.items():
        for table in CLOSED_TABLES:
            if re.search(rf"(Seq Scan on {table}\b|SCAN {table}\b|SCAN w\b)", plan):
                found.append(f"{label}: {table}")
    return found


def _schema(db: Database) -> str:
    return db.url.split("schema=")[1].split("&")[0]


# -- measurements ---------------------------------------------------------------------------


async def measure(db: Database, settings: Settings) -> Figures:
    """The suite's one-activity throughput, then its latency, on ``db``. PostgreSQL: also
    the blocks the throughput run's statements found outside shared buffers, by table (its
    indexes counted with it), per workflow, and the WAL written meanwhile (the server's
    whole: other databases' writes are in it)."""
    load = _load()
    io_before = _block_reads(db) if db.kind == "postgres" else {}
    tput = await scenarios.throughput(db, settings, 1)
    io_after = _block_reads(db) if db.kind == "postgres" else {}
    lat = await scenarios.latency(db, settings)
    figures: Figures = {
        "load_before": load,
        "load_after": _load(),
        "workflows_per_s": tput["workflows_per_s"],
        "latency_median_ms": lat["median_ms"],
        "latency_p95_ms": lat["p95_ms"],
    }
    if io_before:
        count = settings.sizes.throughput
        figures["blocks_read_per_workflow"] = {
            k: (io_after[k] - v) / count for k, v in io_before.items() if k != "wal"
        }
        figures["server_wal_bytes_per_workflow"] = (io_after["wal"] - io_before["wal"]) / count
    return figures


def _block_reads(db: Database) -> dict[str, int]:
    """Blocks read from outside shared buffers so far, by table of the schema (heap, its
    indexes and TOAST), and the server's WAL position."""
    import psycopg

    with psycopg.connect(db.server, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT relname, heap_blks_read + coalesce(idx_blks_read, 0)"
            " + coalesce(toast_blks_read, 0) + coalesce(tidx_blks_read, 0)"
            " FROM pg_statio_user_tables WHERE schemaname = %s",
            (_schema(db),),
        ).fetchall()
        wal = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
    out = {r[0]: int(r[1]) for r in rows}
    out["wal"] = int(wal[0]) if wal else 0
    return out


async def run_templates(db: Database, count: int) -> None:
    """``count`` one-activity workflows through a real worker (in this process)."""
    async with (
        tapeflow.connect(db.url) as backend,
        tapeflow.Worker(backend, workflows=WORKFLOWS, activities=ACTIVITIES),
    ):
        client = tapeflow.Client(backend)
        for index in range(count):
            handle = await client.start_workflow(one_step, index, id=f"{TEMPLATE}{index}")
            await handle.result(timeout=60)


async def pending_work(db: Database) -> None:
    """``PENDING`` claimable activity tasks (their workflows' first tasks run by a worker
    that has no activities), then ``PENDING`` claimable workflow tasks (started, no worker)."""
    async with tapeflow.connect(db.url) as backend:
        client = tapeflow.Client(backend)
        async with tapeflow.Worker(backend, workflows=WORKFLOWS):
            handles = [await client.start_workflow(one_step, i) for i in range(PENDING)]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                states = [await h.describe() for h in handles]
                if all(s.history_length >= 3 for s in states):
                    break
                await asyncio.sleep(0.1)
        for index in range(PENDING):
            await client.start_workflow(one_step, index)


async def finish_pending(db: Database) -> None:
    """Run what ``pending_work`` left to the end (it joins the closed workflows)."""
    async with (
        tapeflow.connect(db.url) as backend,
        tapeflow.Worker(backend, workflows=WORKFLOWS, activities=ACTIVITIES),
    ):
        client = tapeflow.Client(backend)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if not await client.count_workflows(status=["pending", "running"]):
                return
            await asyncio.sleep(0.2)


async def retention(db: Database, keep: timedelta, batch: int, budget: float) -> Figures:
    """The backend's ``delete_closed`` (what a worker's retention calls), batch after batch
    until nothing is past ``keep`` or ``budget`` seconds have gone."""
    times: list[float] = []
    deleted, finished = 0, False
    async with tapeflow.connect(db.url) as backend:
        began = time.perf_counter()
        while time.perf_counter() - began < budget:
            start = time.perf_counter()
            done = await backend.delete_closed(keep, batch)
            times.append((time.perf_counter() - start) * 1000)
            deleted += done or 0
            if done is not None and done < batch:
                finished = True
                break
        seconds = time.perf_counter() - began
    return {
        "deleted": deleted,
        "batches": len(times),
        "batch": batch,
        "seconds": seconds,
        "workflows_per_s": deleted / seconds if seconds else 0.0,
        "batch_median_ms": statistics.median(times) if times else 0.0,
        "batch_p95_ms": scenarios.percentile(times, 0.95) if times else 0.0,
        "finished": finished,
    }


# -- PostgreSQL -----------------------------------------------------------------------------


class Postgres:
    def __init__(self, db: Database) -> None:
        import psycopg
        from psycopg import sql

        self.db = db
        self.schema = _schema(db)
        self.conn = psycopg.connect(db.server, autocommit=True)
        self.conn.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(self.schema)))

    def close(self) -> None:
        self.conn.close()

    def check_templates(self) -> int:
        """The templates are closed, with rows in ``CLOSED_TABLES`` only."""
        left = sum(
            self.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]
            for table in OPEN_TABLES
        )
        if left:
            raise RuntimeError(f"the templates left {left} rows in {', '.join(OPEN_TABLES)}")
        count: int = self.conn.execute(
            "SELECT count(*) FROM workflows WHERE status = 'completed'"
        ).fetchone()[0]  # type: ignore[index]
        return count

    def _columns(self, table: str) -> list[str]:
        rows = self.conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            (self.schema, table),
        ).fetchall()
        return [r[0] for r in rows]

    def fill(self, closed: int, days: float, batch: int) -> Figures:
        """Copy the templates ``closed`` times."""
        began = time.perf_counter()
        conn = self.conn
        runs_before = _runs(conn)
        _copy_templates(conn)
        templates: int = conn.execute("SELECT count(*) FROM tpl").fetchone()[0]  # type: ignore[index]
        moved = {"run_id", "id", "created_at", "start_at", "completed_at"}
        kept = [c for c in self._columns("workflows") if c not in moved]
        columns = ", ".join(["run_id", "id", "created_at", "start_at", "completed_at", *kept])
        values = ", ".join(
            [
                "n.run_id",
                "n.id",
                "n.at",
                "n.at + (t.start_at - t.created_at)",
                "n.at + (t.completed_at - t.created_at)",
                *(f"t.{c}" for c in kept),
            ]
        )
        insert = f"""
            WITH n AS MATERIALIZED (
                SELECT g, gen_random_uuid()::text AS run_id, gen_random_uuid()::text AS id,
                       %(first)s::timestamptz + (g - 1) * %(step)s::interval AS at
                FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g
            ), w AS (
                INSERT INTO workflows ({columns})
                SELECT {values} FROM n JOIN tpl t ON t.k = n.g %% %(templates)s
            )
            INSERT INTO history (run_id, seq, event)
            SELECT n.run_id, h.seq, h.event
            FROM n JOIN tpl_history h ON h.k = n.g %% %(templates)s
            ORDER BY n.g, h.seq
        """
        span = timedelta(days=days)
        first = datetime.now(UTC) - timedelta(hours=1) - span
        step = span / closed
        for lo in range(1, closed + 1, batch):
            hi = min(closed, lo + batch - 1)
            with conn.transaction():
                conn.execute(
                    insert,
                    {"first": first, "step": step, "lo": lo, "hi": hi, "templates": templates},
                )
            print(f"  {hi:,} / {closed:,} ({time.perf_counter() - began:.0f}s)", flush=True)
        inserted = time.perf_counter() - began
        _check_fill(conn, runs_before + closed)
        conn.execute("DROP TABLE tpl, tpl_history")
        conn.execute("VACUUM (ANALYZE)")
        return {
            "templates": templates,
            "insert_seconds": inserted,
            "seconds": time.perf_counter() - began,
            "oldest": first.isoformat(),
        }

    def sizes(self) -> dict[str, dict[str, int]]:
        """Bytes of each table of the schema: heap, indexes, TOAST (and the rest: the free
        space and visibility maps), total."""
        rows = self.conn.execute(
            """
            SELECT c.relname, pg_relation_size(c.oid), pg_indexes_size(c.oid),
                   coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0),
                   pg_total_relation_size(c.oid), c.reltuples::bigint
            FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace
            WHERE s.nspname = %s AND c.relkind = 'r' ORDER BY c.relname
            """,
            (self.schema,),
        ).fetchall()
        return {
            r[0]: {"heap": r[1], "indexes": r[2], "toast": r[3], "total": r[4], "rows": r[5]}
            for r in rows
        }

    def vacuum(self) -> float:
        began = time.perf_counter()
        self.conn.execute("VACUUM (ANALYZE)")
        return time.perf_counter() - began

    def plans(self) -> dict[str, str]:
        """``EXPLAIN (ANALYZE, BUFFERS)`` of the claims and the next-due queries as the
        backend sends them, each in a transaction rolled back. The workflow claim is a
        function: auto_explain shows the plans of the statements inside it."""
        from psycopg import ClientCursor

        q = _sql_files.load_queries("tapeflow.backends.postgres")
        names = [d.__name__ for d in WORKFLOWS]
        params: dict[str, Any] = {
            "names": names,
            "owner": "explain",
            "lease": timedelta(seconds=30),
            "limit": 50,
            "sticky": timedelta(seconds=1),
            "polled": [],
            "queues": ["default"],
        }
        activity_params = {**params, "names": [a.__name__ for a in ACTIVITIES]}
        plans: dict[str, str] = {}
        cursor = ClientCursor(self.conn)
        for label, query, args in (
            ("claim_activity_tasks", q["claim_activity_tasks"], activity_params),
            ("next_due_workflow", q["next_due_workflow"], params),
            ("next_due_activity", q["next_due_activity"], activity_params),
        ):
            with contextlib.suppress(_Rollback), self.conn.transaction():
                rows = cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {query}", args).fetchall()
                plans[label] = "\n".join(r[0] for r in rows)
                raise _Rollback
        notices: list[str] = []
        self.conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        with contextlib.suppress(_Rollback), self.conn.transaction():
            for setting in (
                "LOAD 'auto_explain'",
                "SET LOCAL auto_explain.log_min_duration = 0",
                "SET LOCAL auto_explain.log_analyze = on",
                "SET LOCAL auto_explain.log_buffers = on",
                "SET LOCAL auto_explain.log_nested_statements = on",
                "SET LOCAL auto_explain.log_level = notice",
            ):
                self.conn.execute(setting)
            claimed = cursor.execute(q["claim_workflow_tasks"], params).fetchall()
            raise _Rollback
        plans["claim_workflow_tasks"] = f"({len(claimed)} tasks claimed)\n" + "\n\n".join(
            n for n in notices if "plan:" in n
        )
        return plans


def _copy_templates(conn: Any) -> None:
    """The template runs (numbered ``k`` from 0) and their histories, as temporary tables
    the fill copies from: the same SQL on both backends."""
    conn.execute(
        "CREATE TEMP TABLE tpl AS SELECT row_number() OVER (ORDER BY run_id) - 1 AS k, *"
        f" FROM workflows WHERE id LIKE '{TEMPLATE}%' AND status = 'completed'"
    )
    conn.execute(
        "CREATE TEMP TABLE tpl_history AS SELECT t.k, h.seq, h.event"
        " FROM tpl t JOIN history h ON h.run_id = t.run_id"
    )


def _runs(conn: Any) -> int:
    count: int = conn.execute("SELECT count(*) FROM workflows").fetchone()[0]
    return count


def _check_fill(conn: Any, runs_expected: int) -> None:
    """The schema holds the runs it had and the copies, and each run's history length is
    the number of its events (summed: any copy short of events would show)."""
    runs, events, lengths = conn.execute(
        "SELECT (SELECT count(*) FROM workflows), (SELECT count(*) FROM history),"
        " (SELECT sum(history_length) FROM workflows)"
    ).fetchone()
    if runs != runs_expected or events != lengths:
        raise RuntimeError(
            f"the fill is off: {runs} runs (expected {runs_expected}), {events} events"
            f" (the runs' history lengths add up to {lengths})"
        )


class _Rollback(Exception):
    pass


# -- SQLite ---------------------------------------------------------------------------------


class Sqlite:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.path = db.url.removeprefix("sqlite:///")
        self.conn = sqlite3.connect(self.path, isolation_level=None)
        self.conn.execute("PRAGMA busy_timeout = 10000")

    def close(self) -> None:
        self.conn.close()

    def check_templates(self) -> int:
        left = sum(
            self.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in OPEN_TABLES
        )
        if left:
            raise RuntimeError(f"the templates left {left} rows in {', '.join(OPEN_TABLES)}")
        count: int = self.conn.execute(
            "SELECT count(*) FROM workflows WHERE status = 'completed'"
        ).fetchone()[0]
        return count

    def fill(self, closed: int, days: float, batch: int) -> Figures:
        began = time.perf_counter()
        conn = self.conn
        runs_before = _runs(conn)
        _copy_templates(conn)
        conn.execute("CREATE TEMP TABLE n (g INTEGER PRIMARY KEY, run_id, id, at)")
        templates: int = conn.execute("SELECT count(*) FROM tpl").fetchone()[0]
        columns = [r[1] for r in conn.execute("PRAGMA table_info(workflows)")]
        moved = {"run_id", "id", "created_at", "start_at", "completed_at"}
        kept = [c for c in columns if c not in moved]
        names = ", ".join(["run_id", "id", "created_at", "start_at", "completed_at", *kept])
        values = ", ".join(
            [
                "n.run_id",
                "n.id",
                "n.at",
                "n.at + (t.start_at - t.created_at)",
                "n.at + (t.completed_at - t.created_at)",
                *(f"t.{c}" for c in kept),
            ]
        )
        hexed = "lower(hex(randomblob(16)))"
        uuid = (
            "substr({0}, 1, 8) || '-' || substr({0}, 9, 4) || '-4' || substr({0}, 14, 3)"
            " || '-' || substr('89ab', 1 + (unicode(substr({0}, 17, 1)) % 4), 1)"
            " || substr({0}, 18, 3) || '-' || substr({0}, 21, 12)"
        )
        span_us = int(days * 86_400e6)
        first = int((time.time() - 3600) * 1e6) - span_us
        for lo in range(1, closed + 1, batch):
            hi = min(closed, lo + batch - 1)
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("DELETE FROM n")
            conn.execute(
                "WITH RECURSIVE s(g) AS (SELECT ? UNION ALL SELECT g + 1 FROM s WHERE g < ?)"
                f" INSERT INTO n SELECT g, {hexed}, {hexed}, ? + (g - 1) * ? / ? FROM s",
                (lo, hi, first, span_us, closed),
            )
            conn.execute(f"UPDATE n SET run_id = {uuid.format('run_id')}, id = {uuid.format('id')}")
            conn.execute(
                f"INSERT INTO workflows ({names}) SELECT {values}"
                f" FROM n JOIN tpl t ON t.k = n.g % {templates} ORDER BY n.g"
            )
            conn.execute(
                "INSERT INTO history (run_id, seq, event) SELECT n.run_id, h.seq, h.event"
                f" FROM n JOIN tpl_history h ON h.k = n.g % {templates} ORDER BY n.g, h.seq"
            )
            conn.execute("COMMIT")
            print(f"  {hi:,} / {closed:,} ({time.perf_counter() - began:.0f}s)", flush=True)
        inserted = time.perf_counter() - began
        _check_fill(conn, runs_before + closed)
        conn.execute("DROP TABLE tpl")
        conn.execute("DROP TABLE tpl_history")
        conn.execute("DROP TABLE n")
        conn.execute("ANALYZE")
        return {
            "templates": templates,
            "insert_seconds": inserted,
            "seconds": time.perf_counter() - began,
            "oldest": datetime.fromtimestamp(first / 1e6, UTC).isoformat(),
        }

    def sizes(self) -> dict[str, dict[str, int]]:
        """Bytes by table (its indexes included) from dbstat when this SQLite has it; the
        file's pages in use (page_count - freelist_count) as ``total`` otherwise."""
        conn = self.conn
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        out: dict[str, dict[str, int]] = {
            "(file)": {"total": pages * page, "free": free * page, "rows": 0}
        }
        try:
            stat = conn.execute(
                "SELECT coalesce(i.tbl_name, d.name), d.name = coalesce(i.tbl_name, d.name),"
                " sum(d.pgsize) FROM dbstat d LEFT JOIN sqlite_schema i"
                " ON i.name = d.name AND i.type = 'index' GROUP BY 1, 2"
            ).fetchall()
        except sqlite3.OperationalError:
            return out
        for table, is_table, size in stat:
            entry = out.setdefault(table, {"heap": 0, "indexes": 0, "total": 0, "rows": 0})
            entry["heap" if is_table else "indexes"] += size
            entry["total"] += size
        for table in CLOSED_TABLES:
            if table in out:
                out[table]["rows"] = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        return out

    def vacuum(self) -> float:
        began = time.perf_counter()
        self.conn.execute("VACUUM")
        return time.perf_counter() - began

    def plans(self) -> dict[str, str]:
        """``EXPLAIN QUERY PLAN`` of the claims' reads and the next-due queries (SQLite's
        plans have no timings; each query is also timed, median of 20)."""
        q = _sql_files.load_queries("tapeflow.backends.sqlite")
        now = int(time.time() * 1e6)
        params = {
            "names": json.dumps([d.__name__ for d in WORKFLOWS]),
            "queues": json.dumps(["default"]),
            "now": now,
            "limit": 50,
            "owner": "explain",
            "sticky": 1_000_000,
        }
        activity = {**params, "names": json.dumps([a.__name__ for a in ACTIVITIES])}
        plans = {}
        for label, query, args in (
            ("ready_workflow_tasks (claim)", q["ready_workflow_tasks"], params),
            ("ready_activity_tasks (claim)", q["ready_activity_tasks"], activity),
            ("next_due_workflow", q["next_due_workflow"], params),
            ("next_due_activity", q["next_due_activity"], activity),
        ):
            used = {k: v for k, v in args.items() if f":{k}" in query}
            rows = self.conn.execute(f"EXPLAIN QUERY PLAN {query}", used).fetchall()
            times = []
            for _ in range(20):
                began = time.perf_counter()
                self.conn.execute(query, used).fetchall()
                times.append((time.perf_counter() - began) * 1000)
            plans[label] = "\n".join(f"{r[0]:>3} {r[1]:>3} {r[3]}" for r in rows) + (
                f"\n(median {statistics.median(times):.3f} ms of 20)"
            )
        return plans


# -- the run --------------------------------------------------------------------------------


def _per_workflow(
    before: dict[str, dict[str, int]], after: dict[str, dict[str, int]], count: int
) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for table, sizes in after.items():
        was = before.get(table, {})
        grown = {k: (v - was.get(k, 0)) / count for k, v in sizes.items() if k != "rows"}
        if any(abs(v) >= 0.5 for v in grown.values()):
            out[table] = grown
    out["(all tables)"] = {
        "total": sum(v["total"] for k, v in out.items() if not k.startswith("("))
    }
    return out


def _print_sizes(title: str, per: dict[str, dict[str, float]]) -> None:
    print(f"\n{title}")
    keys = ["heap", "indexes", "toast", "total"]
    print(f"  {'table':<14}" + "".join(f"{k:>10}" for k in keys))
    for table, sizes in per.items():
        print(
            f"  {table:<14}"
            + "".join(f"{sizes[k]:>10.0f}" if k in sizes else f"{'':>10}" for k in keys)
        )


def _mib(sizes: dict[str, dict[str, int]]) -> float:
    return sum(v["total"] for k, v in sizes.items() if not k.startswith("(")) / 2**20


@contextlib.contextmanager
def _databases(kind: str, url: str, scratch: Path) -> Iterator[tuple[Database, Database]]:
    with fresh(kind, url, scratch) as empty, fresh(kind, url, scratch) as full:
        yield empty, full


async def _create(db: Database) -> None:
    async with tapeflow.connect(db.url):
        pass


def run(args: argparse.Namespace) -> Figures:
    scratch = Path(tempfile.mkdtemp(prefix="tapeflow-growth-"))
    logs = scratch / "logs"
    logs.mkdir()
    options: dict[str, Any] = {
        "max_concurrent_workflow_tasks": 50,
        "max_concurrent_activities": 50,
        "poll_interval_ms": 50.0,
    }
    settings = Settings(
        sizes=Sizes(
            throughput=args.throughput,
            latency_samples=args.latency_samples,
            latency_warmup=args.latency_warmup,
        ),
        workers=args.workers,
        worker_options=options,
        logs=logs,
    )
    figures: Figures = {
        "backend": args.backend,
        "closed": args.closed,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    with _databases(args.backend, args.postgres_url, scratch) as (empty, full):
        for db in (empty, full):
            asyncio.run(_create(db))
        tool: Postgres | Sqlite = Postgres(full) if args.backend == "postgres" else Sqlite(full)
        try:
            asyncio.run(run_templates(full, args.templates))
            tool.check_templates()
            base = tool.sizes()
            print(f"filling {args.closed:,} closed workflows (load {_load()})", flush=True)
            figures["fill"] = tool.fill(args.closed, args.days, args.fill_batch)
            filled = tool.sizes()
            figures["sizes_full"] = filled
            per = _per_workflow(base, filled, args.closed)
            figures["bytes_per_workflow"] = per
            print(f"filled in {figures['fill']['seconds']:.0f}s; {_mib(filled):.0f} MiB")
            _print_sizes("bytes per closed workflow", per)

            pairs = []
            for index in range(args.pairs):
                pair = {}
                for label, db in (("empty", empty), ("full", full)):
                    pair[label] = asyncio.run(measure(db, settings))
                    m = pair[label]
                    print(
                        f"pair {index + 1} {label:>5}: {m['workflows_per_s']:7.1f} workflows/s,"
                        f" latency {m['latency_median_ms']:.1f} / {m['latency_p95_ms']:.1f} ms"
                        f" (load {m['load_before']})"
                        + (
                            f"; blocks read a workflow: workflows"
                            f" {m['blocks_read_per_workflow'].get('workflows', 0):.1f},"
                            f" history {m['blocks_read_per_workflow'].get('history', 0):.1f};"
                            f" server WAL {m['server_wal_bytes_per_workflow'] / 1024:.1f} KiB"
                            if "blocks_read_per_workflow" in m
                            else ""
                        ),
                        flush=True,
                    )
                pairs.append(pair)
            figures["pairs"] = pairs
            summary = {}
            for key in ("workflows_per_s", "latency_median_ms", "latency_p95_ms"):
                e = statistics.median(p["empty"][key] for p in pairs)
                f = statistics.median(p["full"][key] for p in pairs)
                summary[key] = {"empty": e, "full": f, "full_over_empty": f / e}
            figures["summary"] = summary
            print("\nmedian of the pairs      empty     full  full/empty")
            for key, s in summary.items():
                print(f"  {key:<20} {s['empty']:8.1f} {s['full']:8.1f} {s['full_over_empty']:8.2f}")

            asyncio.run(pending_work(full))
            figures["plans"] = {k: _short(v) for k, v in tool.plans().items()}
            for label, plan in figures["plans"].items():
                print(f"\n== {label}\n{plan}")
            figures["closed_scans"] = closed_scans(figures["plans"])
            print(f"\nscans over a table of closed rows: {figures['closed_scans'] or 'none'}")
            asyncio.run(finish_pending(full))

            keep = timedelta(days=args.keep_days)
            print(f"\nretention: deleting what closed over {args.keep_days} days ago", flush=True)
            before = tool.sizes()
            kept = asyncio.run(retention(full, keep, args.retention_batch, args.retention_seconds))
            after_delete = tool.sizes()
            kept["vacuum_seconds"] = tool.vacuum()
            after_vacuum = tool.sizes()
            # As many closed workflows again: they take the space the delete freed.
            kept["refill"] = (
                tool.fill(kept["deleted"], 1.0, args.fill_batch) if kept["deleted"] else {}
            )
            after_refill = tool.sizes()
            kept["mib_after_refill"] = _mib(after_refill)
            kept["sizes_after_refill"] = after_refill
            kept["mib_before"] = _mib(before)
            kept["mib_after_delete"] = _mib(after_delete)
            kept["mib_after_vacuum"] = _mib(after_vacuum)
            kept["sizes_after_delete"] = after_delete
            kept["sizes_after_vacuum"] = after_vacuum
            figures["retention"] = kept
            print(
                f"  deleted {kept['deleted']:,} in {kept['seconds']:.1f}s"
                f" ({kept['workflows_per_s']:.0f}/s; batches of {kept['batch']}:"
                f" median {kept['batch_median_ms']:.1f} ms, p95 {kept['batch_p95_ms']:.1f} ms)"
            )
            print(
                f"  MiB: before {kept['mib_before']:.0f}, after the delete"
                f" {kept['mib_after_delete']:.0f}, after VACUUM {kept['mib_after_vacuum']:.0f}"
                f" ({kept['vacuum_seconds']:.0f}s), after as many new closed workflows"
                f" {kept['mib_after_refill']:.0f}"
            )
            for table in CLOSED_TABLES:
                print(
                    f"  {table}: MiB {before[table]['total'] / 2**20:.0f} before,"
                    f" {after_delete[table]['total'] / 2**20:.0f} after the delete,"
                    f" {after_vacuum[table]['total'] / 2**20:.0f} after VACUUM,"
                    f" {after_refill[table]['total'] / 2**20:.0f} after the refill"
                )
            if args.backend == "sqlite":
                files = [s["(file)"] for s in (before, after_delete, after_vacuum, after_refill)]
                print(
                    "  SQLite file, MiB (of which free pages): "
                    + ", ".join(
                        f"{f['total'] / 2**20:.0f} ({f['free'] / 2**20:.0f})" for f in files
                    )
                )
        finally:
            tool.close()
    figures["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.growth",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--backend", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--closed", type=int, default=1_000_000, help="closed workflows")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--throughput", type=int, default=2000, help="workflows per run")
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--latency-warmup", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--pairs", type=int, default=2, help="empty/full measurement pairs")
    parser.add_argument("--templates", type=int, default=5, help="real workflows to copy")
    parser.add_argument("--days", type=float, default=10.0, help="the fill's closed times span")
    parser.add_argument("--fill-batch", type=int, default=50_000, help="workflows a transaction")
    parser.add_argument(
        "--keep-days", type=float, default=9.0, help="retention (the oldest tenth is past it)"
    )
    parser.add_argument("--retention-batch", type=int, default=100, help="as a worker's (100)")
    parser.add_argument(
        "--retention-seconds", type=float, default=600.0, help="stop deleting after this"
    )
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args(argv)
    figures = run(args)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
