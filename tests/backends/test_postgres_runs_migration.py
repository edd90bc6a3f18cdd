"""PostgreSQL: a database at schema version 6 (a workflow one row per id) moves to runs in
the key, and a workflow in flight there carries on: its rows follow it into its first run,
and a worker of this tapeflow finishes it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql

import tapeflow
from tapeflow import activity, workflow
from tapeflow.backends._rows import json_text
from tapeflow.backends._sql_files import migrations
from tapeflow.history import (
    ActivityCompleted,
    ActivityScheduled,
    EventReceived,
    HistoryEvent,
    WorkflowExecutionCompleted,
    WorkflowExecutionStarted,
    WorkflowTaskStarted,
    encode_event,
)
from tests.conftest import POSTGRES_URL

PACKAGE = "tapeflow.backends.postgres"

OLD_FUNCTIONS = """
CREATE FUNCTION commit_workflow_task(c workflow_commit) RETURNS json
LANGUAGE sql AS $$ SELECT NULL::json $$;
CREATE FUNCTION claim_workflow_tasks(
    p_names text[], p_owner text, p_lease interval, p_limit integer, p_sticky interval,
    p_polled text[])
RETURNS TABLE (o_workflow_id text, o_name text, o_token bigint, o_failures integer,
               o_claimed_at timestamptz, o_history_length integer, o_inbox_ids bigint[],
               o_inbox_events text[])
LANGUAGE sql AS $$ SELECT NULL::text, NULL, NULL::bigint, NULL::integer, NULL::timestamptz,
                          NULL::integer, NULL::bigint[], NULL::text[] $$;
INSERT INTO schema_functions VALUES (4, 'revision 4');
"""
"""Stand-ins with the signatures revision 4 of functions.sql left (the type workflow_commit
among them), which the upgrade must drop before it can replace them."""


@activity.defn
async def add_one(number: int) -> int:
    return number + 1


@workflow.defn
async def carried_over(number: int) -> int:
    first = await workflow.execute_activity(add_one, number)
    bonus: int = await workflow.wait_event("bonus", type=int)
    return first + bonus


STARTED_AT = datetime(2026, 1, 1, tzinfo=UTC)
STARTS = {
    workflow_id: WorkflowExecutionStarted(
        name="carried_over", version="", args=[number], started_at=STARTED_AT
    )
    for workflow_id, number in (("carried", 1), ("finished", 4))
}
IN_FLIGHT: list[HistoryEvent] = [  # its first task, as a worker committed it
    WorkflowTaskStarted(at=STARTED_AT),
    STARTS["carried"],
    ActivityScheduled(seq=1, name="add_one", args=[1]),
]
FINISHED: list[HistoryEvent] = [
    WorkflowTaskStarted(at=STARTED_AT),
    STARTS["finished"],
    WorkflowExecutionCompleted(result=5),
]


def _version_6(conn: psycopg.Connection[tuple[object, ...]], schema: str) -> None:
    """The schema as tapeflow left it at version 6, holding a workflow in flight (its first
    task committed: an activity task due, an event waiting in its inbox, its task sticky to
    a worker now gone) and a finished one, stored as that tapeflow stored them."""
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    conn.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(schema)))
    conn.execute("CREATE TABLE schema_version (version integer NOT NULL)")
    for version, script in migrations(PACKAGE)[:6]:
        conn.execute(script.encode())
        conn.execute("INSERT INTO schema_version VALUES (%s)", (version,))
    conn.execute(OLD_FUNCTIONS.encode())
    for workflow_id, status, result, events in (
        ("carried", "running", None, IN_FLIGHT),
        ("finished", "completed", "5", FINISHED),
    ):
        conn.execute(
            """INSERT INTO workflows (id, name, version, status, args, result, start_at,
                                      history_length, completed_at)
               VALUES (%s, 'carried_over', '', %s, %s, %s, %s, %s,
                       CASE WHEN %s = 'completed' THEN now() END)""",
            (
                workflow_id,
                status,
                json_text(STARTS[workflow_id].args),
                result,
                STARTED_AT,
                len(events),
                status,
            ),
        )
        for seq, event in enumerate(events, start=1):
            conn.execute(
                "INSERT INTO history VALUES (%s, %s, %s)", (workflow_id, seq, encode_event(event))
            )
    conn.execute(
        """INSERT INTO workflow_tasks (workflow_id, name, lease_token, sticky_owner)
           VALUES ('carried', 'carried_over', 1, 'a-worker-now-gone')"""
    )
    for event in (STARTS["carried"], EventReceived(name="bonus", payload=10)):
        conn.execute(
            "INSERT INTO inbox (workflow_id, visible_at, event) VALUES ('carried', now(), %s)",
            (encode_event(event),),
        )
    conn.execute("DELETE FROM inbox WHERE event ->> 'kind' = 'workflow_started'")  # consumed
    conn.execute(
        """INSERT INTO activity_tasks (workflow_id, seq, name, args, visible_at)
           VALUES ('carried', 1, 'add_one', '[1]', now())"""
    )


async def test_a_workflow_in_flight_at_version_6_carries_on_as_its_first_run(
    postgres_url: str,
) -> None:
    schema = postgres_url.rpartition("schema=")[2]
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        _version_6(conn, schema)
    async with tapeflow.connect(postgres_url) as backend:  # migrates
        client = tapeflow.Client(backend)
        carried = await client.describe("carried")
        finished = await client.describe("finished")
        assert uuid.UUID(carried.run_id) != uuid.UUID(finished.run_id)
        assert (carried.status, carried.history_length) == ("running", 3)
        assert (finished.status, finished.result) == ("completed", 5)
        assert await backend.load_history("carried", carried.run_id) == IN_FLIGHT
        assert await backend.load_history("finished") == FINISHED
        with psycopg.connect(POSTGRES_URL) as conn:
            conn.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(schema)))
            kept = conn.execute(
                """SELECT (SELECT array_agg(id) FROM inbox), (SELECT array_agg(id) FROM
                   activity_tasks), nextval(pg_get_serial_sequence('inbox', 'id')),
                   (SELECT count(*) FROM pg_type WHERE typname = 'workflow_commit'
                            AND typnamespace = current_schema()::regnamespace)"""
            ).fetchone()
        assert kept == ([2], [1], 3, 0)  # row ids kept, new ones after them; the type gone

        async with tapeflow.Worker(
            backend,
            workflows=[carried_over],
            activities=[add_one],
            poll_interval=timedelta(milliseconds=50),
        ):
            result = await client.get_handle("carried", result_type=int).result(timeout=30)
        assert result == 12
        history = await backend.load_history("carried")
        assert history[:3] == IN_FLIGHT
        assert ActivityCompleted(seq=1, result=2, attempt=1) in history
        assert (await client.describe("carried")).run_id == carried.run_id
