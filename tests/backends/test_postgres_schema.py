"""PostgreSQL: the migrations add up to schema.sql, run once however many processes start
together, and a schema newer than this tapeflow is refused."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import cast

import psycopg
import pytest
from psycopg import sql

import tapeflow
from tapeflow.backends._sql_files import migrations, read_sql
from tests.conftest import POSTGRES_URL

PACKAGE = "tapeflow.backends.postgres"


@pytest.fixture
def schemas(postgres_reachable: bool) -> Iterator[list[str]]:
    """Fresh schema names, dropped afterwards."""
    if not postgres_reachable:
        pytest.skip("postgres unreachable (CI=true makes this a failure)")
    names: list[str] = []
    yield names
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def _new(schemas: list[str]) -> str:
    schemas.append(f"test_{uuid.uuid4().hex[:16]}")
    return schemas[-1]


def _shape(conn: psycopg.Connection[tuple[object, ...]], schema: str) -> dict[str, object]:
    columns = conn.execute(
        """SELECT table_name, column_name, ordinal_position, data_type, is_nullable,
                  column_default, is_identity
           FROM information_schema.columns WHERE table_schema = %s
           ORDER BY table_name, ordinal_position""",
        (schema,),
    ).fetchall()
    indexes = conn.execute(
        "SELECT indexname, replace(indexdef, %s, 'S') FROM pg_indexes WHERE schemaname = %s "
        "ORDER BY indexname",
        (schema, schema),
    ).fetchall()
    constraints = conn.execute(
        """SELECT c.relname, conname, replace(pg_get_constraintdef(k.oid), %s || '.', '')
           FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
           WHERE connamespace = %s::regnamespace ORDER BY 1, 2""",
        (schema, schema),
    ).fetchall()
    rows = conn.execute(
        """SELECT proname, pg_get_function_arguments(oid), prosrc, proconfig
           FROM pg_proc WHERE pronamespace = %s::regnamespace ORDER BY 1""",
        (schema,),
    ).fetchall()
    functions = [
        (
            name,
            args.replace(f"{schema}.", ""),
            source,
            [c.replace(schema, "S") for c in config or []],
        )
        for name, args, source, config in cast(list[tuple[str, str, str, list[str] | None]], rows)
    ]
    return {
        "columns": columns,
        "indexes": indexes,
        "constraints": constraints,
        "functions": functions,
    }


def test_migrations_add_up_to_the_schema(schemas: list[str]) -> None:
    from_schema, migrated = _new(schemas), _new(schemas)
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        for name in (from_schema, migrated):
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(from_schema)))
        conn.execute(read_sql(PACKAGE, "schema.sql").encode())
        conn.execute(read_sql(PACKAGE, "functions.sql").encode())
        conn.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(migrated)))
        for _, script in migrations(PACKAGE):
            conn.execute(script.encode())
        conn.execute(read_sql(PACKAGE, "functions.sql").encode())
        expected, actual = _shape(conn, from_schema), _shape(conn, migrated)
    assert expected["columns"]  # not vacuously equal
    assert actual == expected


def test_migrations_hold_no_functions() -> None:
    for version, script in migrations(PACKAGE):
        assert "CREATE FUNCTION" not in script.upper(), f"migration {version}: see functions.sql"
        assert "PLPGSQL" not in script.upper(), f"migration {version}: see functions.sql"


def _function_source(url: str, schema: str) -> str:
    with psycopg.connect(url.partition("?")[0]) as conn:
        row = conn.execute(
            "SELECT prosrc FROM pg_proc WHERE proname = 'apply_plan' "
            "AND pronamespace = %s::regnamespace",
            (schema,),
        ).fetchone()
    assert row is not None
    return str(row[0])


def _plant_functions(schema: str, body: str, record: str) -> None:
    """Leave ``apply_plan`` and the record of what was applied as another copy of tapeflow
    would have: ``body`` is the function's SQL, ``record`` the assignments."""
    name = sql.Identifier(schema)
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "CREATE OR REPLACE FUNCTION {}.apply_plan(p_run_id text, p_token bigint, "
                "p_history_length integer, p_plan json, p_take json) "
                "RETURNS json LANGUAGE sql AS $$ {} $$"
            ).format(name, sql.SQL(body))
        )
        conn.execute(sql.SQL("UPDATE {}.schema_functions SET {}").format(name, sql.SQL(record)))


@pytest.mark.parametrize(
    ("record", "applied"),
    [
        pytest.param("checksum = 'older'", True, id="changed-file"),
        pytest.param("revision = 1000, checksum = 'newer'", False, id="newer-revision"),
    ],
)
async def test_the_functions_file_is_applied_when_changed_but_never_over_a_newer_one(
    schemas: list[str], record: str, applied: bool
) -> None:
    schema = _new(schemas)
    url = f"{POSTGRES_URL}?schema={schema}"
    async with tapeflow.connect(url):
        pass
    _plant_functions(schema, "SELECT '{\"planted\": true}'::json", record)
    async with tapeflow.connect(url):  # a start of this tapeflow
        pass
    source = _function_source(url, schema)
    assert ("unseen_events" in source) is applied
    assert ("planted" in source) is not applied


async def test_many_processes_starting_at_once_migrate_once(schemas: list[str]) -> None:
    url = f"{POSTGRES_URL}?schema={_new(schemas)}"

    async def open_and_use() -> None:
        async with tapeflow.connect(url) as backend:
            with pytest.raises(tapeflow.WorkflowNotFound):
                await backend.get_workflow("nobody")

    await asyncio.gather(*(open_and_use() for _ in range(6)))
    with psycopg.connect(url.partition("?")[0]) as conn:
        versions = conn.execute(
            sql.SQL("SELECT version FROM {}.schema_version ORDER BY version").format(
                sql.Identifier(schemas[-1])
            )
        ).fetchall()
    assert [v for (v,) in versions] == list(range(1, len(migrations(PACKAGE)) + 1))


async def test_a_newer_schema_is_refused_with_a_clear_message(schemas: list[str]) -> None:
    schema = _new(schemas)
    url = f"{POSTGRES_URL}?schema={schema}"
    async with tapeflow.connect(url):
        pass
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(
            sql.SQL("INSERT INTO {}.schema_version VALUES (999)").format(sql.Identifier(schema))
        )
    with pytest.raises(tapeflow.SchemaVersionError, match="upgrade tapeflow"):
        async with tapeflow.connect(url):
            pass


def test_schema_names_are_checked() -> None:
    with pytest.raises(tapeflow.InvalidArgument, match="schema"):
        tapeflow.connect(f"{POSTGRES_URL}?schema=Robert'); DROP TABLE x;--")
