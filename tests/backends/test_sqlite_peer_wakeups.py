"""Processes sharing one SQLite file wake each other on commit: a worker in another process
takes new work at once, not at its poll interval; where no wake-up socket can be made, the
backend opens anyway and polls."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import stat
import sys
import time
from pathlib import Path

import pytest

import tapeflow
from tapeflow.backends.base import TaskKind
from tapeflow.backends.sqlite import SQLiteBackend, peer_wakeups
from tapeflow.backends.sqlite.peer_wakeups import (
    LOOK_AGAIN,
    MAX_DATAGRAM,
    datagrams,
    topics_of,
    wake_directory,
)
from tapeflow.backends.wakeups import work_topic
from tests.backends.slow_poll_worker import POLL_INTERVAL, doubled

ROOT = Path(__file__).resolve().parents[2]
AT_ONCE = 1.0
"""Far below the other process's poll interval (5 s)."""

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="no Unix datagram sockets")


async def test_a_worker_in_another_process_takes_new_work_at_once(tmp_path: Path) -> None:
    assert POLL_INTERVAL.total_seconds() >= 5 * AT_ONCE
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    async with tapeflow.connect(url) as backend:
        client = tapeflow.Client(backend)
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.backends.slow_poll_worker", url, cwd=ROOT
        )
        try:
            first = await client.start_workflow(doubled, 0, id="warm-up")
            assert await first.result(timeout=60) == 0  # the worker is up and idle
            for value in range(1, 4):
                started = time.monotonic()
                handle = await client.start_workflow(doubled, value, id=f"woken-{value}")
                assert await handle.result(timeout=AT_ONCE) == value * 2
                assert time.monotonic() - started < AT_ONCE
        finally:
            worker.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(worker.wait(), 30) == 0


async def test_a_commit_wakes_the_watchers_of_another_backend_on_the_file(tmp_path: Path) -> None:
    async with SQLiteBackend(tmp_path / "a.db") as here, SQLiteBackend(tmp_path / "a.db") as there:
        client = tapeflow.Client(here)
        with there.watch([work_topic(TaskKind.WORKFLOW, "doubled")]) as watch:
            await client.start_workflow(doubled, 1, id="heard")
            assert await watch.wait(AT_ONCE)


async def test_a_peer_that_opens_after_a_listing_was_kept_hears_the_next_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(peer_wakeups, "SETTLED_NS", 1_000_000)  # not 2 s: keep the listing soon
    async with SQLiteBackend(tmp_path / "a.db") as here:
        client = tapeflow.Client(here)
        await asyncio.sleep(0.05)  # longer than a tick of the file system's clock
        await client.start_workflow(doubled, 1, id="to-no-one")
        await asyncio.sleep(0)  # listed, and kept: no peers
        async with SQLiteBackend(tmp_path / "a.db") as there:
            with there.watch([work_topic(TaskKind.WORKFLOW, "doubled")]) as watch:
                await client.start_workflow(doubled, 2, id="heard")
                assert await watch.wait(AT_ONCE)


async def test_a_dead_peers_socket_is_removed_at_the_next_commit(tmp_path: Path) -> None:
    database = tmp_path / "a.db"
    directory = wake_directory(str(database))
    directory.mkdir()
    dead = directory / "1-deadbeef.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(dead))  # its process ended without removing it
    async with SQLiteBackend(database) as backend:
        assert dead.exists()
        await tapeflow.Client(backend).start_workflow(doubled, 1, id="told")
        await asyncio.sleep(0)  # the datagrams go out after the commit's turn of the loop
        assert not dead.exists()
        (mine,) = directory.iterdir()
    assert not mine.exists()
    assert not directory.exists()  # the last one out removes it


async def test_the_wake_up_directory_is_the_owners_alone(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        async with SQLiteBackend(tmp_path / "a.db"):
            assert stat.S_IMODE(wake_directory(str(tmp_path / "a.db")).stat().st_mode) == 0o700
    finally:
        os.umask(old)


async def test_no_wake_up_socket_means_polling_not_failing_to_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database = tmp_path / "a.db"
    wake_directory(str(database)).write_text("not a directory")
    with caplog.at_level(logging.INFO, logger="tapeflow.sqlite"):
        async with SQLiteBackend(database) as backend:
            handle = await tapeflow.Client(backend).start_workflow(doubled, 1, id="polled")
            assert (await handle.describe()).status.value == "pending"
            assert not backend.wakes_other_processes
    assert "cannot make a wake-up socket" in caplog.text


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="no /proc/self/fd")
async def test_a_directory_too_deep_for_a_socket_path_is_reached_through_proc(
    tmp_path: Path,
) -> None:
    database = tmp_path / ("d" * 100) / "a.db"
    async with SQLiteBackend(database) as here, SQLiteBackend(database) as there:
        with there.watch([work_topic(TaskKind.WORKFLOW, "doubled")]) as watch:
            await tapeflow.Client(here).start_workflow(doubled, 1, id="heard")
            assert await watch.wait(AT_ONCE)
    assert not wake_directory(str(database)).exists()


async def test_a_database_in_memory_has_no_wake_up_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with tapeflow.connect("sqlite://") as backend:
        await tapeflow.Client(backend).start_workflow(doubled, 1, id="alone")
    assert os.listdir(tmp_path) == []


def test_topics_fit_in_datagrams_and_come_back_whole() -> None:
    topics = [f"finished:workflow-{n}" for n in range(500)]
    sent = list(datagrams(topics))
    assert len(sent) > 1
    assert all(len(datagram) <= MAX_DATAGRAM for datagram in sent)
    assert [t for datagram in sent for t in topics_of(datagram) or []] == topics


def test_a_topic_too_long_for_a_datagram_wakes_everyone() -> None:
    assert list(datagrams(["finished:" + "x" * MAX_DATAGRAM])) == [LOOK_AGAIN]
    assert topics_of(LOOK_AGAIN) is None
    assert topics_of(b'{"not": "a list"}') is None
