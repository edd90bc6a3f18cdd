"""A per-test record of what activities did, safe to write from the worker's threads.

Sync activities run in a thread pool, so they cannot hand anything back to the test but
their result. A test opens a journal, passes its id in the workflow's input, and the
activities record into it (which attempt ran, when, and a note); the test then reads it.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from tapeflow import activity


@dataclass(frozen=True)
class Entry:
    what: str
    attempt: int
    at: datetime
    note: str = ""


class Journal:
    def __init__(self, journal_id: str) -> None:
        self.id = journal_id
        self._lock = threading.Lock()
        self._entries: list[Entry] = []

    def record(self, what: str, note: str = "") -> Entry:
        """Record the running activity attempt (its attempt number and the time now)."""
        entry = Entry(what, activity.info().attempt, datetime.now(UTC), note)
        with self._lock:
            self._entries.append(entry)
        return entry

    @property
    def entries(self) -> list[Entry]:
        with self._lock:
            return list(self._entries)

    def attempts(self, what: str) -> list[int]:
        return [entry.attempt for entry in self.entries if entry.what == what]


_journals: dict[str, Journal] = {}
_journals_lock = threading.Lock()


def journal(journal_id: str) -> Journal:
    """The journal with this id, opened on first use (so recording tools need no setup)."""
    with _journals_lock:
        found = _journals.get(journal_id)
        if found is None:
            found = _journals[journal_id] = Journal(journal_id)
        return found


@contextmanager
def new_journal() -> Iterator[Journal]:
    """A fresh journal under a unique id, forgotten when the block ends."""
    journal_id = f"journal-{uuid.uuid4().hex}"
    opened = journal(journal_id)
    try:
        yield opened
    finally:
        with _journals_lock:
            _journals.pop(journal_id, None)
