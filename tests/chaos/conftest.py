"""Fixtures of the chaos runs: a PostgreSQL schema whose connections carry a name of their
own (so a test can find and kill them), dropped afterwards with its ledger."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from tests.conftest import POSTGRES_URL


@pytest.fixture
def chaos_postgres_url(postgres_reachable: bool) -> Iterator[str]:
    if not postgres_reachable:
        pytest.skip(f"postgres unreachable at {POSTGRES_URL} (CI=true makes this a failure)")
    schema = f"chaos_{uuid.uuid4().hex[:12]}"
    separator = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{separator}schema={schema}&application_name=tapeflow-{schema}"
    if not os.environ.get("TAPEFLOW_CHAOS_KEEP"):  # set it to look at the tables afterwards
        drop_schemas(schema)


def drop_schemas(schema: str) -> None:
    """Drop a run's schema and its ledger's."""
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        for name in (schema, f"{schema}_ledger"):
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
