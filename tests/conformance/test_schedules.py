"""Schedules: each due time starts one workflow named by it, whatever the workers do (several,
one killed inside its firing, one SIGKILLed); pause and unpause; catch-up after downtime;
each overlap policy; DST as cron has it; bad specs refused with nothing written.

Workers here are made on the backend itself, not the ``worker`` fixture: its core mode hides
the optional capabilities, schedules among them. Cadences are seconds, so that it is quick.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import tapeflow
from tapeflow import workflow
from tapeflow.backends.presence import WorkerPresence
from tapeflow.schedules import Overlap, ScheduleDescription
from tests.conformance._stored import stored
from tests.conformance.schedule_fleet import DIED, stamp

ROOT = Path(__file__).resolve().parents[2]
SECOND = timedelta(seconds=1)
HOUR = timedelta(hours=1)
NEVER_SOON = "0 0 1 1 *"
"""A cron expression not due during a test: only ``trigger`` starts anything."""
BERLIN = ZoneInfo("Europe/Berlin")


@workflow.defn
async def report(region: str) -> str:
    return f"report {region}"


@workflow.defn
async def held(region: str) -> str:
    """Open until it gets the event ``go``."""
    await workflow.wait_event("go")
    return f"done {region}"


def fast_worker(backend: tapeflow.Backend, *workflows: Callable[..., Any]) -> tapeflow.Worker:
    return tapeflow.Worker(
        backend,
        workflows=list(workflows),
        poll_interval=timedelta(milliseconds=50),
        shutdown_grace=timedelta(seconds=1),
    )


def due_of(workflow_id: str) -> datetime:
    """The due time a schedule's workflow id names."""
    return datetime.fromisoformat(workflow_id.partition("@")[2])


async def started(client: tapeflow.Client, schedule_id: str) -> list[str]:
    """The ids of the workflows the schedule started, by due time."""
    page = await client.list_workflows(id_prefix=f"{schedule_id}@", limit=1000)
    return sorted((summary.id for summary in page.workflows), key=due_of)


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        await asyncio.sleep(0.05)


async def until_started(client: tapeflow.Client, schedule_id: str, count: int) -> list[str]:
    async def enough() -> bool:
        return len(await started(client, schedule_id)) >= count

    await until(enough, timeout=15)
    return await started(client, schedule_id)


def consecutive(ids: list[str], step: timedelta = SECOND) -> bool:
    dues = [due_of(i) for i in ids]
    return all(later - earlier == step for earlier, later in itertools.pairwise(dues))


# -- when a schedule is due ------------------------------------------------------------------


def test_a_daily_half_past_two_in_berlin_across_both_dst_changes() -> None:
    """02:30 does not exist on 29 March 2026 (02:00 CET jumps to 03:00 CEST): cron runs it
    at the jump, 03:00. On 25 October it exists twice: it runs once, at the first."""
    spec = tapeflow.ScheduleSpec(cron="30 2 * * *", timezone="Europe/Berlin")
    spring = spec.fire_times(datetime(2026, 3, 27, 12, 0, tzinfo=BERLIN))
    assert [next(spring) for _ in range(4)] == [
        datetime(2026, 3, 28, 1, 30, tzinfo=UTC),  # 02:30 CET
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC),  # 03:00 CEST: 02:30 was skipped
        datetime(2026, 3, 30, 0, 30, tzinfo=UTC),  # 02:30 CEST
        datetime(2026, 3, 31, 0, 30, tzinfo=UTC),
    ]
    autumn = spec.fire_times(datetime(2026, 10, 24, 12, 0, tzinfo=BERLIN))
    assert [next(autumn) for _ in range(2)] == [
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),  # 02:30 CEST, not again at 02:30 CET
        datetime(2026, 10, 26, 1, 30, tzinfo=UTC),
    ]
    local = next(spec.fire_times(datetime(2026, 3, 28, 12, 0, tzinfo=BERLIN))).astimezone(BERLIN)
    assert (local.day, local.hour, local.minute, local.utcoffset()) == (29, 3, 0, 2 * HOUR)


def test_frequent_cron_and_intervals_keep_real_time_across_dst() -> None:
    """A job whose hour field is ``*`` runs by the clock as it is: the repeated autumn hour
    has its two half hours twice. Intervals are counted from the epoch, time zone aside."""
    half_hourly = tapeflow.ScheduleSpec(cron="*/30 * * * *", timezone="Europe/Berlin")
    times = half_hourly.fire_times(datetime(2026, 10, 25, 0, 0, tzinfo=UTC))  # 02:00 CEST
    assert [next(times) for _ in range(4)] == [
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),  # 02:30 CEST
        datetime(2026, 10, 25, 1, 0, tzinfo=UTC),  # 02:00 CET
        datetime(2026, 10, 25, 1, 30, tzinfo=UTC),  # 02:30 CET
        datetime(2026, 10, 25, 2, 0, tzinfo=UTC),  # 03:00 CET
    ]
    hourly = tapeflow.ScheduleSpec(every=timedelta(hours=1), timezone="Europe/Berlin")
    times = hourly.fire_times(datetime(2026, 3, 28, 23, 30, tzinfo=UTC))  # 00:30 CET
    local = [next(times).astimezone(BERLIN).hour for _ in range(3)]
    assert local == [1, 3, 4]  # 02:00 does not exist that night
    five = tapeflow.ScheduleSpec(every=timedelta(minutes=5))
    assert next(five.fire_times(datetime(2026, 1, 1, 10, 2, 7, tzinfo=UTC))) == datetime(
        2026, 1, 1, 10, 5, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        pytest.param({"cron": "61 * * * *"}, "Bad minute", id="bad-cron"),
        pytest.param({"cron": "0 0 30 2 *"}, "Bad day-of-month", id="cron-never-due"),
        pytest.param({"cron": "@daily", "timezone": "Mars/Olympus"}, "Mars/Olympus", id="zone"),
        pytest.param({"cron": "0 3 * * *", "every": SECOND}, "got both", id="both"),
        pytest.param({}, "got neither", id="neither"),
        pytest.param({"every": SECOND, "overlap": "queue"}, "overlap", id="overlap"),
        pytest.param({"every": timedelta(milliseconds=1)}, "every", id="every-too-short"),
        pytest.param({"every": SECOND, "catchup_window": timedelta(0)}, "catchup", id="window"),
    ],
)
async def test_a_bad_spec_is_refused_at_the_call_and_nothing_is_written(
    backend: tapeflow.Backend, spec: dict[str, Any], says: str
) -> None:
    client = tapeflow.Client(backend)
    with pytest.raises(tapeflow.InvalidArgument, match=says):
        await client.create_schedule("bad", report, "eu", **spec)
    assert await client.list_schedules() == []
    good = await client.create_schedule("good", report, "eu", cron=NEVER_SOON)
    with pytest.raises(tapeflow.InvalidArgument, match=says):
        await good.update(**(spec or {"cron": None}))  # {}: the cron taken away, none given
    assert (await good.describe()).spec == tapeflow.ScheduleSpec(cron=NEVER_SOON)


# -- firing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cadence",
    [
        pytest.param({"every": SECOND}, id="every"),
        pytest.param({"cron": "* * * * * *", "timezone": "Europe/Berlin"}, id="cron-seconds"),
    ],
)
async def test_each_due_time_starts_one_workflow_named_by_it(
    backend: tapeflow.Backend, cadence: dict[str, Any]
) -> None:
    client = tapeflow.Client(backend)
    schedule = await client.create_schedule("tick", report, "eu", **cadence)
    first = (await schedule.describe()).next_fire_times[0]
    async with fast_worker(backend, report):
        ids = await until_started(client, "tick", 3)
        for workflow_id in ids:
            assert await client.get_handle(workflow_id).result(timeout=10) == "report eu"
    assert ids[0] == f"tick@{first.astimezone(UTC).isoformat()}"  # e.g. tick@...T10:00:01+00:00
    assert consecutive(ids)
    for workflow_id in ids:
        record = await client.describe(workflow_id)
        late = record.created_at - due_of(workflow_id)
        assert timedelta(0) <= late < SECOND, f"{workflow_id} started {late} after its due time"
    described = await schedule.describe()
    shown = {run.workflow_id: run.status for run in described.last_runs}
    assert {i: shown[i] for i in ids} == dict.fromkeys(ids, tapeflow.WorkflowStatus.COMPLETED)
    assert described.skipped == 0
    times = described.next_fire_times
    assert len(times) == 5
    assert consecutive([f"tick@{t.isoformat()}" for t in times])


async def test_workers_die_inside_a_firing_and_are_killed_and_each_due_time_starts_once(
    backend_url: str, backend: tapeflow.Backend
) -> None:
    """One worker process dies inside its first firing, its workflows written but not
    committed: nothing of it stays, and the due time is started by the fleet after. Three
    more fire every second in a race, one of them SIGKILLed on the way."""
    client = tapeflow.Client(backend)
    schedule = await client.create_schedule("fleet", stamp, "a", every=SECOND, overlap="allow_all")
    first = (await schedule.describe()).next_fire_times[0]

    async def worker(*extra: str) -> asyncio.subprocess.Process:
        command = ["-m", "tests.conformance.schedule_fleet", backend_url, *extra]
        return await asyncio.create_subprocess_exec(sys.executable, *command, cwd=ROOT)

    doomed = await worker("die-in-firing")
    assert await asyncio.wait_for(doomed.wait(), 30) == DIED
    assert await started(client, "fleet") == []  # its transaction was undone whole
    fleet = [await worker() for _ in range(3)]
    try:
        before = len(await until_started(client, "fleet", 2))
        fleet[0].send_signal(signal.SIGKILL)
        await fleet[0].wait()
        await until_started(client, "fleet", before + 3)
    finally:
        for process in fleet[1:]:
            process.send_signal(signal.SIGTERM)
        codes = [await asyncio.wait_for(p.wait(), 30) for p in fleet[1:]]
    assert codes == [0, 0]
    ids = await started(client, "fleet")
    assert due_of(ids[0]) == first  # the due time the first worker died firing
    assert consecutive(ids)  # none missed, none twice (an id is one workflow)
    described = await schedule.describe()
    assert described.skipped == 0
    recorded = [run.workflow_id for run in described.last_runs]
    assert sorted(recorded, key=due_of) == ids[-len(recorded) :]
    for workflow_id in ids:  # those the killed worker held are finished by the others
        assert await client.get_handle(workflow_id).result(timeout=30) == "stamped a"


async def test_a_schedule_made_in_another_process_wakes_the_sleeping_workers(
    backend_url: str, backend: tapeflow.Backend
) -> None:
    """A worker process idles with nothing due (it would sleep 10 s on PostgreSQL); the
    schedule's creation wakes it (NOTIFY), so even its first due time fires on time. SQLite
    has no wake-ups across processes: a worker there looks again within a second."""
    command = ["-m", "tests.conformance.schedule_fleet", backend_url]
    process = await asyncio.create_subprocess_exec(sys.executable, *command, cwd=ROOT)
    try:

        async def up() -> bool:
            assert isinstance(backend, WorkerPresence)
            workers = await backend.list_workers(timedelta(minutes=1))
            return any(w.state == "running" for w in workers)

        await until(up, timeout=30)
        await asyncio.sleep(0.5)  # its firing loop has looked and gone to sleep
        client = tapeflow.Client(backend)
        await client.create_schedule("woken", stamp, "b", every=SECOND)
        (first,) = await until_started(client, "woken", 1)
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    late = (await client.describe(first)).created_at - due_of(first)
    limit = SECOND if backend_url.startswith("sqlite") else timedelta(milliseconds=200)
    assert late < limit, f"the first due time fired {late} late"


async def test_pause_fires_nothing_and_unpause_goes_on_from_now(
    backend: tapeflow.Backend,
) -> None:
    client = tapeflow.Client(backend)
    schedule = await client.create_schedule("paused", report, "eu", every=SECOND)
    async with fast_worker(backend, report):
        await until_started(client, "paused", 1)
        await schedule.pause()
        paused_at = datetime.now(UTC)
        described = await schedule.describe()
        assert (described.paused, described.next_fire_times) == (True, [])
        count = len(await started(client, "paused"))
        await asyncio.sleep(2.2)
        assert len(await started(client, "paused")) == count
        await schedule.unpause()
        unpaused_at = datetime.now(UTC)
        described = await schedule.describe()
        assert not described.paused
        assert described.next_fire_times[0] > unpaused_at - timedelta(milliseconds=100)
        ids = await until_started(client, "paused", count + 1)
    assert all(not paused_at < due_of(i) < unpaused_at for i in ids)  # none while paused
    assert described.skipped == 0  # due times while paused are not missed ones


async def test_after_downtime_due_times_within_the_window_start_and_older_are_counted(
    backend: tapeflow.Backend,
) -> None:
    client = tapeflow.Client(backend)
    schedule = await client.create_schedule(
        "catchup", report, "eu", every=SECOND, catchup_window=timedelta(seconds=2)
    )
    first = (await schedule.describe()).next_fire_times[0]
    await asyncio.sleep(4.5)  # no worker: about four due times pass
    async with fast_worker(backend, report):
        ids = await until_started(client, "catchup", 2)
    described = await schedule.describe()
    assert consecutive(ids)
    skipped = described.skipped_catchup
    assert skipped >= 1
    assert due_of(ids[0]) == first + skipped * SECOND  # the oldest due times are the skipped
    fired_at = min(run.started_at for run in described.last_runs)
    batch = [run for run in described.last_runs if run.started_at == fired_at]
    assert len(batch) >= 2  # all those within the window, together, though overlap is "skip"
    assert all(timedelta(0) < fired_at - run.due_at <= timedelta(seconds=2) for run in batch)
    assert described.skipped == skipped  # no overlap skips: each run ended at once


async def test_a_schedule_a_worker_cannot_read_is_left_alone_and_the_others_fire(
    backend_url: str, backend: tapeflow.Backend, caplog: pytest.LogCaptureFixture
) -> None:
    """A time zone this machine does not know (another machine's tz data), say: that
    schedule is logged and left to the other workers; the rest fire as ever."""
    client = tapeflow.Client(backend)
    await client.create_schedule("readable", report, "eu", every=SECOND)
    await client.create_schedule("unreadable", report, "us", every=SECOND)
    stored(
        backend_url,
        "UPDATE schedules SET timezone = 'Nowhere/Else' WHERE id = {} RETURNING id",
        "unreadable",
    )
    async with fast_worker(backend, report):
        await until_started(client, "readable", 2)
    assert await started(client, "unreadable") == []
    assert "schedule 'unreadable' cannot be fired by this worker" in caplog.text
    assert "Nowhere/Else" in caplog.text


# -- overlapping runs ------------------------------------------------------------------------


async def overlapping(
    backend: tapeflow.Backend, overlap: Overlap
) -> tuple[tapeflow.Client, tapeflow.ScheduleHandle]:
    client = tapeflow.Client(backend)
    schedule = await client.create_schedule(
        f"overlap-{overlap}", held, "eu", cron=NEVER_SOON, overlap=overlap
    )
    return client, schedule


async def status(client: tapeflow.Client, workflow_id: str) -> tapeflow.WorkflowStatus:
    return (await client.describe(workflow_id)).status


async def test_skip_starts_nothing_while_a_run_is_open(backend: tapeflow.Backend) -> None:
    client, schedule = await overlapping(backend, "skip")
    async with fast_worker(backend, held):
        first = await schedule.trigger()
        assert first is not None
        assert first.id == (await schedule.describe()).last_runs[0].workflow_id
        assert await schedule.trigger() is None
        assert (await schedule.describe()).skipped_overlap == 1
        await first.send_event("go")
        assert await first.result(timeout=10) == "done eu"
        after = await schedule.trigger()
        assert after is not None
        assert await status(client, after.id) in ("pending", "running")


async def test_buffer_one_keeps_one_due_time_for_when_the_run_ends(
    backend: tapeflow.Backend,
) -> None:
    client, schedule = await overlapping(backend, "buffer_one")
    async with fast_worker(backend, held):
        first = await schedule.trigger()
        assert first is not None
        assert await schedule.trigger() is None  # kept
        assert await schedule.trigger() is None  # skipped: one is kept already
        described = await schedule.describe()
        assert described.buffered is not None
        assert described.skipped_overlap == 1
        kept = f"overlap-buffer_one@{described.buffered.astimezone(UTC).isoformat()}"
        assert await started(client, "overlap-buffer_one") == [first.id]
        await first.send_event("go")
        await until_started(client, "overlap-buffer_one", 2)  # the worker saw the run end
    assert await started(client, "overlap-buffer_one") == [first.id, kept]
    assert (await schedule.describe()).buffered is None


async def test_allow_all_starts_beside_open_runs(backend: tapeflow.Backend) -> None:
    _, schedule = await overlapping(backend, "allow_all")
    first, second = await schedule.trigger(), await schedule.trigger()
    assert first is not None
    assert second is not None
    assert first.id != second.id
    open_runs = [run.status for run in (await schedule.describe()).last_runs]
    assert open_runs == [tapeflow.WorkflowStatus.PENDING] * 2


async def test_cancel_other_asks_the_open_run_to_cancel_and_starts(
    backend: tapeflow.Backend,
) -> None:
    _, schedule = await overlapping(backend, "cancel_other")
    async with fast_worker(backend, held):
        first = await schedule.trigger()
        assert first is not None
        second = await schedule.trigger()
        assert second is not None
        with pytest.raises(tapeflow.WorkflowCancelled, match="cancel_other"):
            await first.result(timeout=10)
        await second.send_event("go")
        assert await second.result(timeout=10) == "done eu"
    runs = {run.workflow_id: run.status for run in (await schedule.describe()).last_runs}
    assert runs == {
        first.id: tapeflow.WorkflowStatus.CANCELLED,
        second.id: tapeflow.WorkflowStatus.COMPLETED,
    }


async def test_a_due_time_buffered_by_the_cadence_starts_when_the_run_ends(
    backend: tapeflow.Backend,
) -> None:
    """The firing loop itself: a due time comes while the first run is open and is kept,
    later ones are skipped, and the kept one starts the moment the run ends."""
    client = tapeflow.Client(backend)
    schedule = await client.create_schedule(
        "buffered", held, "eu", every=SECOND, overlap="buffer_one"
    )
    async with fast_worker(backend, held):
        (first,) = await until_started(client, "buffered", 1)

        async def kept_and_one_skipped() -> bool:
            described = await schedule.describe()
            return described.buffered is not None and described.skipped_overlap >= 1

        await until(kept_and_one_skipped)  # just after a due time: the next is ~1 s away
        kept = (await schedule.describe()).buffered
        assert kept is not None
        ended = datetime.now(UTC)
        await client.send_event(first, "go")
        ids = await until_started(client, "buffered", 2)
    assert due_of(ids[1]) == kept
    record = await client.describe(ids[1])
    assert record.created_at - ended < timedelta(milliseconds=500)  # woken by the run's end


# -- the handle ------------------------------------------------------------------------------


async def test_update_trigger_describe_list_and_delete(backend: tapeflow.Backend) -> None:
    client = tapeflow.Client(backend)
    schedule = await client.create_schedule("nightly-report", report, "eu", cron="0 3 * * *")
    with pytest.raises(tapeflow.ScheduleAlreadyExists):
        await client.create_schedule("nightly-report", report, "us", every=SECOND)
    await client.create_schedule("a-first", "report", "asia", every=timedelta(hours=1))
    assert [d.id for d in await client.list_schedules()] == ["a-first", "nightly-report"]

    await schedule.update("us", timezone="Europe/Berlin", overlap="allow_all")
    described = await schedule.describe()
    assert (described.args, described.timezone, described.overlap) == (
        ["us"],
        "Europe/Berlin",
        "allow_all",
    )
    local = [t.astimezone(BERLIN) for t in described.next_fire_times[:2]]
    assert [(t.hour, t.minute) for t in local] == [(3, 0)] * 2
    await schedule.update(every=timedelta(minutes=5))
    assert (await schedule.describe()).spec.cron is None

    found = await client.get_schedule("nightly-report")  # awaiting checks that it exists
    async with fast_worker(backend, report):
        handle = await found.trigger()
        assert handle is not None
        assert await handle.result(timeout=10) == "report us"
    assert handle.id.startswith("nightly-report@")

    await schedule.delete()
    with pytest.raises(tapeflow.ScheduleNotFound):
        await schedule.describe()
    with pytest.raises(tapeflow.ScheduleNotFound):
        await client.get_schedule("nightly-report")
    assert (await client.describe(handle.id)).status == "completed"  # its workflows stay
    again = await client.create_schedule("nightly-report", report, "eu", cron="0 3 * * *")
    assert isinstance(await again.describe(), ScheduleDescription)
