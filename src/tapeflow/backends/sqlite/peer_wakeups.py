"""Wake-ups between processes that share one SQLite file: a Unix datagram socket each.

Every open backend on a file binds a socket in ``<database>.wake/``. After its commits it
sends the topics they woke (``tapeflow.backends.wakeups``) to every other socket there, one
datagram for all the commits of one turn of the event loop, so that the other processes'
watchers look again at once instead of at their next poll.

Delivery is best effort, and that is all it needs to be: a send never blocks and never
fails a commit (a peer's full queue drops the datagram; a dead peer's socket is removed),
and watchers keep polling at their interval as before (``wakes_other_processes`` stays
False), so a lost datagram costs what every commit of another process cost before.

The directory is looked at at every send: a peer that bound its socket before the look hears
of the commit, and one that bound it after looks at the database after the commit. The
look is a ``stat`` of the directory; it is listed again only when its time of change moved
or is too recent to tell (``SETTLED_NS``). No peers, no sends. Every peer is on this
machine: WAL, which the backend uses, does not work across machines on a network file
system.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

log = logging.getLogger("tapeflow.sqlite")

MAX_DATAGRAM = 2048
"""Bytes of topics per datagram: macOS refuses larger Unix datagrams by default."""

LOOK_AGAIN = b"*"
"""Sent for a topic too long for a datagram, or received undecodable: every watcher of the
peer looks again."""

SETTLED_NS = 2_000_000_000
"""A directory's time of change is kept coarsely (a clock tick; 1 or 2 s on some file
systems), so a change in the same tick as the last leaves it as it was: a listing is kept
only if made this long after the change it saw (git's "racy" index entries)."""

SOCKET_PATH_MAX = 103
"""Bytes of a socket's path (``sun_path``: 108 on Linux, 104 on macOS, with its NUL). A
directory deeper than that is reached through ``/proc/self/fd`` where there is one."""

SUFFIX = ".sock"
RECEIVE_AT_ONCE = 256
"""Datagrams read per readiness callback, so that a flood cannot hold the event loop."""


def supported() -> bool:
    """Unix datagram sockets and ``loop.add_reader``: not on Windows."""
    return sys.platform != "win32" and hasattr(socket, "AF_UNIX")


def wake_directory(database: str) -> Path:
    return Path(f"{database}.wake")


def datagrams(topics: list[str]) -> Iterator[bytes]:
    """JSON lists of the topics, each at most ``MAX_DATAGRAM`` bytes."""
    whole = json.dumps(topics).encode()
    if len(whole) <= MAX_DATAGRAM:  # as a commit's few topics are
        yield whole
        return
    chunk: list[str] = []
    size = 2
    for topic in topics:
        encoded = len(json.dumps(topic).encode()) + 2  # and ", "
        if encoded + 2 > MAX_DATAGRAM:
            yield LOOK_AGAIN
            continue
        if size + encoded > MAX_DATAGRAM:
            yield json.dumps(chunk).encode()
            chunk, size = [], 2
        chunk.append(topic)
        size += encoded
    if chunk:
        yield json.dumps(chunk).encode()


def topics_of(datagram: bytes) -> list[str] | None:
    """The topics a datagram names; None to wake everyone."""
    try:
        topics = json.loads(datagram)
    except ValueError:
        return None
    if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
        return None
    return topics


class PeerWakeups:
    """This backend's socket: it hears other processes' commits and tells them of its own."""

    def __init__(
        self, database: str, hear: Callable[[list[str]], None], hear_all: Callable[[], None]
    ) -> None:
        self.directory = wake_directory(database)
        self._hear = hear
        self._hear_all = hear_all
        self._sock: socket.socket | None = None
        self._name: str | None = None
        self._base = str(self.directory)
        """The directory as socket addresses name it: itself, or ``/proc/self/fd/N``."""
        self._dir_fd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._told: set[str] = set()
        self._sending: asyncio.Handle | None = None
        self._peers: list[str] = []
        self._listed: int | None = None
        """The directory's time of change when ``_peers`` was listed, if settled then."""

    def open(self) -> None:
        """Bind and listen; where that cannot be (no Unix datagrams, an unwritable directory,
        a path too long for a socket and no ``/proc``), stay off: watchers poll, as without
        it (logged at INFO: nothing is wrong, it is only slower)."""
        if not supported():
            log.debug("no Unix datagram sockets here: other processes' commits seen by polling")
            return
        loop = asyncio.get_running_loop()
        try:
            sock, name = self._bind()
        except OSError as exc:
            self._close_directory()
            log.info(
                "cannot make a wake-up socket in %s (%s): other processes' commits are seen "
                "at the poll interval",
                self.directory,
                exc,
            )
            return
        try:
            loop.add_reader(sock.fileno(), self._receive)
        except NotImplementedError:  # an event loop without add_reader
            sock.close()
            os.unlink(os.path.join(self.directory, name))
            self._close_directory()
            log.debug("this event loop cannot watch sockets: other processes' commits polled")
            return
        self._sock, self._name, self._loop = sock, name, loop

    def _bind(self) -> tuple[socket.socket, str]:
        retries = 2  # a peer closing may remove the empty directory before the bind
        while True:
            self.directory.mkdir(mode=0o700, exist_ok=True)
            name = f"{os.getpid()}-{secrets.token_hex(4)}{SUFFIX}"
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                sock.bind(self._address(name))
            except FileNotFoundError:
                sock.close()
                self._close_directory()  # it may hold the directory that was removed
                if retries == 0:
                    raise
                retries -= 1
                continue
            except BaseException:
                sock.close()
                raise
            return sock, name

    def _address(self, name: str) -> str:
        """A socket's address in the directory: short enough for ``sun_path``, or OSError."""
        path = os.path.join(self.directory, name)
        if len(os.fsencode(path)) <= SOCKET_PATH_MAX:
            return path
        if self._dir_fd is None and os.path.isdir("/proc/self/fd"):  # Linux
            self._dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
            self._base = f"/proc/self/fd/{self._dir_fd}"
        if self._dir_fd is None:
            raise OSError(f"the path {path!r} is too long for a socket")
        return os.path.join(self._base, name)

    def close(self) -> None:
        if self._sock is None:
            return
        if self._sending is not None:
            self._sending.cancel()
            self._send()  # the last commits' wake-ups still go out
        assert self._loop is not None
        assert self._name is not None
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.directory, self._name))
        self._close_directory()
        with contextlib.suppress(OSError):  # not empty: other peers are open
            self.directory.rmdir()
        self._sock = self._name = self._loop = None

    def _close_directory(self) -> None:
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd, self._base = None, str(self.directory)

    def tell(self, topics: Iterable[str]) -> None:
        """Wake ``topics`` in every other process, once this turn of the loop is over (with
        the topics of every other commit of the turn)."""
        if self._loop is None:
            return
        self._told.update(topics)
        if self._told and self._sending is None:
            self._sending = self._loop.call_soon(self._send)

    def _send(self) -> None:
        self._sending = None
        topics, self._told = self._told, set()
        assert self._sock is not None
        try:
            peers = self._look()
        except OSError:
            return
        if not peers:
            return
        payloads = list(datagrams(sorted(topics)))
        for path in peers:
            for payload in payloads:
                try:
                    self._sock.sendto(payload, path)
                except BlockingIOError:  # its queue is full: it polls, or is busy anyway
                    break
                except ConnectionRefusedError:  # nothing is bound there: its process ended
                    with contextlib.suppress(OSError):
                        os.unlink(path)
                    break
                except OSError:  # gone since the listing, or not ours to write to
                    break

    def _look(self) -> list[str]:
        """The addresses of the other sockets in the directory."""
        now = time.time_ns()
        changed = os.stat(self.directory).st_mtime_ns
        if changed != self._listed:
            self._peers = [
                os.path.join(self._base, name)
                for name in os.listdir(self.directory)
                if name.endswith(SUFFIX) and name != self._name
            ]
            self._listed = changed if now - changed > SETTLED_NS else None
        return self._peers

    def _receive(self) -> None:
        assert self._sock is not None
        heard: set[str] = set()
        everyone = False
        for _ in range(RECEIVE_AT_ONCE):
            try:
                datagram = self._sock.recv(MAX_DATAGRAM + 1)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                everyone = True
                break
            topics = topics_of(datagram)
            if topics is None:
                everyone = True
            else:
                heard.update(topics)
        if everyone:
            self._hear_all()
        elif heard:
            self._hear(sorted(heard))
