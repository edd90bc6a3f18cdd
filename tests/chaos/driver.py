"""The chaos driver: worker processes killed and replaced, failpoints, outages; then checks.

A run starts ``workers`` worker processes (``tests.chaos.worker``) and one client process
(``tests.chaos.client``), feeds the client ``start`` and ``event`` commands at a steady rate,
and meanwhile:

- every few seconds SIGKILLs a random worker and starts a replacement;
- runs half of the workers with a hard-exit failpoint (``exit`` or ``exit-after``, at a low
  probability), a different one for each worker started, in turn; the client likewise, with
  the client-side failpoints. Whatever dies is restarted;
- after every death, notes the tasks the dead worker held (its lease owner is
  ``chaos-<pid>``) and times how long until another worker takes each over;
- four times a second lists the tasks ready to be claimed and unclaimed, and keeps the
  longest any of them has waited (``inspector.ReadyWatch``);
- sends each workflow's "late" events around the time it completes, each of which, if
  accepted, must be in its history; one workflow in 50 is poisoned (its activity calls
  ``sys.exit``), and no worker may die of it;
- cancels one workflow in ten mid-flight and terminates a few (``workload.cancelled``,
  ``workload.terminated``), some of them during the cleanup their cancel began, and some
  parents (their open children go with them) and relays (mid-way through their runs);
- sends each relay (a workflow that continues as new) its events one after the other, a
  random 0-0.8 s apart: some come while a run waits, some early enough to be carried over;
- runs the outages it is given (a PostgreSQL restart, killed connections) and times how long
  the workers take to commit again once the database is back.

A command the client could not confirm (it died, or the database was away) is sent again;
an event only after checking it did not arrive (a resend would deliver it twice: events
carry no idempotency key). A cancel or terminate is simply sent again, but a refusal after
an unconfirmed try is looked up: the try may have landed and ended the workflow. At the
end every invariant of ``checks.check_run`` is checked; if any fails, the runs and
histories of the workflows named go into ``histories.json`` in the log folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import tapeflow
from tapeflow.backends.failpoints import ENABLE_VARIABLE, ENV_VARIABLE
from tests.chaos.checks import Answers, Outcome, check_run, percentile
from tests.chaos.inspector import Held, Inspector, ReadyWatch, Waiting, WorkflowRow, owned_by
from tests.chaos.ledger import Ledger
from tests.chaos.worker import owner_name
from tests.chaos.workload import (
    LATE_EVENTS,
    RELAY_EVENTS,
    cancelled,
    expectations,
    kind,
    relay_send_id,
    terminated,
    workflow_id,
)

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")

FAILPOINT_EXIT = 86
WORKER_FAILPOINTS = (
    "claim=exit@0.01",
    "claim=exit-after@0.01",
    "commit_workflow_task=exit@0.005",
    "commit_workflow_task=exit-after@0.005",
    "timer_fired=exit@0.05",
    "timer_fired=exit-after@0.05",
    "complete_activity=exit@0.005",
    "complete_activity=exit-after@0.005",
)
"""A hard exit at every worker-side failpoint, before and after the write, one per worker
started, in turn. The probabilities are set so each kills its worker every few seconds."""
CLIENT_FAILPOINTS = (
    "start_workflow=exit@0.01",
    "start_workflow=exit-after@0.01",
    "request_cancel=exit-after@0.1",
    "impose_ending=exit-after@0.25",
    "send_event=exit@0.01",
    "send_event=exit-after@0.01",
    "request_cancel=exit@0.1",
    "impose_ending=exit@0.25",
)
"""Likewise for the client, a cancel or terminate (one workflow in ten, in thirty) at a
higher probability; the writes that end in an ambiguous answer (``exit-after``) come first."""


def environment(spec: str) -> dict[str, str]:
    """A child process's environment: with the failpoints ``spec`` (opted in), or none."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for variable in (ENV_VARIABLE, ENABLE_VARIABLE):
        env.pop(variable, None)
    if spec:
        env.update({ENV_VARIABLE: spec, ENABLE_VARIABLE: "1"})
    return env


@dataclass
class Plan:
    url: str
    workflows: int
    rate: float
    """Workflow starts per second (their events follow, each after ``event_delay``)."""
    log_dir: Path
    workers: int = 4
    kill_every: tuple[float, float] | None = (2.0, 5.0)
    """SIGKILL a random worker every so many seconds (uniform), or never."""
    max_kills: int | None = None
    worker_failpoints: Sequence[str] = WORKER_FAILPOINTS
    client_failpoints: Sequence[str] = CLIENT_FAILPOINTS
    event_delay: tuple[float, float] = (0.3, 3.0)
    relay_gap: tuple[float, float] = (0.0, 0.8)
    """Between a relay's events: some come while a run waits, some early (carried over)."""
    late_delay: tuple[float, float] = (0.0, 1.0)
    """After its event, when each late event is sent: while the workflow completes."""
    stop_delay: tuple[float, float] = (0.1, 2.5)
    """After its start, when a workflow is cancelled or terminated: mid-flight, mostly (at
    an activity, its timer or its wait for the event), and now and then after its end."""
    parent_stop_delay: tuple[float, float] = (0.05, 1.0)
    """Likewise for a parent, which ends sooner: mostly while its children run."""
    terminate_after_cancel: tuple[float, float] = (0.0, 0.3)
    """After its cancel, when a workflow both cancelled and terminated is terminated: during
    its cleanup, or before it starts, or after the cancel ended it."""
    lease: float = 2.0
    poll: float = 0.15
    finish_timeout: float = 300.0
    outages: Sequence[Outage] = ()
    seed: int = 5

    @property
    def stuck_bound(self) -> float:
        """No ready task may wait longer: lease + poll + 2 s."""
        return self.lease + self.poll + 2.0


@dataclass
class Disruption:
    """What an outage did: when the database went away and came back (Unix times), whether
    ready tasks may wait longer from ``down`` until 10 s after ``back``, and its own figures."""

    down: float
    back: float
    excused: bool = True
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass
class Outage:
    """Something done to the database ``at`` seconds into the run; ``act`` returns once the
    database is back (or the damage is done)."""

    name: str
    at: float
    act: Callable[[Probe], Awaitable[Disruption]]


@dataclass
class Death:
    pid: int
    slot: int
    failpoints: str
    code: int | None
    at: float
    killed: bool
    held: list[Held] = field(default_factory=list)
    takeover: float | None = None
    """Seconds from the death until the last task it held was taken over by another worker."""
    released: int = 0
    """Held tasks whose write landed after all (sent before the kill): not taken over."""


class Probe:
    """An Inspector on a thread of its own (SQLite connections stay on their thread)."""

    def __init__(self, url: str) -> None:
        self.inspector = Inspector(url)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="chaos-probe")

    async def run(self, call: Callable[[Inspector], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, call, self.inspector)

    async def until_reachable(self, timeout: float = 120.0) -> float:
        """Wait until a query works; returns the time it first did."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                await self.run(lambda i: i.ping())
                return time.time()
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.run(lambda i: i.close())
        self._thread.shutdown(wait=False)


# -- worker processes ---------------------------------------------------------------------------


@dataclass
class WorkerProcess:
    slot: int
    process: asyncio.subprocess.Process
    failpoints: str
    started: float
    ready: Path
    """Created by the worker once SIGTERM stops it cleanly (before, it would just die)."""
    killed_at: float | None = None


class Fleet:
    """``plan.workers`` worker processes, each replaced as soon as it dies (while running).

    Odd slots run with a failpoint (the next of ``plan.worker_failpoints`` at each start);
    slots 0-1 keep a workflow cache, slots 2-3 replay every task."""

    def __init__(self, plan: Plan, url: str, on_death: Callable[[Death], None]) -> None:
        self.plan = plan
        self.url = url
        self.on_death = on_death
        self.live: dict[int, WorkerProcess] = {}
        self.deaths: list[Death] = []
        self.started: list[tuple[int, str]] = []
        self._failpoints = itertools.cycle(plan.worker_failpoints or [""])
        self._running = False
        self._watchers: set[asyncio.Task[None]] = set()
        self._random = random.Random(plan.seed)

    async def start(self) -> None:
        self._running = True
        for slot in range(self.plan.workers):
            await self._spawn(slot)

    async def _spawn(self, slot: int) -> None:
        failpoints = next(self._failpoints) if slot % 2 and self.plan.worker_failpoints else ""
        env = environment(failpoints)
        log = await asyncio.to_thread((self.plan.log_dir / f"worker-slot{slot}.log").open, "ab")
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.chaos.worker",
                self.url,
                "--cache",
                "1000" if slot < 2 else "0",
                "--lease",
                str(self.plan.lease),
                "--poll",
                str(self.plan.poll),
                "--ready",
                str(self._ready_file(slot, len(self.started))),
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=log,
            )
        finally:
            log.close()
        worker = WorkerProcess(
            slot, process, failpoints, time.time(), self._ready_file(slot, len(self.started))
        )
        self.live[process.pid] = worker
        self.started.append((process.pid, failpoints))
        watcher = asyncio.create_task(self._watch(worker))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    async def _watch(self, worker: WorkerProcess) -> None:
        code = await worker.process.wait()
        now = time.time()
        self.live.pop(worker.process.pid, None)
        if not self._running:
            return
        death = Death(
            pid=worker.process.pid,
            slot=worker.slot,
            failpoints=worker.failpoints,
            code=code,
            at=worker.killed_at or now,
            killed=worker.killed_at is not None,
        )
        self.deaths.append(death)
        self.on_death(death)
        await self._spawn(worker.slot)

    def _ready_file(self, slot: int, number: int) -> Path:
        return self.plan.log_dir / f"ready-{slot}-{number}"

    def kill_random(self) -> int | None:
        candidates = [w for w in self.live.values() if w.killed_at is None]
        if not candidates:
            return None
        victim = self._random.choice(candidates)
        victim.killed_at = time.time()
        victim.process.send_signal(signal.SIGKILL)
        return victim.process.pid

    async def stop(self) -> dict[int, tuple[str, int | None]]:
        """SIGTERM every worker; their exit codes (0 is a clean stop)."""
        self._running = False
        workers = list(self.live.values())
        deadline = time.monotonic() + 60
        for worker in workers:  # one just started may not handle SIGTERM yet: wait for it
            while not worker.ready.exists() and time.monotonic() < deadline:
                if worker.process.returncode is not None:
                    break
                await asyncio.sleep(0.05)
        for worker in workers:
            with contextlib.suppress(ProcessLookupError):
                worker.process.send_signal(signal.SIGTERM)
        codes: dict[int, tuple[str, int | None]] = {}
        for worker in workers:
            try:
                code = await asyncio.wait_for(worker.process.wait(), 30)
            except TimeoutError:
                worker.process.kill()
                code = None
            codes[worker.process.pid] = (worker.failpoints, code)
        for watcher in list(self._watchers):
            watcher.cancel()
        return codes

    def pids(self) -> list[int]:
        return list(self.live)


# -- the client process ---------------------------------------------------------------------------


class ClientProcess:
    """``tests.chaos.client``, answering one command per line; restarted when it dies."""

    def __init__(self, plan: Plan, url: str) -> None:
        self.plan = plan
        self.url = url
        self.process: asyncio.subprocess.Process | None = None
        self.failpoints = ""
        self._configs = itertools.cycle(plan.client_failpoints or [""])
        self.deaths: list[tuple[str, int | None]] = []

    async def start(self) -> None:
        self.failpoints = next(self._configs)
        env = environment(self.failpoints)
        log = await asyncio.to_thread((self.plan.log_dir / "client.log").open, "ab")
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.chaos.client",
                self.url,
                cwd=ROOT,
                env=env,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
            )
        finally:
            log.close()
        ready = await self._read(120)
        if ready != "ready":
            raise RuntimeError(f"the chaos client did not start: {ready!r}")

    async def _read(self, timeout: float) -> str | None:
        assert self.process is not None
        assert self.process.stdout is not None
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        except TimeoutError:
            self.process.kill()
            return None
        return line.decode().strip() if line else None

    async def call(self, command: str) -> str | None:
        """The answer, or None if the process died (it is then restarted)."""
        assert self.process is not None
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(command.encode() + b"\n")
            await self.process.stdin.drain()
            answer = await self._read(120)
        except (BrokenPipeError, ConnectionResetError):
            answer = None
        if answer is None:
            code = await self.process.wait()
            self.deaths.append((self.failpoints, code))
            await self.start()
        return answer

    async def stop(self) -> None:
        if self.process is None:
            return
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 30)
        except TimeoutError:
            self.process.kill()


@dataclass
class Command:
    due: float
    kind: str
    """``start``, ``event``, ``late``, ``relay``, ``cancel`` or ``terminate``."""
    index: int
    number: int = 0
    """Which of the workflow's late events, or of a relay's events."""


class Feeder:
    """Sends the commands at their times through the client, each until it is confirmed.

    A command that takes long (the database away, the client dead) shifts the rest of the
    schedule by that long, so the rate after an outage is the planned one, not a burst."""

    def __init__(self, plan: Plan, client: ClientProcess, probe: Probe) -> None:
        self.plan = plan
        self.client = client
        self.probe = probe
        self.answers = Answers()
        self.late_refused = 0
        self.errors: list[str] = []
        self.resends = 0
        self.started = 0
        chance = random.Random(plan.seed)
        self.commands: list[Command] = []
        for index in range(plan.workflows):
            due = index / plan.rate
            self.commands.append(Command(due, "start", index))
            event_due = due + chance.uniform(*plan.event_delay)
            if kind(index) == "relay":  # its events only, in order, across its runs
                relay_due = due
                for number in range(RELAY_EVENTS):
                    relay_due += chance.uniform(*plan.relay_gap)
                    self.commands.append(Command(relay_due, "relay", index, number))
            elif kind(index) != "parent":  # a parent's children get theirs from it
                self.commands.append(Command(event_due, "event", index))
            for number in range(LATE_EVENTS if kind(index) != "relay" else 0):
                late_due = event_due + chance.uniform(*plan.late_delay)
                self.commands.append(Command(late_due, "late", index, number))
            stop_due = due + chance.uniform(
                *(plan.parent_stop_delay if kind(index) == "parent" else plan.stop_delay)
            )
            if cancelled(index):
                self.commands.append(Command(stop_due, "cancel", index))
                stop_due += chance.uniform(*plan.terminate_after_cancel)
            if terminated(index):
                self.commands.append(Command(stop_due, "terminate", index))
        self.commands.sort(key=lambda c: (c.due, c.kind != "start"))

    async def run(self) -> None:
        began = time.monotonic()
        shift = 0.0
        for command in self.commands:
            wait = began + shift + command.due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            sent = time.monotonic()
            await self._confirm(command)
            took = time.monotonic() - sent
            if took > 0.5:  # a failure (the database away, the client dead): no catching up
                shift += took

    async def _confirm(self, command: Command) -> None:
        """Send until confirmed."""
        wid = workflow_id(command.index)
        for attempt in itertools.count(1):
            if command.kind == "start":
                answer = await self.client.call(f"start {command.index}")
                if answer in ("ok", "exists"):
                    self.started += 1
                    return
            elif command.kind == "event":
                send_id = f"s{command.index}x{attempt}e"
                self.answers.sends.setdefault(wid, set()).add(send_id)
                answer = await self.client.call(f"event {command.index} {send_id}")
                if answer == "ok":
                    return
                if answer == "finished":  # the checks say whether it may be (stopped)
                    self.answers.refused.add(wid)
                    return
                # Unconfirmed: did it arrive all the same (committed, then the sender died or
                # the connection dropped)? Then it must not be sent again.
                if await self._delivered(wid, send_id):
                    return
            elif command.kind == "relay":
                send_id = relay_send_id(command.index, command.number)
                answer = await self.client.call(f"event {command.index} {send_id}")
                # The same send id for every try: it is sent again only once known lost.
                if answer in ("ok", "finished") or await self._delivered(wid, send_id):
                    self.answers.relayed.setdefault(wid, []).append((send_id, answer != "finished"))
                    return
            elif command.kind == "late":
                send_id = f"s{command.index}x{attempt}l{command.number}"
                answer = await self.client.call(f"late {command.index} {send_id}")
                if answer == "finished":
                    self.late_refused += 1
                    return
                if answer == "ok" or await self._delivered(wid, send_id):
                    self.answers.late.setdefault(wid, set()).add(send_id)
                    return
            else:
                reason = f"{command.kind}-{command.index}"  # the same for every try
                answer = await self.client.call(f"{command.kind} {command.index} {reason}")
                if answer in ("ok", "finished"):
                    asked = (
                        self.answers.cancels
                        if command.kind == "cancel"
                        else self.answers.terminates
                    )
                    asked[wid] = answer == "ok" or (
                        attempt > 1 and await self._delivered(wid, reason)
                    )
                    return
            if answer is not None and answer.startswith("error"):
                self.errors.append(f"{command.kind} {wid}: {answer}")
                return
            self.resends += 1
            if answer is not None:  # the database is away: wait a little
                await asyncio.sleep(0.2)

    async def _delivered(self, wid: str, send_id: str) -> bool:
        while True:
            try:
                return await self.probe.run(lambda i: i.event_delivered(wid, send_id))
            except Exception:
                await asyncio.sleep(0.2)


# -- the run -------------------------------------------------------------------------------------


@dataclass
class Report:
    name: str
    figures: dict[str, Any] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"== {self.name}"]
        for key, value in self.figures.items():
            shown = f"{value:.3f}" if isinstance(value, float) else str(value)
            lines.append(f"  {key}: {shown}")
        if self.violations:
            lines.append(f"  VIOLATIONS ({len(self.violations)}):")
            lines.extend(f"    {v}" for v in self.violations[:30])
        return "\n".join(lines)

    def save(self) -> None:
        """Into $TAPEFLOW_CHAOS_REPORT_DIR, if set, as ``<name>.json``."""
        folder = os.environ.get("TAPEFLOW_CHAOS_REPORT_DIR")
        if not folder:
            return
        Path(folder).mkdir(parents=True, exist_ok=True)
        body = {"name": self.name, "figures": self.figures, "violations": self.violations}
        (Path(folder) / f"{self.name}.json").write_text(json.dumps(body, indent=1, default=str))


class ChaosRun:
    def __init__(self, name: str, plan: Plan) -> None:
        self.name = name
        self.plan = plan
        self.probe = Probe(plan.url)
        self.tracker = Probe(plan.url)
        self.ledger = Ledger(plan.url)
        self.fleet = Fleet(plan, plan.url, self._on_death)
        self.client = ClientProcess(plan, plan.url)
        self.feeder = Feeder(plan, self.client, Probe(plan.url))
        self.samples: list[tuple[float, Waiting]] = []
        self.ready_watch = ReadyWatch()
        self.load: list[float] = []
        self.long_waits: list[str] = []
        self.kills = 0
        self.violations: list[str] = []
        self.figures: dict[str, Any] = {}
        self.outage_windows: list[tuple[float, float]] = []
        self.resume_checks: list[tuple[str, float, list[int]]] = []
        self._trackers: set[asyncio.Task[None]] = set()
        self._done = asyncio.Event()

    # -- deaths and takeovers ---------------------------------------------------------------

    def _on_death(self, death: Death) -> None:
        expected_code = -signal.SIGKILL if death.killed else FAILPOINT_EXIT
        if death.code != expected_code or (not death.killed and not death.failpoints):
            self.violations.append(
                f"worker {death.pid} ({death.failpoints or 'no failpoint'}) exited with "
                f"{death.code} (killed: {death.killed})"
            )
        task = asyncio.create_task(self._track_takeover(death))
        self._trackers.add(task)
        task.add_done_callback(self._trackers.discard)

    async def _track_takeover(self, death: Death) -> None:
        owner = owner_name(death.pid)
        try:
            death.held = await self.tracker.run(lambda i: i.held_by(owner))
        except Exception as exc:
            self.violations.append(f"could not read what {owner} held: {exc}")
            return
        pending = {(h.kind, h.id): h for h in death.held}
        longest = None
        deadline = time.time() + 120
        while pending and time.time() < deadline:
            await asyncio.sleep(0.05)
            try:
                now_leases = await self.tracker.run(
                    partial(Inspector.leases, held=[*pending.values()])
                )
            except Exception:
                continue  # the database is away (a restart run): look again
            seen = time.time()
            for key, item in list(pending.items()):
                lease = now_leases.get(key)
                if lease is None or (not owned_by(lease[0], owner) and lease[1] == item.token):
                    death.released += 1  # its write landed after the kill, or it is gone
                    del pending[key]
                elif lease[1] != item.token:
                    longest = max(longest or 0.0, seen - death.at)
                    del pending[key]
        if pending:
            self.violations.append(
                f"{len(pending)} task(s) held by {owner} not taken over within 120 s: "
                f"{sorted(pending)[:5]}"
            )
        death.takeover = longest

    # -- background loops --------------------------------------------------------------------

    async def _monitor(self) -> None:
        while not self._done.is_set():
            try:
                at, ready = await self.probe.run(lambda i: i.ready_tasks())
                waiting = self.ready_watch.sample(at, ready)
                self.samples.append((at, waiting))
                self.load.append(os.getloadavg()[0])
                if waiting.seconds > self.plan.stuck_bound and len(self.long_waits) < 20:
                    state = await self.probe.run(
                        partial(Inspector.describe_task, kind=waiting.kind, task_id=waiting.id)
                    )
                    self.long_waits.append(
                        f"{time.time():.3f} {waiting} load={os.getloadavg()[0]:.1f} "
                        f"live={self.fleet.pids()} {state}"
                    )
            except Exception:
                pass  # the database is away
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._done.wait(), 0.25)

    async def _killer(self) -> None:
        if self.plan.kill_every is None:
            return
        chance = random.Random(self.plan.seed + 1)
        while not self._done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._done.wait(), chance.uniform(*self.plan.kill_every))
            if self._done.is_set():
                return
            if self.plan.max_kills is not None and self.kills >= self.plan.max_kills:
                return
            if self.fleet.kill_random() is not None:
                self.kills += 1

    async def _outages(self, began: float) -> None:
        for outage in self.plan.outages:
            wait = began + outage.at - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
            progress_before = await self.probe.run(lambda i: i.progress())
            pids = self.fleet.pids()
            disruption = await outage.act(self.probe)
            back = disruption.back
            if disruption.excused:
                self.outage_windows.append((disruption.down, back))
            # Resumed: the first commit of any worker once the database is back.
            resumed = None
            while time.time() < back + 60:
                try:
                    progress = await self.probe.run(lambda i: i.progress())
                except Exception:
                    progress = progress_before
                if progress > progress_before:
                    resumed = time.time()
                    break
                await asyncio.sleep(0.05)
            prefix = f"outage_{outage.name}"
            self.figures[f"{prefix}_down_s"] = back - disruption.down
            self.figures[f"{prefix}_first_commit_after_back_s"] = (
                None if resumed is None else max(0.0, resumed - back)
            )
            self.figures.update({f"{prefix}_{k}": v for k, v in disruption.figures.items()})
            self.resume_checks.append((outage.name, back, pids))
            if resumed is None or resumed - back > 10:
                self.violations.append(f"{outage.name}: no commit within 10 s of the database back")

    # -- the whole run ------------------------------------------------------------------------

    async def run(self) -> Report:
        plan = self.plan
        plan.log_dir.mkdir(parents=True, exist_ok=True)
        async with tapeflow.connect(plan.url):  # the schema, before any process looks
            pass
        await asyncio.to_thread(self.ledger.create)
        began = time.time()
        await self.fleet.start()
        await self.client.start()
        background = [
            asyncio.create_task(self._monitor()),
            asyncio.create_task(self._killer()),
        ]
        outages = asyncio.create_task(self._outages(began))
        try:
            await self.feeder.run()
            fed = time.time()
            deadline = time.monotonic() + plan.finish_timeout
            while True:
                try:
                    finished, still_open = await self.probe.run(
                        lambda i: (i.finished_count(), i.open_count())
                    )
                except Exception:
                    finished, still_open = -1, -1
                if finished == plan.workflows and still_open == 0:
                    break
                if time.monotonic() > deadline:
                    self.violations.append(
                        f"only {finished} of {plan.workflows} workflows finished "
                        f"{plan.finish_timeout:.0f}s after the last start"
                    )
                    break
                await asyncio.sleep(0.25)
            ended = time.time()
            await outages
        finally:
            self._done.set()
            for task in background:
                with contextlib.suppress(Exception):
                    await task
            if not outages.done():
                outages.cancel()
            await self.client.stop()
            stopped = await self.fleet.stop()
        if self._trackers:
            await asyncio.wait(list(self._trackers), timeout=150)
        for pid, (failpoints, code) in stopped.items():
            if code != 0 and not (failpoints and code == FAILPOINT_EXIT):
                self.violations.append(f"worker {pid} ({failpoints}) stopped with exit code {code}")
        await self._check(began, fed, ended)
        return Report(self.name, self.figures, self.violations)

    async def _check(self, began: float, fed: float, ended: float) -> None:
        plan = self.plan
        ids = expectations(range(plan.workflows))

        def read(i: Inspector) -> tuple[Any, Any, Any]:
            return i.workflows(), i.history(), i.leftovers()

        workflows, history_rows, leftovers = await self.probe.run(read)
        attempts = await asyncio.to_thread(self.ledger.attempts)
        outcome: Outcome = await asyncio.to_thread(
            check_run,
            ids,
            workflows,
            history_rows,
            attempts,
            self.feeder.answers,
            leftovers,
        )
        self.violations.extend(self.feeder.errors)
        self.violations.extend(outcome.violations)
        if outcome.violations:
            await asyncio.to_thread(
                dump_histories, plan.log_dir, outcome.violations, workflows, history_rows
            )

        # No ready task waited longer than lease + poll + 2 s (outside outages and the 10 s
        # the workers are allowed to resume in).
        excused = [(down, back + 10) for down, back in self.outage_windows]
        counted = [(at, w) for at, w in self.samples if not any(a <= at <= b for a, b in excused)]
        worst_at, worst = max(
            counted, key=lambda s: s[1].seconds, default=(0.0, Waiting(0, "", ""))
        )
        if worst.seconds > plan.stuck_bound:
            self.violations.append(
                f"a ready {worst.kind} task ({worst.id}) waited {worst.seconds:.2f}s "
                f"> {plan.stuck_bound:.2f}s (lease + poll + 2 s), {worst_at - began:.1f}s in"
            )

        # Every worker that lived through an outage ran activities again within 10 s of the
        # database's return (its first side effect after it, from the ledger).
        for name, back, pids in self.resume_checks:
            firsts = {
                pid: min((a.at for a in attempts if a.pid == pid and a.at > back), default=None)
                for pid in pids
            }
            late = {pid: None if at is None else at - back for pid, at in firsts.items()}
            resumes = [v for v in late.values() if v is not None]
            self.figures[f"outage_{name}_worker_resume_max_s"] = max(resumes, default=None)
            if len(resumes) != len(pids) or max(resumes, default=0.0) > 10:
                self.violations.append(f"{name}: a worker did not resume within 10 s: {late}")

        kills = [d for d in self.fleet.deaths if d.killed]
        exits = [d for d in self.fleet.deaths if not d.killed]
        takeovers = [d.takeover for d in kills if d.takeover is not None]
        exit_takeovers = [d.takeover for d in exits if d.takeover is not None]
        by_failpoint: dict[str, int] = {}
        for death in exits:
            by_failpoint[death.failpoints] = by_failpoint.get(death.failpoints, 0) + 1
        for failpoints, _code in self.client.deaths:
            by_failpoint[failpoints] = by_failpoint.get(failpoints, 0) + 1
        self.figures.update(
            backend=self.ledger.location.kind,
            worker_processes=plan.workers,
            lease_s=plan.lease,
            poll_s=plan.poll,
            start_rate_per_s=plan.rate,
            duration_s=ended - began,
            feeding_s=fed - began,
        )
        self.figures.update(outcome.figures)
        self.figures.update(
            sigkills=len(kills),
            failpoint_exits_workers=len(exits),
            failpoint_exits_client=len(self.client.deaths),
            failpoint_exits_by_point=by_failpoint,
            worker_processes_started=len(self.fleet.started),
            failpoint_configs_run=sorted({fp for _, fp in self.fleet.started if fp}),
            tasks_held_by_killed_workers=sum(len(d.held) for d in kills),
            tasks_held_by_dead_workers=sum(len(d.held) for d in self.fleet.deaths),
            kill_to_takeover_max_s=max(takeovers, default=0.0),
            kill_to_takeover_p50_s=percentile(takeovers, 0.5),
            failpoint_exit_to_takeover_max_s=max(exit_takeovers, default=0.0),
            ready_wait_max_s=worst.seconds,
            ready_wait_bound_s=plan.stuck_bound,
            ready_wait_samples=len(counted),
            client_resends=self.feeder.resends,
            late_events_refused_as_finished=self.feeder.late_refused,
            load_average_mean=sum(self.load) / len(self.load) if self.load else 0.0,
            load_average_max=max(self.load, default=0.0),
            cpus=os.cpu_count(),
        )
        if self.long_waits:
            self.figures["long_waits"] = self.long_waits

    async def close(self) -> None:
        for probe in (self.probe, self.tracker, self.feeder.probe):
            await probe.close()
        await asyncio.to_thread(self.ledger.close)


def dump_histories(
    folder: Path,
    violations: Sequence[str],
    workflows: dict[str, list[WorkflowRow]],
    history_rows: dict[str, list[tuple[int, str]]],
) -> None:
    """The runs and histories of the workflows the violations name (and of their
    children), into ``histories.json``, to look into once the tables are gone."""
    named = {wid for wid in workflows if any(f"{wid}:" in v or f"{wid} " in v for v in violations)}
    named |= {wid for wid, runs in workflows.items() if runs[0].parent_id in named}
    body = {
        wid: [
            {
                **asdict(row),
                "history": [json.loads(text) for _, text in history_rows.get(row.run_id, [])],
            }
            for row in workflows[wid]
        ]
        for wid in sorted(named)
    }
    (folder / "histories.json").write_text(json.dumps(body, indent=1, default=str))
    print(f"histories of {len(body)} workflows in {folder / 'histories.json'}", file=sys.stderr)


async def run_chaos(name: str, plan: Plan) -> Report:
    run = ChaosRun(name, plan)
    try:
        report = await run.run()
    finally:
        await run.close()
    report.save()
    return report
