"""Who polls for what: when workers last claimed each workflow and activity name, so that a
workflow left pending because no worker runs it says so instead of waiting silently.

A claim records its names at most every ``RECORD_EVERY`` per backend object, in the claim's
own statement (PostgreSQL) or transaction (SQLite): no statement of its own, and an idle
worker's claims (every poll interval, or every fallback interval when woken by NOTIFY) keep
the record fresh well within ``SILENT_AFTER``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta

from tapeflow.backends.wakeups import FALLBACK_POLL_SECONDS

RECORD_EVERY = timedelta(seconds=5)
"""Longest a backend object leaves unrecorded a claim of names it claimed for."""

SILENT_AFTER = timedelta(seconds=30)
"""A name not claimed for this long has no live worker: longer than the longest idle wait
between two claims (``FALLBACK_POLL_SECONDS``) plus ``RECORD_EVERY``, with room to spare."""

assert SILENT_AFTER.total_seconds() > FALLBACK_POLL_SECONDS + RECORD_EVERY.total_seconds()


class PollRecorder:
    """Decides which claims also record their names (one per ``RECORD_EVERY`` each)."""

    def __init__(self) -> None:
        self._recorded: dict[tuple[str, tuple[str, ...]], float] = {}

    def due(self, kind: str, names: Sequence[str]) -> list[str]:
        """The names, sorted (rows are locked in this order), if this claim records them;
        else none."""
        key = (kind, tuple(sorted(names)))
        now = time.monotonic()
        if now - self._recorded.get(key, -float("inf")) < RECORD_EVERY.total_seconds():
            return []
        self._recorded[key] = now
        return list(key[1])


def pending_hint(name: str, waiting: bool, silent_for: float | None) -> str | None:
    """Why a workflow due to start has not: no worker has claimed its name lately.
    ``silent_for`` is the seconds since the last recorded claim, None if there was none."""
    if not waiting or (silent_for is not None and silent_for < SILENT_AFTER.total_seconds()):
        return None
    seconds = round(SILENT_AFTER.total_seconds())
    return (
        f"no worker has polled for {name!r} in the last {seconds} s: start a worker that "
        f"registers the workflow {name!r}"
    )
