"""CPU time of the processes taking part in a measurement, and of the whole machine: on a
shared machine, what everything else took during a run says how far to trust it."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from benchmarks.databases import Database, session_pids


def cpu_seconds(pids: Iterable[int]) -> dict[int, float]:
    """User + system CPU seconds so far of each live process."""
    tick = os.sysconf("SC_CLK_TCK")
    seconds = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        seconds[pid] = (int(fields[11]) + int(fields[12])) / tick
    return seconds


def machine_busy_seconds() -> float:
    """CPU seconds spent by the whole machine (every core, every process) so far."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def postgres_pids(db: Database) -> list[int]:
    return session_pids(db) if db.kind == "postgres" else []


class CpuWatch:
    """CPU seconds, by role, from now until ``stop()``; "others" is the rest of the machine."""

    def __init__(self, roles: dict[str, list[int]]) -> None:
        self._roles = roles
        self._pids = [pid for pids in roles.values() for pid in pids]
        self._before = cpu_seconds(self._pids)
        self._busy = machine_busy_seconds()

    def stop(self, joined: dict[str, list[int]] | None = None) -> dict[str, float]:
        """CPU used since the start; ``joined``: processes (by role) that may have started
        since (a pool's new connections), counted from their start."""
        for role, pids in (joined or {}).items():
            fresh = [pid for pid in pids if pid not in self._pids]
            self._roles[role] = [*self._roles.get(role, []), *fresh]
            self._pids += fresh
        after, busy = cpu_seconds(self._pids), machine_busy_seconds()
        used = {
            role: round(sum(after.get(p, 0.0) - self._before.get(p, 0.0) for p in pids), 2)
            for role, pids in self._roles.items()
        }
        used["others"] = round(busy - self._busy - sum(used.values()), 2)
        return used
