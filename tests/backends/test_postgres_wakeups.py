"""PostgreSQL wake-ups: a backend wakes its own watchers at the commit, skips the echo of
its own NOTIFYs, and still hears every other backend's (and an older tapeflow's)."""

from __future__ import annotations

import asyncio

import psycopg

import tapeflow
from tapeflow.backends.base import TaskKind
from tapeflow.backends.postgres.backend import PostgresBackend
from tapeflow.backends.wakeups import work_topic
from tests.conformance._waiting import eventually

ECHO_WAIT = 0.5
"""Long enough for a NOTIFY to come back through the server many times over."""


@tapeflow.workflow.defn
async def nap() -> None:
    return None


async def _listening(*backends: tapeflow.Backend) -> None:
    async def all_listening() -> bool:
        return all(b.wakes_other_processes for b in backends)

    await eventually(all_listening, "every backend is listening")


async def test_own_commits_wake_here_at_once_and_their_echo_is_skipped(
    postgres_url: str,
) -> None:
    async with tapeflow.connect(postgres_url) as backend:
        await _listening(backend)
        echoes: list[str] = []
        assert isinstance(backend, PostgresBackend)
        heard = backend._heard

        def recording(payload: str) -> str | None:
            echoes.append(payload)
            return heard(payload)

        backend._heard = recording  # type: ignore[method-assign]
        with backend.watch([work_topic(TaskKind.WORKFLOW, "nap")]) as watch:
            await tapeflow.Client(backend).start_workflow(nap)
            assert watch.woken  # before start_workflow returned: no round trip to the server
            watch.clear()

            async def came_back() -> bool:
                return bool(echoes)

            await eventually(came_back, "the NOTIFY came back")
            await asyncio.sleep(ECHO_WAIT)
            assert not watch.woken, f"its own echo woke it again: {echoes}"


async def test_other_backends_and_plain_payloads_still_wake(postgres_url: str) -> None:
    async with (
        tapeflow.connect(postgres_url) as sender,
        tapeflow.connect(postgres_url) as receiver,
    ):
        await _listening(sender, receiver)
        assert isinstance(receiver, PostgresBackend)
        topic = work_topic(TaskKind.WORKFLOW, "nap")
        with receiver.watch([topic]) as watch:
            await tapeflow.Client(sender).start_workflow(nap)
            assert await watch.wait(10), "another backend's commit did not wake it"
            watch.clear()
            conninfo = postgres_url.partition("?")[0]
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                await conn.execute("SELECT pg_notify(%s, %s)", (receiver.channel, topic))
            assert await watch.wait(10), "a payload without a sender did not wake it"
