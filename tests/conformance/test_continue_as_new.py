"""Continue-as-new: a run ends as ``continued_as_new`` and the next run of the same id
starts, in one step, with the given arguments and an empty history. Events not yet taken
carry over to it, never dropped, never doubled; ``result()`` follows the runs to the last,
``describe()`` shows the latest run and links it to the one before."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

import tapeflow
import tapeflow.testing
from tapeflow import activity, workflow
from tapeflow.history import (
    ActivityScheduled,
    WorkflowContinuedAsNew,
    WorkflowExecutionCompleted,
    WorkflowExecutionStarted,
)
from tests.conformance._waiting import eventually
from tests.conftest import WorkerFactory

RUNS = 100
"""The ticker continues as new this many times, then returns."""
TICKS = 20
"""Events it takes, one at every ``RUNS // TICKS``-th run: the others carry them over."""
EVERY = RUNS // TICKS


@dataclass(frozen=True)
class Tally:
    runs: int
    seen: list[int]


@workflow.defn
async def counts_ticks(run: int, seen: list[int]) -> Tally:
    """Run ``run`` of the ticker: every ``EVERY``-th run waits for one "tick"."""
    workflow.set_var("run", run)
    if run == RUNS:
        return Tally(runs=run, seen=seen)
    if run % EVERY == 0:
        seen = [*seen, await workflow.wait_event("tick", type=int)]
    workflow.continue_as_new(run + 1, seen)
    raise AssertionError("continue_as_new returned")


@dataclass(frozen=True)
class Relayed:
    notes: list[str]
    gos: list[str]


@workflow.defn
async def relays(run: int, notes: list[str], gos: list[str]) -> Relayed:
    """Takes one "go" a run, for three runs; "note" events go to a callback."""
    workflow.on_event("note", lambda note: notes.append(f"{note}@{run}"), type=str)
    go = await workflow.wait_event("go", type=str)
    gos.append(f"{go}@{run}")
    if run < 2:
        workflow.continue_as_new(run + 1, notes, gos)
    return Relayed(notes=notes, gos=gos)


LIMIT = 20
"""The history length past which ``compacts`` continues as new."""


@activity.defn
def step(done: int) -> int:
    return done + 1


@workflow.defn
async def compacts(total: int, done: int) -> int:
    """``total`` steps, one activity each, continuing as new whenever the history is long."""
    while done < total:
        if workflow.info().history_length > LIMIT:
            workflow.continue_as_new(total, done)
        done = await workflow.execute_activity(step, done)
    return done


@workflow.defn
async def counts_down(n: int) -> str:
    if n > 0:
        workflow.continue_as_new(n - 1)
    return "liftoff"


@workflow.defn
async def launches(n: int) -> str:
    return await workflow.execute_child_workflow(counts_down, n, id="countdown")


@workflow.defn
async def sends_ticks(target: str, count: int) -> int:
    for tick in range(count):
        await workflow.send_event(target, "tick", tick)
    return count


@workflow.defn
async def keeps_going(run: int) -> int:
    """Never ends by itself: each run waits a moment and continues as new."""
    await workflow.sleep(0.01)
    workflow.continue_as_new(run + 1)


WORKFLOWS = [counts_ticks, sends_ticks, relays, compacts, counts_down, launches, keeps_going]


async def _runs(client: tapeflow.Client, workflow_id: str) -> list[tapeflow.WorkflowRecord]:
    """Every run of the workflow, first to latest, followed back through previous_run_id."""
    runs = [await client.describe(workflow_id)]
    while (previous := runs[-1].previous_run_id) is not None:
        runs.append(await client.backend.get_workflow(workflow_id, previous))
        assert len(runs) <= 10 * RUNS, "the runs loop back"
    return runs[::-1]


@pytest.mark.parametrize("sender", ["client", "workflow"])
async def test_a_hundred_continuations_carry_every_event_over_exactly_once(
    client: tapeflow.Client, worker: WorkerFactory, sender: str
) -> None:
    """Ticks are sent while the runs go on (by the client, or by another workflow), some
    before the run that takes them, some while a run ends: none is refused, and each is
    taken exactly once, in the order sent."""
    async with worker(workflows=WORKFLOWS):
        handle = await client.start_workflow(counts_ticks, 0, [], id="ticker")
        if sender == "workflow":
            ticks = await client.start_workflow(sends_ticks, "ticker", TICKS, id="sender")
            assert await ticks.result(timeout=60) == TICKS
        for tick in range(TICKS if sender == "client" else 0):
            due = max(0, tick * EVERY - 7)  # tick k is taken by run k * EVERY: a little before

            async def reached(due: int = due) -> bool:
                return int((await handle.describe()).args[0]) >= due

            await eventually(reached, f"the ticker reached run {due}", timeout=30)
            await handle.send_event("tick", tick)
        tally = await handle.result(timeout=60)  # from the handle on the first run
    expected = Tally(runs=RUNS, seen=list(range(TICKS)))
    assert tally == expected
    assert await client.get_handle("ticker", result_type=Tally).result(timeout=10) == expected

    latest = await handle.describe()
    assert latest.status is tapeflow.WorkflowStatus.COMPLETED
    assert latest.run_id != handle.run_id
    assert latest.previous_run_id is not None
    runs = await _runs(client, "ticker")
    assert len(runs) == RUNS + 1
    assert len({run.run_id for run in runs}) == RUNS + 1
    assert runs[0].run_id == handle.run_id
    assert runs[0].previous_run_id is None
    assert [run.args[0] for run in runs] == list(range(RUNS + 1))
    assert [run.status for run in runs] == [tapeflow.WorkflowStatus.CONTINUED_AS_NEW] * RUNS + [
        tapeflow.WorkflowStatus.COMPLETED
    ]
    assert tapeflow.WorkflowStatus.CONTINUED_AS_NEW.value == "continued_as_new"
    assert tapeflow.WorkflowStatus.CONTINUED_AS_NEW.finished

    for run in runs[:-1]:
        events = await client.backend.load_history("ticker", run.run_id)
        [started] = [e for e in events if isinstance(e, WorkflowExecutionStarted)]
        assert started.args[0] == run.args[0]
        assert isinstance(events[-1], WorkflowContinuedAsNew), run.args[0]
    first = await client.backend.load_history("ticker", handle.run_id)
    assert tapeflow.testing.replay(counts_ticks, first, workflow_id="ticker").finished
    last = await client.backend.load_history("ticker")
    assert last == await client.backend.load_history("ticker", latest.run_id)
    [started] = [e for e in last if isinstance(e, WorkflowExecutionStarted)]  # a fresh history
    assert started.args == [RUNS, list(range(TICKS))]
    assert isinstance(last[-1], WorkflowExecutionCompleted)

    debugger = tapeflow.WorkflowDebugger(client.backend)
    assert await debugger.query_vars(counts_ticks, "ticker") == {"run": RUNS}
    assert await debugger.query_vars(counts_ticks, "ticker", run_id=handle.run_id) == {"run": 0}
    middle = runs[RUNS // 2].run_id
    assert await debugger.query_vars(counts_ticks, "ticker", run_id=middle) == {"run": RUNS // 2}


async def test_events_not_taken_carry_over_and_those_given_to_a_callback_do_not(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    """All sent before the first run runs: it takes one "go" and gives the "note" to its
    callback; the next runs take the other "go"s, and their callbacks see no "note"."""
    handle = await client.start_workflow(relays, 0, [], [], id="relay")
    await handle.send_event("note", "a")
    for go in ("1", "2", "3"):
        await handle.send_event("go", go)
    async with worker(workflows=WORKFLOWS):
        assert await handle.result(timeout=10) == Relayed(notes=["a@0"], gos=["1@0", "2@1", "3@2"])
    runs = await _runs(client, "relay")
    assert [run.status for run in runs] == [
        tapeflow.WorkflowStatus.CONTINUED_AS_NEW,
        tapeflow.WorkflowStatus.CONTINUED_AS_NEW,
        tapeflow.WorkflowStatus.COMPLETED,
    ]


async def test_continuing_as_new_when_the_history_grows_long(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    total = 30
    async with worker(workflows=WORKFLOWS, activities=[step]):
        handle = await client.start_workflow(compacts, total, 0, id="compacts")
        assert await handle.result(timeout=30) == total
    runs = await _runs(client, "compacts")
    assert len(runs) > 1
    done_at_start = [run.args[1] for run in runs]
    assert done_at_start[0] == 0
    assert done_at_start == sorted(set(done_at_start)), "each run goes on where the last stopped"
    steps = 0
    for run in runs:
        events = await client.backend.load_history("compacts", run.run_id)
        assert len(events) < 2 * LIMIT, "a run's history stays short"
        steps += sum(isinstance(e, ActivityScheduled) for e in events)
    assert steps == total, "no step is done twice, or skipped"


async def test_a_child_that_continues_as_new_gives_its_last_runs_result_to_the_parent(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=WORKFLOWS):
        handle = await client.start_workflow(launches, 3, id="launch")
        assert await handle.result(timeout=10) == "liftoff"
    runs = await _runs(client, "countdown")
    assert [run.args for run in runs] == [[3], [2], [1], [0]]
    assert runs[-1].status is tapeflow.WorkflowStatus.COMPLETED
    assert runs[-1].parent_id == "launch"  # the latest run is still the parent's child


@pytest.mark.parametrize("how", ["cancel", "terminate"])
async def test_a_cancel_or_terminate_reaches_a_workflow_that_keeps_continuing(
    client: tapeflow.Client, worker: WorkerFactory, how: str
) -> None:
    """Asked while its runs follow one another, the workflow's latest run takes the cancel
    (or the terminate): it is neither refused nor lost in a run's hand-over to the next."""
    async with worker(workflows=WORKFLOWS):
        handle = await client.start_workflow(keeps_going, 0, id="keeps-going")

        async def going() -> bool:
            return int((await handle.describe()).args[0]) >= 5

        await eventually(going, "the workflow has continued as new five times")
        if how == "cancel":
            await handle.cancel(reason="enough")
            with pytest.raises(tapeflow.WorkflowCancelled):
                await handle.result(timeout=10)
        else:
            await handle.terminate(reason="enough")
            with pytest.raises(tapeflow.WorkflowTerminated):
                await handle.result(timeout=10)
    latest = await handle.describe()
    expected = {"cancel": "cancelled", "terminate": "terminated"}[how]
    assert latest.status == expected
    assert latest.reason == "enough"
    assert latest.previous_run_id is not None
    runs = await _runs(client, "keeps-going")
    assert all(run.status is tapeflow.WorkflowStatus.CONTINUED_AS_NEW for run in runs[:-1])
