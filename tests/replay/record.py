"""Record golden histories: run workflows end to end on SQLite, keep what they wrote.

    python -m tests.replay.record                 # (re)record every golden
    python -m tests.replay.record saga_compensated approvals    # only these
    python -m tests.replay.record --list

Each recording runs on a fresh temporary SQLite database with a real ``tapeflow.Worker`` and
``tapeflow.Client``; once its workflow has finished, its history (``backend.load_history``)
is written to ``histories/<name>.json`` in the form of ``history.encode_events``, and
``histories/manifest.json`` maps that file to the workflow's ``module:function``. The
workflow id is the file's stem (``workflow.random()`` is seeded by it).

Re-record only on purpose: a golden file is a promise that old histories keep replaying.
A recording is refused if its workflow does not end as expected or does not replay.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import tapeflow
from tapeflow._definition import definition_of
from tapeflow._engine.replay import replay_new
from tapeflow.history import (
    HistoryEvent,
    WorkflowExecutionCompleted,
    encode_events,
    is_terminal,
)
from tests.replay import workflows as wf

HISTORIES = Path(__file__).parent / "histories"
MANIFEST = "manifest.json"

WorkflowFunction = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Recording:
    """One workflow run to record: started with ``args``, then sent ``events`` in order."""

    name: str
    workflow: WorkflowFunction
    args: tuple[Any, ...] = ()
    activities: Sequence[Callable[..., Any]] = ()
    events: Sequence[tuple[str, Any]] = ()
    ends: Literal["completed", "failed"] = "completed"
    pause: float = 0.0
    """Seconds to wait after starting before sending the events (so some arrive while the
    workflow is already waiting, others before)."""
    context: Callable[[], AbstractContextManager[object]] | None = None
    """Entered around the run, for activities that need something in place (a ledger)."""

    @property
    def target(self) -> str:
        return f"{self.workflow.__module__}:{self.workflow.__qualname__}"


RECORDINGS: list[Recording] = [
    Recording(
        "order_pipeline",
        wf.order_pipeline,
        (wf.Order("o-17", [wf.Item("apple", 3), wf.Item("pear", 1), wf.Item("fig ✓", 2)]),),
        wf.ACTIVITIES,
    ),
    Recording("timers_and_randomness", wf.timers_and_randomness, (3,), wf.ACTIVITIES),
    Recording(
        "approvals",
        wf.approvals,
        (2,),
        wf.ACTIVITIES,
        events=[
            ("note", "first look"),
            ("approve", "ann"),
            ("note", "looks fine"),
            ("approve", "bob"),
            ("approve", "carol"),
            ("close", None),
        ],
        pause=0.2,
    ),
    Recording("retries", wf.retries, (3,), wf.ACTIVITIES),
    Recording(
        "saga_completed",
        wf.saga,
        (wf.Transfer(25, ["alice", "bob", "carol"]),),
        wf.ACTIVITIES,
    ),
    Recording(
        "saga_compensated",
        wf.saga,
        (wf.Transfer(25, ["alice", "bob", "frozen-carol", "dave"]),),
        wf.ACTIVITIES,
    ),
    Recording("fan_out_sum", wf.fan_out_sum, (40,), wf.ACTIVITIES),
    Recording("gives_up", wf.gives_up, ("not today",), wf.ACTIVITIES, ends="failed"),
    Recording("composed", wf.composed, (["cup", "pot"],), wf.ACTIVITIES),
    Recording(
        "patched_checkout_before",
        wf.checkout_before_patch,
        (wf.Order("o-31", [wf.Item("tea", 2), wf.Item("mug", 1)]),),
        wf.ACTIVITIES,
        events=[("confirm", None)],
    ),
    Recording(
        "patched_checkout",
        wf.patched_checkout,
        (wf.Order("o-31", [wf.Item("tea", 2), wf.Item("mug", 1)]),),
        wf.ACTIVITIES,
        events=[("confirm", None)],
    ),
]


def scenario_recordings() -> list[Recording]:
    """Recordings of the end-to-end scenarios, from ``tests/scenarios``."""
    from tests.scenarios import bank_transfer, fan_out, subscription, sum2rn

    def ledger(ledger_id: str, frozen: set[str]) -> Callable[[], AbstractContextManager[object]]:
        balances = {"A/alice": 100, "A/reserve": 1000, "B/carol": 5, "B/reserve": 1000}
        return lambda: bank_transfer.open_ledger(ledger_id, balances, frozen=frozenset(frozen))

    def transfer(ledger_id: str) -> tuple[bank_transfer.Transfer]:
        return (bank_transfer.Transfer(ledger_id, "A", "alice", "B", "carol", 30),)

    return [
        Recording(
            "scenario_subscription",
            subscription.subscription_workflow,
            (
                subscription.SubscriptionInput(
                    total_amount=103,
                    cycles=5,
                    cycle_duration=timedelta(milliseconds=100),
                    declined_cycles=[1, 2, 4],
                ),
            ),
            [subscription.payment],
        ),
        Recording("scenario_sum2rn", sum2rn.sum2rn, (100,), [sum2rn.random_19, sum2rn.random_23]),
        Recording("scenario_fan_out", fan_out.sum_of_squares, (100,), [fan_out.square]),
        Recording(
            "scenario_bank_transfer",
            bank_transfer.bank_transfer,
            transfer("golden-ok"),
            bank_transfer.ALL_ACTIVITIES,
            context=ledger("golden-ok", set()),
        ),
        Recording(
            "scenario_bank_transfer_compensated",
            bank_transfer.bank_transfer,
            transfer("golden-step-3"),
            bank_transfer.ALL_ACTIVITIES,
            ends="failed",
            context=ledger("golden-step-3", {"B/carol"}),
        ),
    ]


def all_recordings() -> list[Recording]:
    recordings = [*RECORDINGS, *scenario_recordings()]
    names = [r.name for r in recordings]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise SystemExit(f"duplicate recording names: {sorted(duplicates)}")
    return recordings


async def run_recordings(
    recordings: Sequence[Recording], *, cache_size: int = 1000, timeout: float = 60
) -> dict[str, list[HistoryEvent]]:
    """Run each recording on a fresh database of its own, all at once; histories by name."""
    histories = await asyncio.gather(*(_run(r, cache_size, timeout) for r in recordings))
    return {r.name: h for r, h in zip(recordings, histories, strict=True)}


async def _run(recording: Recording, cache_size: int, timeout: float) -> list[HistoryEvent]:
    with (
        tempfile.TemporaryDirectory(prefix="tapeflow-record-") as tmp,
        recording.context() if recording.context else nullcontext(),
    ):
        async with (
            tapeflow.connect(f"sqlite:///{Path(tmp) / 'record.db'}") as backend,
            tapeflow.Worker(
                backend,
                workflows=[recording.workflow, *wf.CHILDREN],
                activities=list(recording.activities),
                workflow_cache_size=cache_size,
                poll_interval=timedelta(milliseconds=50),
                max_concurrent_activities=8,
                shutdown_grace=timedelta(seconds=2),
                name="golden-recorder",
            ),
        ):
            client = tapeflow.Client(backend)
            await client.start_workflow(
                recording.workflow, *recording.args, id=recording.name, version="golden"
            )
            await _send_events(client, recording)
            await _finish(client, recording, timeout)
            return await backend.load_history(recording.name)


async def _send_events(client: tapeflow.Client, recording: Recording) -> None:
    if recording.pause:
        await asyncio.sleep(recording.pause)
    for name, payload in recording.events:
        await client.send_event(recording.name, name, payload)


async def _finish(client: tapeflow.Client, recording: Recording, timeout: float) -> None:
    handle = client.get_handle(recording.name)
    try:
        await handle.result(timeout=timeout)
    except tapeflow.WorkflowFailed as exc:
        if recording.ends != "failed":
            raise RuntimeError(f"{recording.name} failed: {exc}") from exc
    else:
        if recording.ends != "completed":
            raise RuntimeError(f"{recording.name} completed, but was expected to fail")


def check(recording: Recording, history: list[HistoryEvent]) -> None:
    """The history ends as expected and replays against the code that wrote it."""
    last = history[-1] if history else None
    if not is_terminal(last):
        raise RuntimeError(f"{recording.name}: history does not end the workflow: {last!r}")
    if isinstance(last, WorkflowExecutionCompleted) != (recording.ends == "completed"):
        raise RuntimeError(f"{recording.name}: ended with {last.kind}, not {recording.ends}")
    instance = replay_new(definition_of(recording.workflow, "workflow"), recording.name, history)
    instance.close()


def write(
    recordings: Sequence[Recording],
    histories: dict[str, list[HistoryEvent]],
    directory: Path = HISTORIES,
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    manifest_path = directory / MANIFEST
    manifest: dict[str, str] = (
        json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    )
    for recording in recordings:
        history = histories[recording.name]
        check(recording, history)
        file_name = f"{recording.name}.json"
        (directory / file_name).write_text(encode_events(history) + "\n", encoding="utf-8")
        manifest[file_name] = recording.target
    manifest_path.write_text(json.dumps(dict(sorted(manifest.items())), indent=1) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.replay.record", description=__doc__)
    parser.add_argument("names", nargs="*", help="recordings to (re)record; default: all")
    parser.add_argument("--list", action="store_true", help="list the recordings and exit")
    parser.add_argument("--out", type=Path, default=HISTORIES, help="where to write")
    parser.add_argument("--cache-size", type=int, default=1000, help="worker cache size")
    options = parser.parse_args(argv)
    recordings = all_recordings()
    if options.list:
        for recording in recordings:
            print(f"{recording.name:28} {recording.target}")
        return 0
    by_name = {r.name: r for r in recordings}
    unknown = [n for n in options.names if n not in by_name]
    if unknown:
        parser.error(f"unknown recordings {unknown}; known: {sorted(by_name)}")
    chosen = [by_name[n] for n in options.names] if options.names else recordings
    histories = asyncio.run(run_recordings(chosen, cache_size=options.cache_size))
    write(chosen, histories, options.out)
    for recording in chosen:
        print(f"recorded {recording.name}: {len(histories[recording.name])} events")
    return 0


if __name__ == "__main__":
    sys.exit(main())
