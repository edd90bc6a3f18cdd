"""Keep recorded histories and check that new code replays them.

A change to workflow code that would break running workflows shows up as a
NonDeterminismError here, before it reaches production::

    history = tapeflow.testing.load_history("tests/histories/order-1.json")
    tapeflow.testing.replay(place_order, history)   # raises NonDeterminismError if broken
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tapeflow._definition import definition_of
from tapeflow._engine.replay import replay_new
from tapeflow.backends.base import Backend
from tapeflow.history import HistoryEvent, decode_events, encode_events, is_imposed


@dataclass(frozen=True)
class Replayed:
    """Where a replay ended."""

    vars: dict[str, Any]
    """The variables set with ``workflow.set_var``."""
    finished: bool
    """Whether the history ended the workflow (its code did, or a terminate or timeout)."""


def replay(
    workflow: Callable[..., Awaitable[Any]],
    history: Sequence[HistoryEvent],
    *,
    workflow_id: str = "replay",
) -> Replayed:
    """Replay ``history`` through the current code of ``workflow``, as a worker would after
    a restart. Raises NonDeterminismError naming the first event the code no longer fits."""
    instance = replay_new(definition_of(workflow, "workflow"), workflow_id, history)
    try:
        ended = instance.finished or (bool(history) and is_imposed(history[-1]))
        return Replayed(vars=dict(instance.vars), finished=ended)
    finally:
        instance.close()


async def save_history(backend: Backend, workflow_id: str, path: str | Path) -> None:
    """Write a workflow's stored history to a JSON file, to replay in tests later."""
    history = await backend.load_history(workflow_id)
    text = encode_events(history) + "\n"
    await asyncio.to_thread(Path(path).write_text, text, encoding="utf-8")


def load_history(path: str | Path) -> list[HistoryEvent]:
    return decode_events(Path(path).read_text(encoding="utf-8"))
