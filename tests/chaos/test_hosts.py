"""Many hosts (marker ``hosts``; ``./scripts/test tests/chaos/test_hosts.py -m hosts -s``, as
root): workers on three "hosts", each a network namespace of its own with its own veth
address, pid namespace, host name, /tmp and /dev/shm, reaching one PostgreSQL over the
network (``tests.chaos.hosts``). Nothing is shared between the hosts but the database: no
file, no pid space, no clock (where libfaketime is installed, host 3 runs two hours ahead).

``test_a_host_killed_mid_run``: 400 workflows of the chaos workload (ten activities, a
timer and an event each; one in nine a parent of two or three children) started from this
side, 8 a second, on three hosts of two worker processes each; every worker process of
host 1 SIGKILLed at once mid-run, not restarted; hosts 2 and 3 finish everything, and every
invariant of ``tests.chaos.checks`` holds.

``test_throughput_by_hosts``: a benchmark, not an assertion: the same backlog of workflows
run by one worker process on this side (direct, the baseline), then by 1, 2 and 3 hosts of
one worker process each; the figures are printed (see docs/scaling.md, "Many hosts").
$TAPEFLOW_HOSTS_WORKFLOWS resizes both.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pytest

import tapeflow
from tapeflow.history import (
    HistoryEvent,
    TimerFired,
    TimerStarted,
    WorkflowTaskStarted,
    decode_event,
)
from tests.chaos.checks import Answers, check_run, percentile
from tests.chaos.conftest import drop_schemas
from tests.chaos.driver import Probe
from tests.chaos.hosts import (
    Host,
    HostProcess,
    LocalProcess,
    faketime_library,
    forwarder,
    network,
    unavailable,
    wait_running,
)
from tests.chaos.inspector import Inspector, ReadyWatch, owned_by
from tests.chaos.ledger import Ledger
from tests.chaos.location import locate
from tests.chaos.workload import (
    EVENT_NAME,
    Go,
    cancelled,
    event_value,
    expectations,
    kind,
    start_args,
    terminated,
    workflow_for,
    workflow_id,
)
from tests.conformance.plugin import unavailable as lacking
from tests.conftest import POSTGRES_URL

pytestmark = pytest.mark.hosts

WORKFLOWS = int(os.environ.get("TAPEFLOW_HOSTS_WORKFLOWS", "400"))
RATE = 8.0
"""Starts per second in the kill run."""
LEASE, POLL = 2.0, 0.15
WORKER_ARGS = ("--lease", str(LEASE), "--poll", str(POLL), "--cache", "1000")
POOL, ACTIVITIES = 3, 4
"""Pooled connections and activities at once per worker in the kill run (tapeflow's
defaults: 10 and 8): with a ledger connection per activity thread, at most 7 connections per
worker, 42 for the six, on a PostgreSQL (max_connections 100) that other test runs share."""
SKEW = os.environ.get("TAPEFLOW_HOSTS_SKEW", "+2h")
"""Host 3's wall clock, where libfaketime is installed: two hours ahead of the others
($TAPEFLOW_HOSTS_SKEW sets another libfaketime offset; empty: no skew)."""


def plain_or_parent(count: int) -> list[int]:
    """The first ``count`` workload indices that run to completion: plain workflows (their
    event sent by this test) and parents (their children's events sent by them); no poisoned
    one, no relay, none cancelled or terminated."""
    found: list[int] = []
    index = 0
    while len(found) < count:
        if kind(index) in ("flow", "parent") and not cancelled(index) and not terminated(index):
            found.append(index)
        index += 1
    return found


def target() -> str:
    parts = locate(POSTGRES_URL).conninfo.split("@")[-1].split("/")[0]
    return parts if ":" in parts else f"{parts}:5432"


@pytest.fixture
def hosts(postgres_reachable: bool) -> Iterator[list[Host]]:
    reason = unavailable()
    if reason:
        lacking("network namespaces", reason)  # under CI=true a failure, as for PostgreSQL
    if not postgres_reachable:
        lacking("postgres", f"unreachable at {POSTGRES_URL}")
    with network(3) as made:
        yield made


def schema_url(name: str) -> str:
    separator = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{separator}schema={name}&application_name=tapeflow-{name}"


async def prepare(url: str) -> Ledger:
    async with tapeflow.connect(url):  # the schema, before any host looks
        pass
    ledger = Ledger(url)
    await asyncio.to_thread(ledger.create)
    return ledger


async def start(client: tapeflow.Client, index: int, answers: Answers) -> None:
    """Start one workflow and, unless it is a parent, send its event: this side's client is
    in-process and never dies, so each call is answered."""
    await client.start_workflow(workflow_for(index), *start_args(index), id=workflow_id(index))
    if kind(index) == "flow":
        send_id = f"s{index}"
        answers.sends[workflow_id(index)] = {send_id}
        go = Go(send_id=send_id, value=event_value(index))
        await client.send_event(workflow_id(index), EVENT_NAME, go)


def timer_violations(history_rows: dict[str, list[tuple[int, str]]]) -> tuple[list[str], int]:
    """Timers on the database's clock: each due its duration after the task that started it
    began (workflow time is the claim's ``claimed_at``, the database's ``now()``), and fired
    in a task that began no earlier. A worker reading its own (skewed) clock would be off by
    hours. Returns the violations and the timers checked."""
    violations: list[str] = []
    checked = 0
    for run_id, rows in history_rows.items():
        events: list[HistoryEvent] = [decode_event(text) for _, text in rows]
        task_at = None
        due: dict[int, Any] = {}
        for event in events:
            if isinstance(event, WorkflowTaskStarted):
                task_at = event.at
            elif isinstance(event, TimerStarted) and task_at is not None:
                due[event.seq] = event.fire_at
                ahead = (event.fire_at - task_at).total_seconds()
                if not 0.15 <= ahead <= 2.0:  # timer_ms: 0.2-0.6 s, plus the task's run
                    violations.append(f"run {run_id}: timer {event.seq} due {ahead:.3f}s ahead")
                checked += 1
            elif isinstance(event, TimerFired):
                fired_in = next(
                    (
                        e.at
                        for e in events[events.index(event) :]
                        if isinstance(e, WorkflowTaskStarted)
                    ),
                    None,
                )
                if fired_in is not None and fired_in < due[event.seq]:
                    violations.append(f"run {run_id}: timer {event.seq} fired early")
    return violations, checked


async def track_takeover(probe: Probe, names: Sequence[str], killed_at: float) -> dict[str, Any]:
    """What host 1's workers held when killed, and when the last of it was taken over."""
    held = []
    for name in names:
        held.extend(await probe.run(partial(Inspector.held_by, owner=name)))
    pending = {(h.kind, h.id): h for h in held}
    longest = 0.0
    deadline = time.time() + 60
    while pending and time.time() < deadline:
        leases = await probe.run(lambda i: i.leases(list(pending.values())))
        for key, item in list(pending.items()):
            lease = leases.get(key)
            if lease is None or not any(owned_by(lease[0], n) for n in names):
                if lease is not None or item.kind == "workflow":
                    longest = max(longest, time.time() - killed_at)
                del pending[key]
        await asyncio.sleep(0.05)
    return {"held": len(held), "not_taken_over": len(pending), "takeover_max_s": longest}


@pytest.mark.timeout(900)
async def kill_when_busy(probe: Probe, host: HostProcess, began: float) -> dict[str, Any]:
    """SIGKILL every process of ``host`` as soon as its workers hold a lease (within 10 s),
    then track the takeover of what they held."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        held = [await probe.run(partial(Inspector.held_by, owner=n)) for n in host.names]
        if any(held):
            break
        await asyncio.sleep(0.02)
    killed = await host.kill()
    assert host.killed_at is not None
    figures = {"host_1_processes_killed": len(killed), "killed_at_s": host.killed_at - began}
    return {**figures, **await track_takeover(probe, host.names, host.killed_at)}


async def test_a_host_killed_mid_run(hosts: list[Host], tmp_path: Path) -> None:
    schema = f"hosts_{uuid.uuid4().hex[:12]}"
    url = schema_url(schema)
    skew = SKEW if SKEW and faketime_library() else None
    indices = plain_or_parent(WORKFLOWS)
    answers = Answers()
    ledger = await prepare(url)
    probe = Probe(url)
    fleet = [
        HostProcess(
            host,
            host.url(f"{url}&pool_max_size={POOL}"),
            workers=2,
            log=tmp_path / f"{host.name}.log",
            worker_args=(*WORKER_ARGS, "--activities", str(ACTIVITIES)),
            clock=skew if host.number == 3 else None,
        )
        for host in hosts
    ]
    samples: list[float] = []
    watch = ReadyWatch()
    done = asyncio.Event()

    async def monitor() -> None:  # no ready task waits longer than lease + poll + 2 s
        while not done.is_set():
            with contextlib.suppress(Exception):
                at, ready = await probe.run(lambda i: i.ready_tasks())
                samples.append(watch.sample(at, ready).seconds)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 0.25)

    figures: dict[str, Any] = {"workflows": len(indices), "host_3_clock": skew or "true"}
    try:
        async with forwarder(target(), hosts, tmp_path / "forwarder.log"):
            for host in fleet:
                await host.start()
            pids = await wait_running(url, fleet)
            figures["worker_pids_by_host"] = pids
            watching = asyncio.create_task(monitor())
            began = time.time()
            takeover: asyncio.Task[dict[str, Any]] | None = None
            async with tapeflow.connect(url) as backend:
                client = tapeflow.Client(backend)
                for number, index in enumerate(indices):
                    await asyncio.sleep(max(0.0, began + number / RATE - time.time()))
                    await start(client, index, answers)
                    if number == len(indices) * 2 // 5:  # mid-run: host 1 goes, for good
                        takeover = asyncio.create_task(kill_when_busy(probe, fleet[0], began))
                fed = time.time()
                inspector = Inspector(url)
                try:
                    deadline = time.monotonic() + 300
                    while await asyncio.to_thread(inspector.open_count) or (
                        await asyncio.to_thread(inspector.finished_count) < len(indices)
                    ):
                        assert time.monotonic() < deadline, "not every workflow finished"
                        await asyncio.sleep(0.25)
                finally:
                    inspector.close()
                ended = time.time()
            done.set()
            await watching
            assert takeover is not None
            figures.update(await takeover)
            codes = [await host.stop() for host in fleet[1:]]
        assert fleet[0].process is not None
        assert fleet[0].process.returncode is not None
        assert fleet[0].process.returncode < 0
        assert codes == [0, 0], f"hosts 2 and 3 stopped with {codes}"

        def read(i: Inspector) -> tuple[Any, Any, Any]:
            return i.workflows(), i.history(), i.leftovers()

        workflows, history_rows, leftovers = await probe.run(read)
        attempts = await asyncio.to_thread(ledger.attempts)
        outcome = check_run(
            expectations(indices), workflows, history_rows, attempts, answers, leftovers
        )
        timers, timers_checked = timer_violations(history_rows)
        figures.update(outcome.figures)
        if skew:  # the ledger's times are each host's own: across hosts they do not compare
            for key in [k for k in figures if k.startswith("completion_to_next_task")]:
                del figures[key]
        figures.update(
            timers_checked=timers_checked,
            feeding_s=fed - began,
            duration_s=ended - began,
            ready_wait_max_s=max(samples, default=0.0),
            ready_wait_p99_s=percentile(samples, 0.99),
            ready_wait_bound_s=LEASE + POLL + 2.0,
        )
        print("\n== a host killed mid-run")
        for key, value in figures.items():
            print(f"  {key}: {value:.3f}" if isinstance(value, float) else f"  {key}: {value}")
        violations = [*outcome.violations, *timers]
        assert not violations, "\n".join(violations[:30])
        assert figures["workflows_completed"] == len(indices)
        assert figures["host_1_processes_killed"] == 2
        # Each host numbers its own processes: the same pids on every host, and it matters not.
        assert len({tuple(found) for found in pids.values()}) == 1, pids
        assert figures["held"] >= 1
        assert figures["not_taken_over"] == 0
        # Re-executions: what host 1 held when killed, and a few leases lost under load.
        assert figures["duplicate_executions"] <= figures["held"] + len(indices) // 50
        assert figures["ready_wait_max_s"] <= LEASE + POLL + 2.0
        assert timers_checked >= len(indices) // 2
    finally:
        done.set()
        for host in fleet:
            await host.stop(timeout=10)
        await probe.close()
        await asyncio.to_thread(ledger.close)
        if not os.environ.get("TAPEFLOW_CHAOS_KEEP"):
            drop_schemas(schema)


async def measure(
    hosts: Sequence[Host], count: int, workflows: int, log_dir: Path
) -> tuple[float, float]:
    """Workflows completed per second by ``count`` hosts of one worker process each (0: one
    worker process on this side, reaching the database directly), from a backlog of
    ``workflows`` plain ones (started, and sent their events, before any worker runs), timed
    from when every worker runs until the last one completes; and the load average then."""
    schema = f"hosts_bench_{uuid.uuid4().hex[:12]}"
    url = schema_url(schema)
    ledger = await prepare(url)
    fleet = [
        HostProcess(host, host.url(url), 1, log_dir / f"bench{count}-{host.name}.log", WORKER_ARGS)
        for host in hosts[:count]
    ] or [LocalProcess(hosts[0], url, 1, log_dir / "bench-local.log", WORKER_ARGS)]
    indices = [i for i in range(workflows * 2) if kind(i) == "flow" and not cancelled(i)]
    inspector = Inspector(url)
    try:
        async with tapeflow.connect(url) as backend:
            client = tapeflow.Client(backend)
            for index in indices[:workflows]:
                await start(client, index, Answers())
        for host in fleet:
            await host.start()
        await wait_running(url, fleet)
        began = time.monotonic()
        while await asyncio.to_thread(inspector.finished_count) < workflows:
            assert time.monotonic() - began < 600, "the backlog did not drain"
            await asyncio.sleep(0.1)
        took = time.monotonic() - began
        codes = [await host.stop() for host in fleet]
        assert codes == [0] * len(fleet), codes
        return workflows / took, os.getloadavg()[0]
    finally:
        for host in fleet:
            await host.stop(timeout=10)
        inspector.close()
        await asyncio.to_thread(ledger.close)
        drop_schemas(schema)


@pytest.mark.timeout(1800)
async def test_throughput_by_hosts(hosts: list[Host], tmp_path: Path) -> None:
    workflows = int(os.environ.get("TAPEFLOW_HOSTS_WORKFLOWS", "300"))
    rates: dict[int, tuple[float, float]] = {}
    async with forwarder(target(), hosts, tmp_path / "forwarder.log"):
        for count in (0, 1, 2, 3):
            rates[count] = await measure(hosts, count, workflows, tmp_path)
    print(f"\n== throughput by hosts ({workflows} workflows, {os.cpu_count()} cores)")
    for count, (rate, load) in rates.items():
        where = f"{count} host(s), 1 worker process each" if count else "no namespace, direct"
        print(f"  {where}: {rate:.1f} workflows/s (load average {load:.1f})")
    assert all(rate > 0 for rate, _ in rates.values())
