"""Poisoned tasks: user code raising what stops processes (SystemExit, KeyboardInterrupt,
a BaseException of its own, an asyncio.CancelledError nobody asked for) and workflow code
that never returns. The worker must record each as a failure and go on.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from datetime import timedelta

import tapeflow
from tapeflow import activity, workflow
from tests.scenarios.journal import journal
from tests.scenarios.retries import Outcome


class Meltdown(BaseException):
    """A user's own BaseException subclass, outside Exception like SystemExit."""


POISONS: dict[str, type[BaseException]] = {
    "SystemExit": SystemExit,
    "KeyboardInterrupt": KeyboardInterrupt,
    "Meltdown": Meltdown,
}

_poisoned: set[str] = set()
_poisoned_lock = threading.Lock()


def first_time(key: str) -> bool:
    """True once per key: poison the first activation only, so the retry shows recovery."""
    with _poisoned_lock:
        if key in _poisoned:
            return False
        _poisoned.add(key)
        return True


@workflow.defn
async def raises_once(poison: str) -> str:
    """Raises ``poison`` in its first activation only (nothing of it reaches history, so the
    retry replays as if it never happened)."""
    if first_time(workflow.info().workflow_id):
        raise POISONS[poison](f"{poison} from workflow code")
    return f"recovered from {poison}"


# -- activities that raise BaseExceptions -----------------------------------------------------

QUICK_THREE_ATTEMPTS = tapeflow.RetryPolicy(
    initial_interval=timedelta(milliseconds=20), maximum_attempts=3
)


@activity.defn
def exits(journal_id: str) -> str:
    journal(journal_id).record("exits")
    sys.exit(f"sys.exit on attempt {activity.info().attempt}")


@activity.defn
async def cancels_itself(journal_id: str) -> str:
    journal(journal_id).record("cancels_itself")
    raise asyncio.CancelledError(f"CancelledError on attempt {activity.info().attempt}")


@activity.defn
async def melts_down(journal_id: str) -> str:
    journal(journal_id).record("melts_down")
    raise Meltdown(f"Meltdown on attempt {activity.info().attempt}")


@workflow.defn
async def runs_poisoned_activity(activity_name: str, journal_id: str) -> Outcome:
    try:
        result = await workflow.execute_activity(
            activity_name, journal_id, retry=QUICK_THREE_ATTEMPTS
        )
    except tapeflow.ActivityError as exc:
        return Outcome(
            activity=exc.activity,
            error_type=exc.type,
            error_message=exc.message,
            attempt=exc.attempt,
        )
    return Outcome(result=str(result))


# -- workflow code that never returns ---------------------------------------------------------

RELEASE = threading.Event()
"""Set by the test once it has seen what it needs: the spinning code then returns, so no
thread goes on spinning into the next test."""


@workflow.defn
async def spins_forever() -> str:
    while not RELEASE.is_set():
        pass
    return "released"
