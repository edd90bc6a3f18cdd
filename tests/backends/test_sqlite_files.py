"""A SQLite database holds every workflow's arguments and results: its files are the
owner's alone, unless the owner already chose otherwise."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tapeflow.backends.sqlite import SQLiteBackend

FILES = ("tapeflow.db", "tapeflow.db-wal", "tapeflow.db-shm")


def _modes(directory: Path) -> dict[str, int]:
    return {name: stat.S_IMODE((directory / name).stat().st_mode) for name in FILES}


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """The common umask (022), under which an unguarded file comes out 0644."""
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.usefixtures("permissive_umask")
async def test_a_new_database_and_its_wal_and_shm_are_owner_only(tmp_path: Path) -> None:
    async with SQLiteBackend(tmp_path / "tapeflow.db"):
        assert _modes(tmp_path) == dict.fromkeys(FILES, 0o600)


@pytest.mark.usefixtures("permissive_umask")
async def test_an_existing_database_keeps_its_mode(tmp_path: Path) -> None:
    async with SQLiteBackend(tmp_path / "tapeflow.db"):
        pass
    (tmp_path / "tapeflow.db").chmod(0o640)
    async with SQLiteBackend(tmp_path / "tapeflow.db"):
        assert _modes(tmp_path) == dict.fromkeys(FILES, 0o640)
