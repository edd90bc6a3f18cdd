"""tapeflow.testing.WorkflowEnvironment: workflows on virtual time, with fake activities.

Time stands still unless moved: by hand (``env.sleep``), or by itself while the test awaits
a workflow, from due time to due time once nothing runs. Every test here also checks that
it took no real time to speak of.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import tapeflow
from tapeflow import activity, workflow
from tapeflow.errors import InvalidArgument
from tapeflow.testing import WorkflowEnvironment
from tapeflow.testing.pytest_plugin import EnvironmentFactory
from tests.snippets import ROOT, files

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
MONTH = timedelta(days=30)
START = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def billing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The README's billing.py (the quickstart's subscription), as a reader would save it."""
    path = tmp_path_factory.mktemp("readme") / "billing.py"
    path.write_text(files(ROOT / "README.md")["billing.py"], encoding="utf-8")
    spec = importlib.util.spec_from_file_location("readme_billing", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses are found by name when decoded
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


class Stopwatch:
    """Real time taken by a block."""

    def __enter__(self) -> Stopwatch:
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.monotonic() - self.started


# -- time jumps from timer to timer while a result is awaited --------------------------------


async def test_a_year_of_monthly_cycles_runs_in_well_under_a_second(billing: ModuleType) -> None:
    charged: list[int] = []

    def payment(inp: Any) -> None:  # cycles 3 and 4 declined: carried over, paid in 5
        charged.append(inp.value)
        if len(charged) in (4, 5):
            raise tapeflow.NonRetryableError("card declined")

    inp = billing.SubscriptionInput(total_amount=1200, cycles=12, cycle_duration=MONTH)
    async with WorkflowEnvironment(
        workflows=[billing.subscription],
        activities=[billing.payment],
        fakes={"payment": payment},
        start_time=START,
    ) as env:
        with Stopwatch() as real:
            handle = await env.client.start_workflow(billing.subscription, inp)
            out = await handle.result(timeout=10)
        assert out == billing.SubscriptionOutput(paid=1200, overdue=0)
        assert real.seconds < 1.0, f"12 monthly cycles took {real.seconds:.2f}s of real time"
        assert env.now() == START + 12 * MONTH  # the last cycle's due date, exactly
        found = (await handle.describe()).vars

    assert charged == [100, 100, 100, 100, 200, 300, 100, 100, 100, 100, 100, 100]
    assert [found[f"cycle_{n}_completed_at"] for n in range(12)] == [
        (START + (n + 1) * MONTH).isoformat() for n in range(12)
    ]
    assert found["cycle_3_err"] == found["cycle_4_err"] == "card declined"


@workflow.defn
async def naps(duration: timedelta) -> str:
    await workflow.sleep(duration)
    woke: str = workflow.now().isoformat()
    return woke


async def test_time_stops_once_the_awaited_workflow_has_ended() -> None:
    async with WorkflowEnvironment(workflows=[naps], start_time=START) as env:
        short = await env.client.start_workflow(naps, HOUR)
        long = await env.client.start_workflow(naps, 2 * HOUR)
        assert await short.result(timeout=10) == (START + HOUR).isoformat()
        await asyncio.sleep(0.1)
        assert env.now() == START + HOUR  # the other's timer waits for another move
        assert (await long.describe()).status is tapeflow.WorkflowStatus.RUNNING
        assert await long.result(timeout=10) == (START + 2 * HOUR).isoformat()


async def test_a_schedule_fires_on_virtual_time() -> None:
    async with WorkflowEnvironment(workflows=[naps], start_time=START) as env:
        daily = await env.client.create_schedule("daily", naps, HOUR, every=timedelta(days=1))
        with Stopwatch() as real:
            await env.sleep(timedelta(days=7))
        schedule = await daily.describe()
        runs = {run.due_at: run.status for run in schedule.last_runs}
        done, last = tapeflow.WorkflowStatus.COMPLETED, tapeflow.WorkflowStatus.RUNNING
        assert runs == {START + timedelta(days=n): done if n < 7 else last for n in range(1, 8)}
        assert schedule.next_fire_times[0] == START + timedelta(days=8)
        assert real.seconds < 1.0


@workflow.defn
async def waits_for_approval() -> str:
    answer: str = await workflow.wait_event("approve", type=str)
    return answer


async def test_a_workflow_waiting_for_an_event_does_not_move_time() -> None:
    async with WorkflowEnvironment(workflows=[waits_for_approval], start_time=START) as env:
        handle = await env.client.start_workflow(waits_for_approval)
        with pytest.raises(TimeoutError):
            await handle.result(timeout=0.3)  # no timer: nothing to jump to
        assert env.now() == START
        await handle.send_event("approve", "yes")
        assert await handle.result(timeout=5) == "yes"
        assert env.now() == START


@workflow.defn
async def holds_seats() -> None:
    async def hold(seats: int) -> str:
        await workflow.sleep(timedelta(days=1))  # the hold expires a day later
        return f"{seats} seats held until {workflow.now().isoformat()}"

    workflow.on_update("hold", hold)
    await workflow.wait_event("done")


async def test_awaiting_an_update_moves_time_too() -> None:
    async with WorkflowEnvironment(workflows=[holds_seats], start_time=START) as env:
        handle = await env.client.start_workflow(holds_seats)
        answer = await handle.execute_update("hold", 2, result_type=str, timeout=10)
        assert answer == f"2 seats held until {(START + timedelta(days=1)).isoformat()}"
        await handle.send_event("done")
        await handle.result(timeout=10)
        assert env.now() == START + timedelta(days=1)


async def test_an_execution_timeout_is_reached_on_virtual_time() -> None:
    async with WorkflowEnvironment(workflows=[waits_for_approval], start_time=START) as env:
        handle = await env.client.start_workflow(
            waits_for_approval, execution_timeout=timedelta(days=7)
        )
        with Stopwatch() as real, pytest.raises(tapeflow.WorkflowTimedOut):
            await handle.result(timeout=10)
        assert env.now() == START + timedelta(days=7)
        assert real.seconds < 1.0


# -- env.sleep moves time by hand ------------------------------------------------------------


@workflow.defn
async def wakes_up_twice() -> list[str]:
    woke = []
    for _ in range(2):
        await workflow.sleep(timedelta(minutes=30))
        woke.append(workflow.now().isoformat())
        workflow.set_var("woke", woke)
    return woke


async def test_sleep_fires_a_timer_when_moved_past_it_and_not_before() -> None:
    async with WorkflowEnvironment(workflows=[wakes_up_twice], start_time=START) as env:
        handle = await env.client.start_workflow(wakes_up_twice)
        await asyncio.sleep(0.2)  # real time passes; nobody awaits the result: time stays
        assert env.now() == START

        await env.sleep(timedelta(minutes=29, seconds=59, microseconds=999_999))
        assert (await handle.describe()).vars == {}
        await env.sleep(timedelta(microseconds=1))
        assert (await handle.describe()).vars == {"woke": [(START + 30 * MINUTE).isoformat()]}

        await env.sleep(timedelta(days=1))  # the second timer fires at its own time
        assert env.now() == START + timedelta(days=1, minutes=30)
        assert await handle.result(timeout=5) == [
            (START + 30 * MINUTE).isoformat(),
            (START + 60 * MINUTE).isoformat(),
        ]


async def test_sleep_takes_seconds_and_waits_for_the_start_to_be_handled() -> None:
    async with WorkflowEnvironment(workflows=[wakes_up_twice], start_time=START) as env:
        handle = await env.client.start_workflow(wakes_up_twice)
        await env.sleep(3600.0)  # right after the start: its first task runs first
        assert (await handle.describe()).status is tapeflow.WorkflowStatus.COMPLETED
        assert env.now() == START + timedelta(hours=1)


# -- activities: fakes, retries --------------------------------------------------------------


@dataclass
class Receipt:
    amount: int
    by: str


@activity.defn
def charge(amount: int) -> Receipt:
    raise AssertionError("the real charge must not run in these tests")


@activity.defn
def tax(amount: int) -> int:
    return amount // 10


class Bank:
    def __init__(self, url: str) -> None:
        raise AssertionError("no bank is needed to fake one")

    @activity.defn
    async def refund(self, receipt: Receipt) -> str:
        raise AssertionError("the real refund must not run")


@workflow.defn
async def order(amount: int) -> tuple[Receipt, str]:
    owed = await workflow.execute_activity(tax, amount)
    receipt = await workflow.execute_activity(charge, amount + owed)
    return receipt, await workflow.execute_activity(Bank.refund, receipt)


async def test_fakes_replace_activities_by_name_with_their_types_kept() -> None:
    refunded: list[Receipt] = []

    async def refund(receipt: Receipt) -> str:
        refunded.append(receipt)
        return f"refunded {receipt.amount}"

    async with WorkflowEnvironment(
        workflows=[order],
        activities=[tax, charge, Bank.refund],  # a method's fake needs no object
        fakes={"charge": lambda amount: Receipt(amount, "fake"), "refund": refund},
    ) as env:
        handle = await env.client.start_workflow(order, 100)
        assert await handle.result(timeout=10) == (Receipt(110, "fake"), "refunded 110")
    assert refunded == [Receipt(110, "fake")]  # decoded as the real activity's argument


@activity.defn
def flaky() -> str:
    raise AssertionError("faked")


@workflow.defn
async def calls_flaky(give_up_after: timedelta | None) -> str:
    retry = tapeflow.RetryPolicy(
        initial_interval=timedelta(hours=1), backoff_coefficient=2, maximum_interval=None
    )
    try:
        result = await workflow.execute_activity(
            flaky, retry=retry, schedule_to_close_timeout=give_up_after
        )
    except tapeflow.ActivityError as exc:
        result = f"gave up: {exc.message}"
    return f"{result} at {workflow.now().isoformat()}"


async def test_an_activity_retries_after_its_backoff_in_virtual_time() -> None:
    attempts: list[int] = []

    def fails_twice() -> str:
        attempts.append(activity.info().attempt)
        if len(attempts) < 3:
            raise ConnectionError("service unavailable")
        return "done"

    async with WorkflowEnvironment(
        workflows=[calls_flaky],
        activities=[flaky],
        fakes={"flaky": fails_twice},
        start_time=START,
    ) as env:
        with Stopwatch() as real:
            handle = await env.client.start_workflow(calls_flaky, None)
            # Attempt 2 an hour after the first, attempt 3 two hours after that.
            assert await handle.result(timeout=10) == f"done at {(START + 3 * HOUR).isoformat()}"
        assert attempts == [1, 2, 3]
        assert real.seconds < 1.0

        # Schedule-to-close spans the waits between attempts: on virtual time too.
        attempts.clear()
        handle = await env.client.start_workflow(calls_flaky, 2 * HOUR)
        started = env.now()
        out = await handle.result(timeout=10)
        assert out.startswith("gave up: ")
        assert "schedule_to_close_timeout" in out
        assert out.endswith(f" at {(started + HOUR).isoformat()}")  # attempt 3 would be late
        assert attempts == [1, 2]


@activity.defn
async def slow(seconds: float) -> str:
    raise AssertionError("faked")


@workflow.defn
async def races_a_timer(seconds: float) -> str:
    once = tapeflow.RetryPolicy(maximum_attempts=1)
    try:
        async with asyncio.timeout(60):  # a minute of workflow time
            return await workflow.execute_activity(
                slow, seconds, retry=once, start_to_close_timeout=timedelta(seconds=0.2)
            )
    except TimeoutError:
        return "the minute passed"
    except tapeflow.ActivityError as exc:
        return exc.message


async def test_time_stands_still_while_an_activity_runs_in_real_time() -> None:
    async def takes(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return f"took {seconds}s"

    async with WorkflowEnvironment(
        workflows=[races_a_timer], activities=[slow], fakes={"slow": takes}, start_time=START
    ) as env:
        handle = await env.client.start_workflow(races_a_timer, 0.1)
        assert await handle.result(timeout=10) == "took 0.1s"  # the minute's timer never due
        assert env.now() == START
        # Its start-to-close timeout is real time: 0.2 s of it, not of the frozen clock.
        handle = await env.client.start_workflow(races_a_timer, 5)
        with Stopwatch() as real:
            out = await handle.result(timeout=10)
        assert "start_to_close_timeout of 0.2s" in out
        assert real.seconds < 2


def source() -> str:
    return Path(__file__).read_text(encoding="utf-8")


@workflow.defn
async def reads_a_file() -> str:
    await workflow.sleep(timedelta(days=1))
    return source()  # I/O in workflow code: its task fails, every time


async def test_a_failing_workflow_task_does_not_race_time_through_its_retries() -> None:
    async with WorkflowEnvironment(workflows=[reads_a_file], start_time=START) as env:
        handle = await env.client.start_workflow(reads_a_file)
        with pytest.raises(TimeoutError):
            await handle.result(timeout=0.5)
        record = await handle.describe()
        assert "WorkflowSandboxError" in (record.task_error or "")
        assert env.now() == START + timedelta(days=1)  # the timer; no retry after


# -- bad input -------------------------------------------------------------------------------


def test_bad_input_is_refused_clearly() -> None:
    with pytest.raises(InvalidArgument, match=r"no activity named 'chrage'.*'charge', 'tax'"):
        WorkflowEnvironment(workflows=[order], activities=[tax, charge], fakes={"chrage": str})
    with pytest.raises(InvalidArgument, match="fake of activity 'charge' must be a function"):
        WorkflowEnvironment(activities=[charge], fakes={"charge": 42})  # type: ignore[dict-item]
    with pytest.raises(InvalidArgument, match=r"fake of activity 'charge' cannot take .*amount"):
        WorkflowEnvironment(activities=[charge], fakes={"charge": lambda: None})
    with pytest.raises(InvalidArgument, match="fakes must map activity names"):
        WorkflowEnvironment(activities=[charge], fakes=[charge])  # type: ignore[arg-type]
    with pytest.raises(tapeflow.NotADefinition, match="print is not a activity definition"):
        WorkflowEnvironment(activities=[print])
    with pytest.raises(InvalidArgument, match="start_time must be a tz-aware datetime"):
        WorkflowEnvironment(workflows=[order], start_time=datetime(2025, 1, 1))
    with pytest.raises(InvalidArgument, match="activity_executor='process'"):
        WorkflowEnvironment(
            activities=[charge],
            fakes={"charge": lambda amount: Receipt(amount, "fake")},
            worker_options=tapeflow.WorkerOptions(activity_executor="process"),
        )
    with pytest.raises(InvalidArgument, match="worker_options must be a WorkerOptions"):
        WorkflowEnvironment(workflows=[order], worker_options={"poll_interval": 1})  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="needs at least one workflow or activity"):
        WorkflowEnvironment()


async def test_sleep_and_entering_are_refused_outside_one_run() -> None:
    env = WorkflowEnvironment(workflows=[wakes_up_twice])
    with pytest.raises(InvalidArgument, match="this environment is new: sleep inside"):
        await env.sleep(1)
    async with env:
        with pytest.raises(InvalidArgument, match="sleep duration must be a non-negative"):
            await env.sleep(timedelta(seconds=-1))
        with pytest.raises(InvalidArgument, match="sleep duration must be"):
            await env.sleep("1h")  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument, match="sleep duration must be"):
            await env.sleep(timedelta(days=365_000))
    with pytest.raises(InvalidArgument, match="this environment is closed"):
        await env.sleep(1)
    with pytest.raises(InvalidArgument, match="runs once: make a new one"):
        async with env:
            pass


# -- the pytest fixture ----------------------------------------------------------------------


async def test_the_fixture_gives_running_environments_closed_after_the_test(
    workflow_environment: EnvironmentFactory,
) -> None:
    env = await workflow_environment(workflows=[wakes_up_twice], start_time=START)
    other = await workflow_environment(workflows=[waits_for_approval])
    handle = await env.client.start_workflow(wakes_up_twice)
    assert len(await handle.result(timeout=10)) == 2
    assert env.now() == START + timedelta(hours=1)
    assert other.backend is not env.backend  # each its own database and clock
