"""Activities for the process-pool test: module-level, so a pool process can import them."""

from __future__ import annotations

import os
import sys
from datetime import timedelta

from tapeflow import activity


@activity.defn
def whereabouts(label: str) -> dict[str, int | str]:
    """Fails its first attempt, asking for a quick retry, to prove the override crosses
    the process boundary; then reports the pid and attempt it ran with."""
    info = activity.info()
    if info.attempt == 1:
        activity.retry_after(timedelta(milliseconds=10))
        raise RuntimeError("first attempt fails")
    return {"label": label, "pid": os.getpid(), "attempt": info.attempt}


@activity.defn
def exits_in_child(label: str) -> str:
    """Ends its pool process's call with SystemExit: a failed attempt, like any other."""
    sys.exit(f"{label}: sys.exit on attempt {activity.info().attempt}")
