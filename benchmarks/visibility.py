"""``python -m benchmarks.visibility --rows 1000000``: how fast lists and counts answer over
many workflows on PostgreSQL.

Bulk-inserts closed runs straight into a fresh schema with SQL (``generate_series``; the
schema's own indexes are dropped for the insert and made again after, as a restore would),
then runs each filter through ``Client.list_workflows`` (a page of ``--limit``) several
times and prints the median milliseconds of each, and drops the schema.

The runs: ids ``order-0000001``..., one a millisecond; one id in a hundred has a second run
(which failed); statuses 80% completed, 10% failed, 10% terminated; five workflow names;
variables ``customer`` (one of 10,000) and ``paid`` (0 or 1).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

import tapeflow
from benchmarks.databases import DEFAULT_POSTGRES_URL, fresh

START = datetime(2026, 1, 1, tzinfo=UTC)

INSERT = """
INSERT INTO workflows (run_id, id, run_number, name, version, status, args, result,
                       failure, created_at, start_at, completed_at, history_length, vars)
SELECT 'run-' || g, 'order-' || lpad((g - second::integer)::text, 7, '0'),
       1 + second::integer,
       (ARRAY['order', 'invoice', 'refund', 'shipment', 'payment'])[1 + g %% 5],
       '', CASE WHEN second OR g %% 10 = 1 THEN 'failed' WHEN g %% 10 = 2 THEN 'terminated'
                ELSE 'completed' END,
       '[]', 'null', NULL, at, at, at + interval '1 second', 12,
       jsonb_build_object('customer', 'c' || (g %% 10000), 'paid', g %% 2)
FROM generate_series(1, %(rows)s) AS g,
     LATERAL (SELECT %(start)s::timestamptz + g * interval '1 millisecond' AS at,
                     g %% 100 = 0 AS second) AS x
"""


def _page(
    client: tapeflow.Client, **filters: Any
) -> Callable[[], Awaitable[tuple[int, str | None]]]:
    async def run() -> tuple[int, str | None]:
        page = await client.list_workflows(**filters)
        return len(page.workflows), page.next_cursor

    return run


async def _deep_cursor(client: tapeflow.Client, rows: int, limit: int) -> str | None:
    """A cursor half-way down the list (the page that ends at the middle run)."""
    middle = START + timedelta(milliseconds=rows // 2)
    page = await client.list_workflows(started_before=middle, limit=limit)
    return page.next_cursor


async def _timed(query: Callable[[], Awaitable[Any]], repeat: int) -> tuple[float, Any]:
    result = await query()  # warm: plans cached, pages in memory
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        result = await query()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times), result


async def _count(client: tapeflow.Client, **filters: Any) -> Any:
    return await client.count_workflows(**filters)


async def measure(url: str, rows: int, repeat: int, limit: int) -> list[tuple[str, float, str]]:
    async with tapeflow.connect(url) as backend:
        client = tapeflow.Client(backend)
        deep = await _deep_cursor(client, rows, limit)
        cases: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("newest first, no filter", _page(client, limit=limit)),
            ("status = failed", _page(client, status="failed", limit=limit)),
            (
                "status in (failed, terminated)",
                _page(client, status=["failed", "terminated"], limit=limit),
            ),
            ("name = refund", _page(client, name="refund", limit=limit)),
            (
                "id prefix order-00123 (100 ids)",
                _page(client, id_prefix="order-00123", limit=limit),
            ),
            ("id prefix order-0 (all ids)", _page(client, id_prefix="order-0", limit=limit)),
            (
                "started in one second (1,000 runs)",
                _page(
                    client,
                    started_after=START + timedelta(seconds=rows // 2000),
                    started_before=START + timedelta(seconds=rows // 2000 + 1),
                    limit=limit,
                ),
            ),
            (
                "vars customer = c42 (100 runs)",
                _page(client, vars={"customer": "c42"}, limit=limit),
            ),
            ("vars paid = 0 (half the runs)", _page(client, vars={"paid": 0}, limit=limit)),
            (
                "status + name + vars",
                _page(
                    client,
                    status="failed",
                    name="invoice",
                    vars={"customer": "c4241"},
                    limit=limit,
                ),
            ),
            ("a page half-way down (cursor)", _page(client, cursor=deep, limit=limit)),
            (
                "all runs, status = failed",
                _page(client, status="failed", all_runs=True, limit=limit),
            ),
            ("count, vars customer = c42", lambda: _count(client, vars={"customer": "c42"})),
            ("count, name = refund", lambda: _count(client, name="refund")),
            ("count by status, all", lambda: _count(client, group_by_status=True)),
        ]
        results = []
        for label, query in cases:
            median, result = await _timed(query, repeat)
            shown = f"{result[0]} rows" if isinstance(result, tuple) else str(result)
            results.append((label, median, shown))
        # Paging on with the cursor: the median of 100 consecutive pages.
        cursor, pages = None, []
        for _ in range(100):
            began = time.perf_counter()
            page = await client.list_workflows(limit=limit, status="completed", cursor=cursor)
            pages.append((time.perf_counter() - began) * 1000)
            cursor = page.next_cursor
        results.append(
            (
                "100 pages in a row, status = completed",
                statistics.median(pages),
                f"{limit} rows each",
            )
        )
    return results


def populate(server: str, schema: str, rows: int) -> float:
    """Insert ``rows`` runs, the schema's indexes made after; returns the seconds taken."""
    began = time.perf_counter()
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(schema)))
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = "
            "'workflows' AND indexname NOT IN (SELECT conname FROM pg_constraint)",
            (schema,),
        ).fetchall()
        for name, _ in indexes:
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
        conn.execute(INSERT, {"rows": rows, "start": START})
        conn.execute("SET maintenance_work_mem = '256MB'")
        for _, definition in indexes:
            conn.execute(definition)
        conn.execute("VACUUM (ANALYZE) workflows")
    return time.perf_counter() - began


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.visibility", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=9, help="timed runs of each query")
    parser.add_argument("--limit", type=int, default=50, help="workflows per page")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory() as scratch,
        fresh("postgres", args.postgres_url, Path(scratch)) as db,
    ):
        schema = db.url.split("schema=")[1].split("&")[0]

        async def create() -> None:
            async with tapeflow.connect(db.url):
                pass

        asyncio.run(create())
        seconds = populate(db.server, schema, args.rows)
        print(f"{args.rows:,} runs inserted and indexed in {seconds:.1f}s")
        results = asyncio.run(measure(db.url, args.rows, args.repeat, args.limit))
    width = max(len(label) for label, _, _ in results)
    print(f"{'query':<{width}}  median ms  result")
    for label, median, shown in results:
        print(f"{label:<{width}}  {median:9.2f}  {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
