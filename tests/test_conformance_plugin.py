"""The conformance plugin itself: ``core_only`` shows the core protocol and nothing else, and
a backend registered with the plugin runs the suite's tests under readable ids."""

from __future__ import annotations

import inspect
import textwrap
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, cast, runtime_checkable

import pytest

import tapeflow
from tapeflow.backends.base import Backend, TaskKind
from tests.conformance.plugin import (
    ALL_COMBINATIONS_VARIABLE,
    BackendFactory,
    BackendRegistry,
    core_members,
    core_only,
)

ROOT = Path(__file__).resolve().parents[1]


class Core(Protocol):
    """A protocol split like the backend's: a core, and a capability on top of it."""

    size: int

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def load(self, key: str) -> str: ...

    @property
    def live(self) -> bool: ...


@runtime_checkable
class Takes(Core, Protocol):
    async def take(self) -> str: ...


@runtime_checkable
class CheckedCore(Core, Protocol):
    pass


class Full:
    """Implements the core, the capability and more."""

    def __init__(self) -> None:
        self.size = 3
        self.calls: list[str] = []

    async def __aenter__(self) -> Self:
        self.calls.append("enter")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.calls.append("exit")

    async def load(self, key: str) -> str:
        return f"loaded {key}"

    @property
    def live(self) -> bool:
        return True

    async def take(self) -> str:
        return "taken"

    def secret(self) -> str:
        return "not in any protocol"


def wrap(full: Full, protocol: type[object] = Core) -> Any:
    """``core_only(full)``, as Any: these protocols are not the backend's."""
    return core_only(cast(tapeflow.Backend, full), protocol)


def test_the_members_are_read_from_the_protocol_class() -> None:
    assert core_members(Core) == {"size", "load", "live", "__aenter__", "__aexit__"}
    assert core_members(Takes) == core_members(Core) | {"take"}
    with pytest.raises(TypeError, match="not a Protocol"):
        core_members(Full)


def test_the_members_of_the_backend_protocol_are_its_public_ones() -> None:
    public = {n for n, _ in inspect.getmembers(Backend) if not n.startswith("_")}
    assert public  # the protocol has members, and every one of them is forwarded
    assert core_members() == public | {"__aenter__", "__aexit__"}


async def test_core_only_keeps_the_core_and_hides_the_rest() -> None:
    full = Full()
    seen = wrap(full)
    assert seen.size == 3
    assert await seen.load("k") == "loaded k"
    assert seen.live is True
    for hidden in ("take", "secret", "calls"):
        assert not hasattr(seen, hidden), hidden
    assert isinstance(full, Takes)
    assert not isinstance(seen, Takes)  # the worker's check: the capability is gone
    assert isinstance(seen, CheckedCore)
    assert "Full" in repr(seen)


async def test_core_only_forwards_what_is_set_on_the_backend_later() -> None:
    full = Full()
    seen = wrap(full)

    async def patched(key: str) -> str:
        return f"patched {key}"

    full.load = patched  # type: ignore[method-assign]  # as monkeypatch.setattr does
    full.size = 4
    assert await seen.load("k") == "patched k"
    assert seen.size == 4


async def test_core_only_enters_as_itself() -> None:
    full = Full()
    seen = wrap(full)
    async with seen as entered:
        assert entered is seen
        assert full.calls == ["enter"]
    assert full.calls == ["enter", "exit"]


async def test_a_wider_protocol_forwards_the_capability_too() -> None:
    seen = wrap(Full(), Takes)
    assert await seen.take() == "taken"
    assert isinstance(seen, Takes)
    assert not hasattr(seen, "secret")


async def test_core_only_on_a_real_backend_keeps_every_protocol_member(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'core.db'}"
    async with tapeflow.connect(url) as backend, core_only(backend) as seen:
        for name in core_members():
            assert hasattr(seen, name), name
        assert seen.wakes_other_processes == backend.wakes_other_processes
        assert await seen.next_due(TaskKind.WORKFLOW, ["x"]) is None


def test_the_registry_refuses_a_name_twice_and_asks_availability_once() -> None:
    asked: list[str] = []

    def unavailable() -> str | None:
        asked.append("asked")
        return "down"

    registry = BackendRegistry()
    registry.register(BackendFactory("one", lambda _: _never(), unavailable))
    with pytest.raises(ValueError, match="registered already"):
        registry.register(BackendFactory("one", lambda _: _never()))
    with pytest.raises(ValueError, match="identifier"):
        BackendFactory("two words", lambda _: _never())
    assert registry.names == ["one"]
    assert registry.unavailable("one") == registry.unavailable("one") == "down"
    assert asked == ["asked"]


def _never() -> AbstractContextManager[str]:  # a url that is never entered
    raise AssertionError("not called")


# -- a third backend, wired in through the plugin, in a pytest run of its own -----------------

CONFTEST = """
    import contextlib

    import pytest

    pytest.register_assert_rewrite("tests.conformance.plugin")
    from tests.conformance.plugin import BackendFactory, register_backend  # noqa: E402

    pytest_plugins = ["tests.conformance.plugin"]
    LOG = {log!r}


    @contextlib.contextmanager
    def third_url(tmp_path):
        with open(LOG, "a") as log:
            log.write("made\\n")
        yield f"sqlite:///{{tmp_path / 'third.db'}}"
        with open(LOG, "a") as log:
            log.write("dropped\\n")


    register_backend(BackendFactory("third", third_url))
    register_backend(BackendFactory("absent", third_url, lambda: "no server here"))
"""

TESTS = """
    import pytest

    from tapeflow import workflow


    @workflow.defn
    async def hello(name: str) -> str:
        return f"hello {name}"


    async def test_end_to_end(client, worker, handoffs):
        async with worker(workflows=[hello]) as running:
            assert (type(running.backend).__name__ == "CoreOnlyBackend") is not handoffs
            handle = await client.start_workflow(hello, "you", id="hello")
            assert await handle.result(timeout=10) == "hello you"


    def test_url(backend_url):
        assert backend_url.endswith("third.db")


    @pytest.mark.parametrize("cache_size", [7])
    def test_own_cache_size(worker, cache_size):
        assert cache_size == 7
"""


@pytest.fixture
def third(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    log = pytester.path / "log.txt"
    pytester.makeconftest(textwrap.dedent(CONFTEST.format(log=str(log))))
    pytester.makepyfile(test_third=textwrap.dedent(TESTS))
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv(ALL_COMBINATIONS_VARIABLE, raising=False)
    return pytester


def _ids(result: pytest.RunResult) -> list[str]:
    return [line for line in result.outlines if "::" in line]


def test_a_third_backend_gets_every_test_under_readable_ids(third: pytest.Pytester) -> None:
    result = third.runpytest_subprocess("--collect-only", "-q", "-p", "no:cacheprovider")
    assert _ids(result) == [
        f"test_third.py::test_end_to_end[{backend}-{mode}]"
        for backend in ("third", "absent")
        for mode in ("cache-handoffs", "nocache-handoffs", "cache-core")
    ] + [
        "test_third.py::test_url[third]",
        "test_third.py::test_url[absent]",
        "test_third.py::test_own_cache_size[third-handoffs-7]",
        "test_third.py::test_own_cache_size[third-core-7]",
        "test_third.py::test_own_cache_size[absent-handoffs-7]",
        "test_third.py::test_own_cache_size[absent-core-7]",
    ]


@pytest.mark.parametrize("opt_in", ["option", "variable"])
def test_all_combinations_add_the_last_mode(
    third: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, opt_in: str
) -> None:
    args = ["--collect-only", "-q", "-p", "no:cacheprovider", "-k", "end_to_end and not absent"]
    if opt_in == "option":
        args.append("--all-combinations")
    else:
        monkeypatch.setenv(ALL_COMBINATIONS_VARIABLE, "1")
    assert _ids(third.runpytest_subprocess(*args)) == [
        f"test_third.py::test_end_to_end[third-{mode}]"
        for mode in ("cache-handoffs", "nocache-handoffs", "cache-core", "nocache-core")
    ]


def test_a_third_backend_runs_and_an_unavailable_one_is_skipped(third: pytest.Pytester) -> None:
    result = third.runpytest_subprocess("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(passed=6, skipped=6)
    result.stdout.fnmatch_lines(["*absent unavailable: no server here (CI=true makes this*"])
    log = (third.path / "log.txt").read_text().split()
    assert log == ["made", "dropped"] * 6  # a fresh database per test, dropped after it


def test_under_ci_an_unavailable_backend_fails_the_run(
    third: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    result = third.runpytest_subprocess("-p", "no:cacheprovider", "-k", "url")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*CI=true but the absent backend is unavailable: no server*"])
