"""Live runs and replays agree: same decisions, same vars, whatever the cut.

Each workflow is run live by a small simulation (activation by activation, as a worker with
its cache on would), then its history is replayed from scratch (a cache miss) and from every
task boundary (a worker evicting the instance mid-run): the decisions and vars are identical.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

import tapeflow
from tapeflow import activity, workflow
from tapeflow._engine.instance import Activation
from tapeflow._engine.replay import replay_new, split_activations
from tapeflow.history import (
    ActivityScheduled,
    EventReceived,
    Incoming,
    WorkflowExecutionCompleted,
    WorkflowExecutionFailed,
)
from tests.engine.conftest import RunFactory
from tests.engine.harness import WORKFLOW_ID, Run, Simulation, complete, fail, replay_decisions


@dataclass
class SubscriptionInput:
    cycles: int
    cycle_seconds: int
    price: int


@dataclass
class SubscriptionOutput:
    paid: int
    overdue: int


@activity.defn
def payment(cycle: int, amount: int) -> None:
    return None


@activity.defn
def square(value: int) -> int:
    return value * value


@activity.defn
def debit(account: str, amount: int) -> None:
    return None


@activity.defn
def credit(account: str, amount: int) -> None:
    return None


@workflow.defn
async def subscription(inp: SubscriptionInput) -> SubscriptionOutput:
    started = workflow.info().started_at
    paid = overdue = 0
    workflow.set_var("paid", paid)
    workflow.set_var("overdue", overdue)
    for cycle in range(inp.cycles):
        await workflow.sleep_until(started + timedelta(seconds=inp.cycle_seconds * (cycle + 1)))
        try:
            await workflow.execute_activity(
                payment,
                cycle,
                inp.price,
                retry=tapeflow.RetryPolicy(maximum_attempts=3),
            )
            paid += inp.price
        except tapeflow.ActivityError:
            overdue += inp.price
        workflow.set_var("paid", paid)
        workflow.set_var("overdue", overdue)
        workflow.set_var("cycle", cycle)
    return SubscriptionOutput(paid=paid, overdue=overdue)


def pay_every_third_fails(scheduled: ActivityScheduled) -> Incoming:
    if scheduled.name == "payment" and scheduled.args[0] % 3 == 2:
        return fail(scheduled, "PaymentDeclined", f"cycle {scheduled.args[0]}", attempt=3)
    return complete(scheduled, None)


@workflow.defn
async def fan_out_sum(count: int) -> int:
    results = await asyncio.gather(*(workflow.execute_activity(square, i) for i in range(count)))
    workflow.set_var("results", list(results))
    return sum(results)


def squares(scheduled: ActivityScheduled) -> Incoming:
    return complete(scheduled, scheduled.args[0] ** 2)


@workflow.defn
async def transfer(steps: list[str], amount: int) -> list[str]:
    """A saga: each step has a compensation, run in reverse order when a step fails."""
    compensations: list[Callable[[], asyncio.Future[None]]] = []
    done: list[str] = []
    try:
        for step in steps:
            await workflow.execute_activity(debit, step, amount)
            compensations.append(lambda step=step: workflow.execute_activity(credit, step, amount))  # type: ignore[misc]
            done.append(step)
            workflow.set_var("done", list(done))
    except tapeflow.ActivityError as err:
        for undo in reversed(compensations):
            await undo()
        done.append(f"compensated after {err.message}")
    return done


def debit_fails_on(account: str) -> Callable[[ActivityScheduled], Incoming]:
    def respond(scheduled: ActivityScheduled) -> Incoming:
        if scheduled.name == "debit" and scheduled.args[0] == account:
            return fail(scheduled, "Insufficient", f"no money in {account}")
        return complete(scheduled, None)

    return respond


@workflow.defn
async def listener(expected: int) -> dict[str, Any]:
    seen: list[Any] = []
    workflow.on_event("tick", seen.append)
    got: list[Any] = []
    while len(got) < expected:
        try:
            async with asyncio.timeout(50):
                got.append(await workflow.wait_event("value"))
        except TimeoutError:
            got.append("timeout")
        workflow.set_var("got", list(got))
        if got[-1] != "timeout":
            got[-1] = await workflow.execute_activity(square, got[-1])
    return {"got": got, "ticks": seen, "lucky": workflow.random().randint(0, 10**9)}


def listener_events() -> list[tuple[float, EventReceived]]:
    return [
        (5, EventReceived("value", 2)),
        (5, EventReceived("tick", "a")),
        (7, EventReceived("value", 3)),
        (140, EventReceived("tick", "b")),
        (141, EventReceived("value", 4)),
    ]


@workflow.defn
async def patched_squares(count: int) -> list[int]:
    """Patches decided in several tasks, each id once however often it is asked."""
    got: list[int] = []
    for n in range(count):
        workflow.deprecate_patch("long-gone")
        value = await workflow.execute_activity(square, n)
        got.append(2 * value if workflow.patched(f"double-{n % 3}") else value)
    return got


def simulation(name: str, run: Run) -> Simulation:
    if name.startswith("subscription"):
        return Simulation(run, pay_every_third_fails)
    if name.startswith("fan_out"):
        return Simulation(run, squares, batch=7 if name.endswith("batched") else 1)
    if name == "patched":
        return Simulation(run, squares)
    if name == "transfer_ok":
        return Simulation(run, debit_fails_on("nobody"))
    if name.startswith("transfer_fails"):
        return Simulation(run, debit_fails_on(name.rsplit("_", 1)[-1]))
    return Simulation(run, squares, events=listener_events())


SCENARIOS: dict[str, tuple[Callable[..., Any], tuple[Any, ...]]] = {
    "subscription": (subscription, (SubscriptionInput(cycles=7, cycle_seconds=30, price=10),)),
    "fan_out": (fan_out_sum, (20,)),
    "fan_out_batched": (fan_out_sum, (20,)),
    "transfer_ok": (transfer, (["a", "b", "c", "d"], 5)),
    "transfer_fails_a": (transfer, (["a", "b", "c", "d"], 5)),
    "transfer_fails_c": (transfer, (["a", "b", "c", "d"], 5)),
    "listener": (listener, (5,)),
    "patched": (patched_squares, (6,)),
}


def run_live(run: RunFactory, name: str) -> Run:
    function, args = SCENARIOS[name]
    live = run(function)
    simulation(name, live).go(*args)
    return live


EXPECTED_ENDS: dict[str, Any] = {
    "subscription": {"paid": 50, "overdue": 20},
    "fan_out": sum(i * i for i in range(20)),
    "fan_out_batched": sum(i * i for i in range(20)),
    "transfer_ok": ["a", "b", "c", "d"],
    "transfer_fails_a": ["compensated after no money in a"],
    "transfer_fails_c": ["a", "b", "compensated after no money in c"],
    "listener": {"got": [4, 9, "timeout", "timeout", 16], "ticks": ["a", "b"], "lucky": 0},
    "patched": [2 * n * n for n in range(6)],
}


@pytest.mark.parametrize("name", SCENARIOS)
def test_the_live_run_ends_as_expected(run: RunFactory, name: str) -> None:
    live = run_live(run, name)
    end = live.activations[-1][-1]
    assert isinstance(end, WorkflowExecutionCompleted), end
    expected = EXPECTED_ENDS[name]
    if name == "listener":  # a random number drawn from workflow.random()
        expected = {**expected, "lucky": end.result["lucky"]}
    assert end.result == expected


def test_the_transfer_compensates_in_reverse_order(run: RunFactory) -> None:
    live = run_live(run, "transfer_fails_c")
    scheduled = [(e.name, e.args[0]) for e in live.history if isinstance(e, ActivityScheduled)]
    assert scheduled == [
        ("debit", "a"),
        ("debit", "b"),
        ("debit", "c"),
        ("credit", "b"),
        ("credit", "a"),
    ]


def test_the_listener_draws_the_same_random_number_for_the_same_id(run: RunFactory) -> None:
    first = run_live(run, "listener").activations[-1][-1]
    second = run_live(run, "listener").activations[-1][-1]
    assert isinstance(first, WorkflowExecutionCompleted)
    assert first == second


@pytest.mark.parametrize("name", SCENARIOS)
def test_replay_from_scratch_gives_identical_decisions_and_vars(run: RunFactory, name: str) -> None:
    live = run_live(run, name)
    emitted, instance = replay_decisions(live.workflow, live.history)
    try:
        assert emitted == live.activations
        assert instance.vars == live.vars
        assert instance.finished
    finally:
        instance.close()
    checked = replay_new(live.definition, WORKFLOW_ID, live.history)
    assert checked.vars == live.vars
    assert checked.history_length == len(live.history)
    checked.close()


@pytest.mark.parametrize("name", SCENARIOS)
def test_resuming_from_any_task_boundary_gives_the_same_run(run: RunFactory, name: str) -> None:
    live = run_live(run, name)
    parts = list(split_activations(live.history))
    boundaries = [
        i for i, e in enumerate(live.history) if type(e).__name__ == "WorkflowTaskStarted"
    ]
    assert len(boundaries) == len(parts) == len(live.activations)
    step = max(1, len(parts) // 12)
    for cut in range(1, len(parts), step):
        instance = replay_new(live.definition, WORKFLOW_ID, live.history[: boundaries[cut]])
        try:
            for index in range(cut, len(parts)):
                fresh = Activation(parts[index].activation.at, parts[index].activation.events)
                assert instance.activate(fresh) == live.activations[index], (cut, index)
            assert instance.vars == live.vars
        finally:
            instance.close()


@pytest.mark.parametrize("name", ["subscription", "transfer_fails_c"])
def test_vars_at_each_task_boundary_match_the_live_run(run: RunFactory, name: str) -> None:
    function, args = SCENARIOS[name]
    live = run(function)
    snapshots: list[dict[str, Any]] = []
    original_step = live.step

    def step(when: Any, *events: Incoming) -> list[Any]:
        decisions = original_step(when, *events)
        snapshots.append(dict(live.vars))
        return decisions

    live.step = step  # type: ignore[method-assign]
    simulation(name, live).go(*args)
    boundaries = [
        i for i, e in enumerate(live.history) if type(e).__name__ == "WorkflowTaskStarted"
    ]
    ends = [*boundaries[1:], len(live.history)]
    for end, expected in zip(ends, snapshots, strict=True):
        instance = replay_new(live.definition, WORKFLOW_ID, live.history[:end])
        assert instance.vars == expected
        instance.close()


def test_a_failed_run_replays_to_the_same_failure(run: RunFactory) -> None:
    live = run(fan_out_sum)
    Simulation(live, lambda s: fail(s, "Boom", "square broke")).go(3)
    end = live.activations[-1][-1]
    assert isinstance(end, WorkflowExecutionFailed)
    emitted, instance = replay_decisions(fan_out_sum, live.history)
    instance.close()
    assert emitted == live.activations
