"""A wrong PostgreSQL URL fails ``tapeflow.connect`` at once, saying what is wrong, and no
message, log line or repr ever shows the URL's password."""

from __future__ import annotations

import logging
import socket
import time
import traceback
import uuid
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

import tapeflow
from tapeflow.backends._redact import redact
from tests.conformance.plugin import require_available
from tests.conftest import POSTGRES_URL

_TEST = urlsplit(POSTGRES_URL)
PASSWORD = _TEST.password or "s3cret-pw"
"""The test server's password if its URL has one, else any (the local server trusts)."""


def url(
    *,
    scheme: str = "postgresql",
    password: str = PASSWORD,
    port: int | None = None,
    database: str | None = None,
    query: str = "",
) -> str:
    """The test server's URL, spelled and changed as asked, always with a password."""
    host = _TEST.hostname or "127.0.0.1"
    where = f"{host}:{port or _TEST.port or 5432}/{database or _TEST.path.lstrip('/')}"
    return f"{scheme}://{_TEST.username or 'postgres'}:{password}@{where}" + (
        f"?{query}" if query else ""
    )


def everything_shown(error: BaseException | None) -> str:
    """What a traceback shows of an error: its message and those of the errors chained to it."""
    shown = []
    while error is not None:
        shown.append("".join(traceback.format_exception_only(error)))
        error = error.__cause__ or error.__context__
    return "".join(shown)


def refused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again: connecting to it is refused


async def test_a_refused_port_fails_within_seconds_naming_host_and_port(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    port = refused_port()
    began = time.monotonic()
    with pytest.raises(tapeflow.BackendUnavailable) as caught:
        await tapeflow.connect(f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/test")
    assert time.monotonic() - began < 5
    message = str(caught.value)
    assert "127.0.0.1" in message
    assert str(port) in message
    assert "refused" in message
    assert "/test" in message  # the database, from the URL as given
    assert PASSWORD not in everything_shown(caught.value)
    assert PASSWORD not in caplog.text


async def test_a_missing_database_is_named_with_the_servers_message(
    postgres_reachable: bool,
) -> None:
    require_available("postgres", None if postgres_reachable else f"unreachable at {POSTGRES_URL}")
    began = time.monotonic()
    with pytest.raises(tapeflow.BackendUnavailable) as caught:
        await tapeflow.connect(url(database="tapeflow_no_such_database"))
    assert time.monotonic() - began < 5
    assert 'database "tapeflow_no_such_database" does not exist' in str(caught.value)
    assert PASSWORD not in everything_shown(caught.value)


def test_an_unknown_parameter_is_refused_by_name_without_the_password() -> None:
    with pytest.raises(tapeflow.InvalidArgument) as caught:
        tapeflow.connect(url(query="schema=billing&pool_size=5"))
    assert "pool_size" in str(caught.value)
    assert "pool_max_size" in str(caught.value)  # the parameter that was likely meant
    assert PASSWORD not in everything_shown(caught.value)


def test_an_unencoded_percent_in_the_password_is_refused_without_showing_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(tapeflow.InvalidArgument) as caught:
        tapeflow.connect(url(password="50%off-secret", port=refused_port()))
    assert "percent-encoded" in str(caught.value)
    assert "off-secret" not in everything_shown(caught.value)
    assert "off-secret" not in caplog.text


def test_a_connection_string_where_a_url_belongs_is_refused_without_its_password() -> None:
    with pytest.raises(tapeflow.InvalidArgument, match="database URL") as caught:
        tapeflow.connect(f"host=127.0.0.1 password={PASSWORD}")
    assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize("size", ["0", "ten", "-1"])
def test_a_pool_size_that_is_not_a_positive_number_is_refused(size: str) -> None:
    with pytest.raises(tapeflow.InvalidArgument, match="pool_max_size"):
        tapeflow.connect(url(query=f"pool_max_size={size}"))


@pytest.mark.parametrize("scheme", ["postgresql+psycopg", "postgres"])
async def test_other_spellings_connect_and_the_repr_hides_the_password(
    postgres_reachable: bool, scheme: str
) -> None:
    require_available("postgres", None if postgres_reachable else f"unreachable at {POSTGRES_URL}")
    schema = f"test_{uuid.uuid4().hex[:16]}"
    application = f"tapeflow {schema}"  # a space: libpq's parameters reach it as written
    query = f"schema={schema}&pool_max_size=2&application_name=tapeflow%20{schema}"
    try:
        async with tapeflow.connect(url(scheme=scheme, query=query)) as backend:
            assert PASSWORD not in repr(backend)
            assert "127.0.0.1" in repr(backend) or (_TEST.hostname or "") in repr(backend)
            assert backend._pool.max_size == 2  # type: ignore[attr-defined]
            async with await psycopg.AsyncConnection.connect(POSTGRES_URL) as conn:
                cursor = await conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                    (application,),
                )
                row = await cursor.fetchone()
                assert row is not None
                assert row[0] >= 1
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.mark.parametrize(
    ("shown", "masked"),
    [
        ("postgresql://u:pw@h:5/db?sslmode=require", "postgresql://u:***@h:5/db?sslmode=require"),
        ("postgresql://u:p@ss/w@h/db?password=pw2&a=b", "postgresql://u:***@h/db?password=***&a=b"),
        ("host=h password='a b\\' c' dbname=x", "host=h password=*** dbname=x"),
        ("error at 'mysql://root:toor@db/x': refused", "error at 'mysql://root:***@db/x': refused"),
        (
            "postgresql://u@h/db and sqlite:///a:b@c.db",
            "postgresql://u@h/db and sqlite:///a:b@c.db",
        ),
    ],
)
def test_redact_masks_every_spelling_of_a_password(shown: str, masked: str) -> None:
    assert redact(shown) == masked
