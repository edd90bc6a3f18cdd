"""The conformance suite as a pytest plugin: every backend registered here runs every test.

The suite's tests ask for ``backend_url``, ``backend``, ``client`` and ``worker`` (and, to
branch on them, ``cache_size`` and ``handoffs``); this plugin owns those fixtures and
parametrizes them over a registry of backend factories, so a backend wires in with a few
lines and no test changes. SQLite and PostgreSQL register themselves in
``tests/backends_registry.py``; a third backend (whose URLs ``tapeflow.connect`` opens, say
``myengine://``) does the same in a module the conftest imports::

    import contextlib
    from collections.abc import Iterator
    from pathlib import Path

    from tests.conformance.plugin import BackendFactory, register_backend

    @contextlib.contextmanager
    def myengine_url(tmp_path: Path) -> Iterator[str]:
        name = create_empty_database()          # whatever makes a fresh, empty one
        yield f"myengine://localhost/{name}"
        drop_database(name)

    def myengine_unavailable() -> str | None:  # None when the backend can be tested here
        return None if server_answers() else "no server at localhost"

    register_backend(BackendFactory("myengine", myengine_url, myengine_unavailable))

and the conftest loads the plugin with ``pytest_plugins = ["tests.conformance.plugin"]``
(tests/conftest.py does so for the whole tree). Every test then runs once more, with ids
such as ``[myengine-cache-handoffs]``.

A backend that is unavailable (``available`` gives a reason) has its tests skipped, with the
reason; with CI=true they fail instead: CI must never pass by skipping a backend.

Each test gets a fresh, empty database: ``url`` is called with the test's own ``tmp_path``
and gives a context manager whose value is the database's URL, exited after the test (drop
the database there).

End-to-end tests (those that take ``worker``) run in several worker modes, next to the
backend: the sticky workflow cache on or off (``cache_size``: 1000 or 0), and the hand-off
capability on or off (``handoffs``). Hand-offs off means the worker is given
``core_only(backend)``, which shows it only the members of the core ``Backend`` protocol, so
``isinstance(backend, HandOffs)`` is false and the worker takes the plain path (a test that
checks what the hand-offs did asks for ``handoffs`` and branches on it, as tests do on
``cache_size``). By default the modes are ``cache-handoffs``, ``nocache-handoffs`` and
``cache-core``: each switch off once, with the other on. ``--all-combinations`` (or
``TAPEFLOW_TEST_ALL_COMBINATIONS=1``) adds ``nocache-core``, the full cross product: ~230
end-to-end tests more, which take the suite from about 10 to 12 minutes on 2 cores.
``./scripts/test`` (the README's test command, which CI runs) sets it, so the full cross
product is what must pass; plain ``pytest`` runs the quicker three.
Tests that ask for ``cache_size`` or ``handoffs`` without ``worker`` get each value alone; a
test that parametrizes one of these names itself keeps its own values. Workers that a test
starts in other processes from ``backend_url`` (the lease and fleet tests) are not wrapped:
they always see the backend as it is.
"""

from __future__ import annotations

import os
import typing
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn, Self, cast

import pytest

import tapeflow
from tapeflow.backends import base

__all__ = [
    "ALL_COMBINATIONS_VARIABLE",
    "BackendFactory",
    "BackendRegistry",
    "WorkerFactory",
    "WorkerMode",
    "capability",
    "core_members",
    "core_only",
    "register_backend",
    "registry",
    "worker_modes",
]

WorkerFactory = Callable[..., AbstractAsyncContextManager[tapeflow.Worker]]

ALL_COMBINATIONS_VARIABLE = "TAPEFLOW_TEST_ALL_COMBINATIONS"
CACHE_SIZE = 1000


# -- the registry ----------------------------------------------------------------------------


def _always_available() -> str | None:
    return None


@dataclass(frozen=True)
class BackendFactory:
    """How the suite gets a fresh, empty database of one backend."""

    name: str
    """The backend's part of the test ids: ``[name-cache-handoffs]``."""
    url: Callable[[Path], AbstractContextManager[str]]
    """Given the test's own ``tmp_path``: a context manager whose value is the URL (for
    ``tapeflow.connect``) of a fresh, empty database, cleaned up on exit."""
    available: Callable[[], str | None] = _always_available
    """Why the backend cannot be tested here (a server that does not answer, say), or None
    if it can. Asked once a session, at the first test that needs the backend."""

    def __post_init__(self) -> None:
        if not self.name or not self.name.isidentifier():
            raise ValueError(f"backend name {self.name!r}: a short identifier, e.g. 'sqlite'")


class BackendRegistry:
    """The backends the suite runs on, in registration order."""

    def __init__(self) -> None:
        self._factories: dict[str, BackendFactory] = {}
        self._unavailable: dict[str, str | None] = {}

    def register(self, factory: BackendFactory) -> BackendFactory:
        if factory.name in self._factories:
            raise ValueError(f"a backend named {factory.name!r} is registered already")
        self._factories[factory.name] = factory
        return factory

    @property
    def names(self) -> list[str]:
        return list(self._factories)

    def __getitem__(self, name: str) -> BackendFactory:
        return self._factories[name]

    def unavailable(self, name: str) -> str | None:
        """Why the backend cannot be tested here, or None; asked once and remembered."""
        if name not in self._unavailable:
            self._unavailable[name] = self._factories[name].available()
        return self._unavailable[name]


registry = BackendRegistry()
"""The registry this plugin parametrizes ``backend_url`` from."""


def register_backend(factory: BackendFactory) -> BackendFactory:
    """Run the suite on one more backend (see the module docstring)."""
    return registry.register(factory)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require_available(name: str, reason: str | None) -> None:
    """Skip the test if the backend is unavailable, or fail it under CI=true."""
    if reason is not None:
        unavailable(name, reason)


def unavailable(name: str, reason: str) -> NoReturn:
    """Skip the test for want of ``name``, or fail it under CI=true: CI never skips."""
    if in_ci():
        pytest.fail(f"CI=true but the {name} backend is unavailable: {reason}")
    pytest.skip(f"{name} unavailable: {reason} (CI=true makes this a failure)")


# -- hand-offs off: the core protocol only -----------------------------------------------------

_TYPING_BASES = (object, typing.Protocol, typing.Generic)
_CONTEXT_MANAGER = frozenset({"__aenter__", "__aexit__"})


def core_members(protocol: type[Any] = base.Backend) -> frozenset[str]:
    """The public members of a Protocol class and of the protocols it extends (methods,
    properties, annotated attributes), plus ``__aenter__``/``__aexit__``: read from the class
    itself, so a member added to (or split off) the protocol changes this by itself."""
    if not getattr(protocol, "_is_protocol", False):
        raise TypeError(f"{protocol!r} is not a Protocol class")
    names: set[str] = set()
    for klass in protocol.__mro__:
        if klass in _TYPING_BASES or not getattr(klass, "_is_protocol", False):
            continue
        names.update(vars(klass))
        names.update(vars(klass).get("__annotations__", {}))
    return frozenset(name for name in names if not name.startswith("_")) | _CONTEXT_MANAGER


class _Forward:
    """A member of the core protocol: looked up on the wrapped backend at each access, so
    what a test patches on the backend (``monkeypatch.setattr(backend, ...)``) is seen."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __get__(self, instance: _CoreOnly | None, owner: type[Any] | None = None) -> Any:
        if instance is None:
            return self
        return getattr(instance._inner, self._name)


class _CoreOnly:
    """Base of the ``core_only`` wrappers: the context manager and the wrapped backend."""

    __slots__ = ("_inner",)

    def __init__(self, inner: tapeflow.Backend) -> None:
        self._inner = inner

    async def __aenter__(self) -> Self:
        await self._inner.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._inner.__aexit__(exc_type, exc, tb)

    def __repr__(self) -> str:
        return f"core_only({self._inner!r})"


_wrapper_classes: dict[frozenset[str], type[_CoreOnly]] = {}


def _wrapper_class(members: frozenset[str]) -> type[_CoreOnly]:
    if members not in _wrapper_classes:
        forwards: dict[str, Any] = {n: _Forward(n) for n in sorted(members - _CONTEXT_MANAGER)}
        forwards["__slots__"] = ()
        _wrapper_classes[members] = type("CoreOnlyBackend", (_CoreOnly,), forwards)
    return _wrapper_classes[members]


def core_only(backend: tapeflow.Backend, protocol: type[Any] = base.Backend) -> tapeflow.Backend:
    """``backend`` seen through the core protocol alone: an object with exactly the public
    members of ``protocol`` (real class attributes, so ``isinstance`` against a
    ``runtime_checkable`` protocol sees them even where it does not call ``__getattr__``),
    each forwarded to ``backend``; anything else (an optional capability such as
    ``HandOffs``) raises AttributeError. ``async with`` gives the wrapper, not ``backend``."""
    return cast(tapeflow.Backend, _wrapper_class(core_members(protocol))(backend))


# -- worker modes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerMode:
    cache_size: int
    handoffs: bool

    @property
    def id(self) -> str:
        cache = "cache" if self.cache_size else "nocache"
        return f"{cache}-{'handoffs' if self.handoffs else 'core'}"


DEFAULT_MODES = (WorkerMode(CACHE_SIZE, True), WorkerMode(0, True), WorkerMode(CACHE_SIZE, False))
ALL_MODES = (*DEFAULT_MODES, WorkerMode(0, False))


def worker_modes(all_combinations: bool) -> tuple[WorkerMode, ...]:
    return ALL_MODES if all_combinations else DEFAULT_MODES


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--all-combinations",
        action="store_true",
        default=False,
        help="run end-to-end tests in every worker mode (cache on/off x hand-offs on/off),"
        f" not only the default three; also ${ALL_COMBINATIONS_VARIABLE}=1",
    )


def _all_combinations(config: pytest.Config) -> bool:
    option = bool(config.getoption("--all-combinations", default=False))
    return option or os.environ.get(ALL_COMBINATIONS_VARIABLE, "") not in ("", "0")


def _parametrized_by_the_test(metafunc: pytest.Metafunc) -> set[str]:
    names: set[str] = set()
    for mark in metafunc.definition.iter_markers("parametrize"):
        argnames = mark.args[0] if mark.args else mark.kwargs["argnames"]
        if isinstance(argnames, str):
            names.update(n.strip() for n in argnames.split(","))
        else:
            names.update(cast(Iterable[str], argnames))
    return names


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    wanted = set(metafunc.fixturenames) - _parametrized_by_the_test(metafunc)
    if "backend_url" in wanted:
        metafunc.parametrize("backend_url", registry.names, indirect=True)
    both = {"cache_size", "handoffs"}
    if "worker" in metafunc.fixturenames and both <= wanted:
        modes = worker_modes(_all_combinations(metafunc.config))
        metafunc.parametrize(
            ("cache_size", "handoffs"),
            [(m.cache_size, m.handoffs) for m in modes],
            indirect=True,
            ids=[m.id for m in modes],
        )
        return
    if "cache_size" in wanted:
        metafunc.parametrize("cache_size", [CACHE_SIZE, 0], indirect=True, ids=["cache", "nocache"])
    if "handoffs" in wanted:
        metafunc.parametrize("handoffs", [True, False], indirect=True, ids=["handoffs", "core"])


# -- fixtures --------------------------------------------------------------------------------


def _param(request: pytest.FixtureRequest, name: str) -> Any:
    if not hasattr(request, "param"):  # a plugin bug, not a test's
        raise RuntimeError(f"{name} was not parametrized by tests.conformance.plugin")
    return request.param


@pytest.fixture
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh, empty database of each registered backend (one per test)."""
    name: str = _param(request, "backend_url")
    require_available(name, registry.unavailable(name))
    with registry[name].url(tmp_path) as url:
        yield url


@pytest.fixture
async def backend(backend_url: str) -> AsyncIterator[tapeflow.Backend]:
    async with tapeflow.connect(backend_url) as opened:
        yield opened


@pytest.fixture
def client(backend: tapeflow.Backend) -> tapeflow.Client:
    return tapeflow.Client(backend)


@pytest.fixture
def cache_size(request: pytest.FixtureRequest) -> int:
    """Every end-to-end test runs with the sticky workflow cache on and off."""
    size: int = _param(request, "cache_size")
    return size


@pytest.fixture
def handoffs(request: pytest.FixtureRequest) -> bool:
    """Whether the worker may use the backend's hand-off capability (off: ``core_only``)."""
    on: bool = _param(request, "handoffs")
    return on


@pytest.fixture
def worker(backend: tapeflow.Backend, cache_size: int, handoffs: bool) -> WorkerFactory:
    """``async with worker(workflows=[...], activities=[...], **options)``: fast test defaults,
    on ``backend`` itself or, hand-offs off, on ``core_only(backend)``."""
    seen = backend if handoffs else core_only(backend)

    def make(**kwargs: Any) -> tapeflow.Worker:
        options: dict[str, Any] = {
            "workflow_cache_size": cache_size,
            "poll_interval": timedelta(milliseconds=50),
            "max_concurrent_activities": 8,
            "shutdown_grace": timedelta(seconds=2),
        }
        options.update(kwargs)
        return tapeflow.Worker(seen, **options)

    return make  # a Worker is its own async context manager


def capability(backend: tapeflow.Backend) -> base.HandOffs:
    """The backend's hand-off capability, for the tests that drive it by hand: the
    ``backend`` fixture is the backend itself, so a built-in backend always has it."""
    handing = base.hand_offs(backend)
    assert handing is not None, f"{backend!r} has no hand-off capability"
    return handing
