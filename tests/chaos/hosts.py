"""Hosts for the many-hosts run: worker processes in network namespaces of their own, each
reaching the one PostgreSQL over a veth pair, as workers on other machines would.

Host N is the network namespace ``tapeflow-hN``, joined to this one by a veth pair: the
namespace's end is 10.77.N.2/24, this end 10.77.N.1/24. PostgreSQL listens on 127.0.0.1
only, and is not reconfigured: a forwarder (``tests.chaos.forwarder``) listens on every
10.77.N.1 and relays to it, so a worker's every query crosses its host's link. A host's
workers run under ``unshare --pid --fork --uts --mount-proc`` inside the namespace: a pid
namespace of their own (pids repeat from host to host), a host name of their own (the
``tapeflow-hN`` the workers report), a /proc that shows only them, and a /tmp and /dev/shm
of their own. They share no file with each other: no ready file, no lock, no socket path;
the test learns they run from the database (the workers' presence rows) and reads only their
output.

Everything needs root (``ip netns``, ``unshare``); ``unavailable()`` says why not, for a
skip. ``network()`` removes what a crashed run left (namespaces, links, processes in them)
before it makes the namespaces, and removes them again afterwards, even on failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import pairwise
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import tapeflow
from tapeflow.backends.presence import WorkerPresence

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "tapeflow-h"
LINK_PREFIX = "tfh"
PORT = 15432
"""The forwarder's port on every 10.77.N.1."""
WORKER_MODULE = "tests.chaos.worker"
FORWARDER_MODULE = "tests.chaos.forwarder"


@dataclass(frozen=True)
class Host:
    number: int

    @property
    def name(self) -> str:
        """The network namespace, and the host name its workers report."""
        return f"{PREFIX}{self.number}"

    @property
    def link(self) -> str:
        """This end of the veth pair (the other is ``<link>ns``, in the namespace)."""
        return f"{LINK_PREFIX}{self.number}"

    @property
    def gateway(self) -> str:
        """This end's address, where the forwarder listens for the host's workers."""
        return f"10.77.{self.number}.1"

    @property
    def address(self) -> str:
        return f"10.77.{self.number}.2"

    def url(self, url: str) -> str:
        """``url`` (a PostgreSQL URL on this side) as the host's workers reach it: through
        the forwarder at the host's gateway."""
        parts = urlsplit(url)
        credentials, _, _ = parts.netloc.rpartition("@")
        netloc = f"{credentials}@" if credentials else ""
        return urlunsplit(parts._replace(netloc=f"{netloc}{self.gateway}:{PORT}"))


def unavailable() -> str | None:
    """Why hosts cannot be made here (a reason to skip), or None."""
    if sys.platform != "linux":
        return "network namespaces are Linux's"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    missing = [tool for tool in ("ip", "unshare") if shutil.which(tool) is None]
    return f"missing {', '.join(missing)}" if missing else None


def _run(*argv: str, check: bool = True) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and done.returncode:
        raise RuntimeError(f"{shlex.join(argv)} failed: {done.stderr.strip()}")
    return done.stdout


def namespace_pids(name: str) -> list[int]:
    """Every process in the network namespace ``name``, as this pid namespace numbers them."""
    return [int(p) for p in _run("ip", "netns", "pids", name, check=False).split()]


def _running(module: str) -> list[int]:
    """The processes running ``python -m module``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                if any(a == b"-m" and b == module.encode() for a, b in pairwise(argv)):
                    found.append(int(entry.name))
    return found


def _forwarders() -> list[int]:
    return [pid for pid in _running(FORWARDER_MODULE) if pid != os.getpid()]


def remove_leftovers() -> None:
    """Kill the processes of every ``tapeflow-h*`` namespace and any forwarder, delete the
    namespaces and their links: what this run made, or a crashed one left."""
    names = [line.split()[0] for line in _run("ip", "netns", "list").splitlines() if line]
    for name in names:
        if not name.startswith(PREFIX):
            continue
        for pid in namespace_pids(name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _run("ip", "netns", "delete", name, check=False)
    for pid in _forwarders():  # one a killed run left listening
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for link in re.findall(rf"^\d+: ({LINK_PREFIX}\d+)[@:]", _run("ip", "-o", "link"), re.M):
        _run("ip", "link", "delete", link, check=False)


def _make(host: Host) -> None:
    inside = ("ip", "netns", "exec", host.name, "ip")
    _run("ip", "netns", "add", host.name)
    _run("ip", "link", "add", host.link, "type", "veth", "peer", "name", f"{host.link}ns")
    _run("ip", "link", "set", f"{host.link}ns", "netns", host.name)
    _run("ip", "address", "add", f"{host.gateway}/24", "dev", host.link)
    _run("ip", "link", "set", host.link, "up")
    _run(*inside, "address", "add", f"{host.address}/24", "dev", f"{host.link}ns")
    _run(*inside, "link", "set", f"{host.link}ns", "up")
    _run(*inside, "link", "set", "lo", "up")


@contextlib.contextmanager
def network(count: int) -> Iterator[list[Host]]:
    """``count`` hosts, removed afterwards (and any left by an earlier run, first)."""
    remove_leftovers()
    hosts = [Host(number) for number in range(1, count + 1)]
    try:
        for host in hosts:
            _make(host)
        yield hosts
    finally:
        remove_leftovers()


@contextlib.asynccontextmanager
async def forwarder(target: str, hosts: Sequence[Host], log: Path) -> AsyncIterator[None]:
    """The forwarder from every host's gateway to ``target`` (``HOST:PORT``), while inside."""
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            FORWARDER_MODULE,
            target,
            *(f"{host.gateway}:{PORT}" for host in hosts),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=out,
        )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        if line.strip() != b"ready":
            raise RuntimeError(f"the forwarder did not start (see {log})")
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()


FAKETIME_LIBRARIES = (
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
)


def faketime_library() -> str | None:
    """libfaketime (Debian's ``faketime`` package), preloaded without its ``faketime``
    wrapper: the wrapper keeps a semaphore named by its pid in /dev/shm, which two hosts'
    pid namespaces, numbering from 1 each, would both claim. (Not with
    FAKETIME_DONT_FAKE_MONOTONIC=1: libfaketime 0.9.10 then fails Python's ``time.sleep``,
    a monotonic ``clock_nanosleep``, with EINVAL.)"""
    return next((path for path in FAKETIME_LIBRARIES if Path(path).exists()), None)


@dataclass
class HostProcess:
    """A host's worker processes: ``workers`` of ``tests.chaos.worker``, named
    ``hN-wI``, in one pid namespace inside the host's network namespace. ``clock`` is a
    libfaketime offset (``+2h``) for their wall clock, or None."""

    host: Host
    url: str
    """The database as the host reaches it (``Host.url``)."""
    workers: int
    log: Path
    worker_args: Sequence[str] = ()
    clock: str | None = None
    process: asyncio.subprocess.Process | None = None
    killed_at: float | None = None
    names: list[str] = field(default_factory=list)

    def _script(self) -> str:
        lines = [f"hostname {shlex.quote(self.host.name)}"]
        # A /tmp and a /dev/shm of the host's own (its mount namespace's: unshare makes the
        # mounts private), so not even a library's scratch file is shared with another host.
        lines += [f"mount -t tmpfs tapeflow-{self.host.name} {d}" for d in ("/tmp", "/dev/shm")]
        prefix: list[str] = []
        if self.clock is not None:  # a skewed wall clock (monotonic time moves with it)
            library = faketime_library()
            assert library is not None, "libfaketime is not installed"
            prefix = ["env", f"LD_PRELOAD={library}", f"FAKETIME={self.clock}"]
        for number in range(self.workers):
            name = f"h{self.host.number}-w{number}"
            self.names.append(name)
            argv = [*prefix, sys.executable, "-m", WORKER_MODULE, self.url, "--name", name]
            lines.append(f"{shlex.join([*argv, *self.worker_args])} &")
        lines.append("wait")
        return "\n".join(lines)

    async def start(self) -> None:
        self.names = []
        argv = ["ip", "netns", "exec", self.host.name]
        argv += ["unshare", "--pid", "--fork", "--uts", "--mount-proc", "sh", "-c", self._script()]
        with self.log.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                stdout=out,
                stderr=out,
                start_new_session=True,  # its own process group: killed as one
            )

    def worker_pids(self) -> list[int]:
        """The worker processes (this pid namespace's numbers), found by their namespace."""
        found = []
        for pid in namespace_pids(self.host.name):
            with contextlib.suppress(OSError):
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if any(a == b"-m" and b == WORKER_MODULE.encode() for a, b in pairwise(argv)):
                    found.append(pid)  # not the shell nor unshare, whose script names it
        return found

    async def kill(self) -> list[int]:
        """SIGKILL every process of the host at once (its process group: the pid namespace's
        init and every worker); returns once none is left. The pids killed."""
        assert self.process is not None
        pids = self.worker_pids()
        self.killed_at = time.time()
        os.killpg(self.process.pid, signal.SIGKILL)
        await self.process.wait()
        deadline = time.monotonic() + 10
        while namespace_pids(self.host.name):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.host.name} still has {namespace_pids(self.host.name)}")
            await asyncio.sleep(0.05)
        return pids

    async def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM each worker (each stops cleanly), then wait for the host to end; SIGKILL
        it if it has not in ``timeout``. The host's exit code (0: every worker stopped
        cleanly), or None if it had to be killed."""
        if self.process is None or self.process.returncode is not None:
            return None if self.process is None else self.process.returncode
        for pid in self.worker_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            await self.process.wait()
            return None


class LocalProcess(HostProcess):
    """The baseline: one worker process on this side, in no namespace, reaching the
    database directly (``url`` as given, no forwarder)."""

    async def start(self) -> None:
        self.names = [f"local-w{number}" for number in range(self.workers)]
        assert self.workers == 1, "one local worker process"
        argv = [sys.executable, "-m", WORKER_MODULE, self.url, "--name", self.names[0]]
        with self.log.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                *argv, *self.worker_args, cwd=ROOT, stdout=out, stderr=out
            )

    def worker_pids(self) -> list[int]:
        running = self.process is not None and self.process.returncode is None
        return [self.process.pid] if running and self.process is not None else []


async def wait_running(
    url: str, hosts: Sequence[HostProcess], timeout: float = 60.0
) -> dict[str, list[int]]:
    """Until every worker of ``hosts`` has reported itself, in the database. The pids the
    workers reported, by the host name they reported (each in its host's pid namespace)."""
    wanted = {name for h in hosts for name in h.names}
    async with tapeflow.connect(url) as backend:
        assert isinstance(backend, WorkerPresence)
        deadline = time.monotonic() + timeout
        while True:
            running = [
                w for w in await backend.list_workers(timedelta(minutes=1)) if w.state == "running"
            ]
            seen = {w.info.name for w in running}
            if wanted <= seen:
                pids: dict[str, list[int]] = {}
                for w in running:
                    if w.info.name in wanted:
                        pids.setdefault(w.info.host, []).append(w.info.pid)
                return {host: sorted(found) for host, found in sorted(pids.items())}
            for h in hosts:
                if h.process is not None and h.process.returncode is not None:
                    raise RuntimeError(f"{h.host.name} ended with {h.process.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"workers not running after {timeout}s: {wanted - seen}")
            await asyncio.sleep(0.2)
