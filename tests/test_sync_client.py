"""tapeflow.SyncClient: the async client's methods, blocking, for code that runs no event loop.

The workflows run on a worker in a thread of its own, on its own backend, as a worker
process beside a web application would run them.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any, assert_type, cast

import pytest

import tapeflow
from tapeflow import workflow
from tapeflow._blocking import LoopThread
from tapeflow.backends.connect import backend_for
from tapeflow.history import HistoryEvent
from tests.conformance.plugin import unavailable

THREAD = "tapeflow-sync-client"


@workflow.defn
async def greet(name: str) -> str:
    return f"hello, {name}"


@workflow.defn
async def tally() -> int:
    total = 0

    def add(n: int) -> int:
        nonlocal total
        total += n
        return total

    workflow.on_update("add", add)
    await workflow.wait_event("done")
    return total


@workflow.defn
async def unlucky() -> None:
    raise ValueError("no luck")


@pytest.fixture
def served(backend_url: str) -> Iterator[str]:
    """``backend_url``, served by a worker on a thread and an event loop of its own."""
    stop, ready = threading.Event(), threading.Event()

    async def serve() -> None:
        async with (
            tapeflow.connect(backend_url) as backend,
            tapeflow.Worker(
                backend,
                workflows=[greet, tally, unlucky],
                poll_interval=timedelta(milliseconds=50),
                shutdown_grace=timedelta(seconds=2),
            ),
        ):
            ready.set()
            await asyncio.to_thread(stop.wait)

    thread = threading.Thread(target=asyncio.run, args=(serve(),), name="test-worker")
    thread.start()
    try:
        assert ready.wait(30), "the worker did not start"
        yield backend_url
    finally:
        stop.set()
        thread.join(30)


@pytest.fixture
def sync(backend_url: str) -> Iterator[tapeflow.SyncClient]:
    with tapeflow.SyncClient(backend_url) as client:
        yield client


def loop_threads() -> int:
    return sum(thread.name == THREAD for thread in threading.enumerate())


def eventually(condition: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds} s"
        time.sleep(0.01)


def kinds(history: list[HistoryEvent]) -> list[str]:
    return [event.kind for event in history]


# -- the scenarios -----------------------------------------------------------------------------


def test_plain_sync_code_starts_a_workflow_and_blocks_for_its_result(
    served: str, sync: tapeflow.SyncClient
) -> None:
    handle = sync.start_workflow(greet, "ada", id="greet-ada")
    assert_type(handle, tapeflow.SyncWorkflowHandle[str])
    assert handle.result(timeout=30) == "hello, ada"
    assert (handle.id, handle.run_id) == ("greet-ada", sync.describe("greet-ada").run_id)
    assert handle.describe().status is tapeflow.WorkflowStatus.COMPLETED
    assert kinds(handle.history())[-1] == "workflow_completed"
    assert [found.id for found in sync.list_workflows(name="greet").workflows] == ["greet-ada"]
    counts = sync.count_workflows(group_by_status=True)
    assert_type(counts, dict[tapeflow.WorkflowStatus, int])
    assert counts == {tapeflow.WorkflowStatus.COMPLETED: 1}
    again = sync.get_handle("greet-ada", result_type=str)
    assert_type(again, tapeflow.SyncWorkflowHandle[str])
    assert again.result() == "hello, ada"


def test_events_updates_cancel_terminate_reset_and_delete_block_until_done(
    served: str, sync: tapeflow.SyncClient
) -> None:
    counting = sync.start_workflow(tally, id="tally")
    assert counting.execute_update("add", 2) == 2
    update_id = counting.start_update("add", 3)
    assert counting.execute_update("add", 3, update_id=update_id) == 5  # that update's answer
    sync.send_event("tally", "done")
    assert counting.result(timeout=30) == 5

    waiting = sync.start_workflow(tally, id="waiting")
    eventually(lambda: kinds(waiting.history()) == ["workflow_task_started", "workflow_started"])
    again = waiting.reset(2, "start over")  # to the end of its first workflow task
    assert_type(again, tapeflow.SyncWorkflowHandle[int])
    assert sync.describe("waiting").previous_run_id == waiting.run_id != again.run_id
    again.send_event("done")
    assert again.result(timeout=30) == 0

    cancelled = sync.start_workflow(tally, id="cancelled")
    cancelled.cancel("enough")
    with pytest.raises(tapeflow.WorkflowCancelled, match="enough"):
        cancelled.result(timeout=30)
    terminated = sync.start_workflow(tally, id="terminated")
    terminated.send_event("not yet")
    terminated.terminate("now")
    with pytest.raises(tapeflow.WorkflowTerminated, match="now"):
        terminated.result(timeout=30)
    terminated.delete()
    with pytest.raises(tapeflow.WorkflowNotFound):
        terminated.describe()
    assert sync.delete_closed(timedelta(0)) == 3  # tally, waiting and cancelled
    assert sync.count_workflows() == 0


def test_schedules_are_made_triggered_changed_and_deleted_by_blocking_calls(
    served: str, sync: tapeflow.SyncClient
) -> None:
    nightly = sync.create_schedule("nightly", greet, "night", every=timedelta(days=1))
    assert_type(nightly, tapeflow.SyncScheduleHandle)
    started = nightly.trigger()
    assert_type(started, tapeflow.SyncWorkflowHandle[Any] | None)
    assert started is not None
    assert started.result(timeout=30) == "hello, night"
    nightly.pause()
    assert sync.get_schedule("nightly").describe().paused
    nightly.unpause()
    nightly.update("day")
    assert [(found.id, found.args) for found in sync.list_schedules()] == [("nightly", ["day"])]
    nightly.delete()
    with pytest.raises(tapeflow.ScheduleNotFound):
        nightly.describe()


def test_errors_are_the_async_clients_own(served: str, sync: tapeflow.SyncClient) -> None:
    with pytest.raises(tapeflow.WorkflowNotFound):
        sync.describe("nobody")
    with pytest.raises(tapeflow.WorkflowNotFound):
        sync.get_handle("nobody").result(timeout=30)
    with pytest.raises(tapeflow.InvalidArgument):
        sync.get_handle("")  # checked in the caller's thread: get_handle does not block
    with pytest.raises(tapeflow.InvalidArgument):
        sync.list_workflows(limit=0)

    failing = sync.start_workflow(unlucky, id="unlucky")
    with pytest.raises(tapeflow.WorkflowFailed, match="no luck") as failed:
        failing.result(timeout=30)
    assert failed.value.type == "ValueError"
    with pytest.raises(tapeflow.WorkflowAlreadyExists):
        sync.start_workflow(unlucky, id="unlucky")
    with pytest.raises(tapeflow.WorkflowAlreadyCompleted):
        failing.cancel()

    waiting = sync.start_workflow(tally)
    with pytest.raises(tapeflow.UpdateFailed) as refused:
        waiting.execute_update("subtract", 1)
    assert refused.value.rejected
    with pytest.raises(TimeoutError):
        waiting.result(timeout=0.2)


def test_twenty_threads_start_and_wait_for_workflows_at_once(
    served: str, sync: tapeflow.SyncClient
) -> None:
    at_once = threading.Barrier(20)

    def request(n: int) -> str:  # as a web server's request thread would
        at_once.wait()
        return sync.start_workflow(greet, f"guest {n}").result(timeout=60)

    with ThreadPoolExecutor(20) as threads:
        answers = list(threads.map(request, range(20)))
    assert answers == [f"hello, guest {n}" for n in range(20)]
    assert sync.count_workflows(status="completed") == 20
    assert loop_threads() == 1  # one loop served them all


async def test_a_call_from_a_thread_that_runs_an_event_loop_says_to_use_the_async_client(
    backend_url: str,
) -> None:
    # Opening and closing do not wait on the caller's loop: an ASGI server may import an
    # application that opens one on its loop, for its sync views (run in threads) to use.
    with tapeflow.SyncClient(backend_url) as sync:
        handle = sync.get_handle("any")  # does not block: allowed
        calls: list[Callable[[], object]] = [sync.count_workflows, handle.describe, handle.result]
        for call in calls:
            with pytest.raises(RuntimeError, match=r"runs an event loop.*use tapeflow\.Client"):
                call()
        assert await asyncio.to_thread(sync.count_workflows) == 0  # the way out it names


@pytest.fixture
def ctrl_c_raises() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt in the main thread, as in a script, whatever the
    test runner installed; put back after."""
    if threading.current_thread() is not threading.main_thread():  # a runner's own thread
        unavailable("the main thread", "a KeyboardInterrupt is raised in the main thread only")
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("ctrl_c_raises")
def test_a_keyboard_interrupt_in_a_blocked_call_cancels_that_call(
    sync: tapeflow.SyncClient,
) -> None:
    handle = sync.start_workflow(greet, "nobody")  # no worker: result() waits
    main = threading.main_thread().ident
    assert main is not None
    interrupt = threading.Timer(0.5, signal.pthread_kill, (main, signal.SIGINT))  # Ctrl-C
    interrupt.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            handle.result()
    finally:
        interrupt.cancel()
    eventually(lambda: sync._loop.pending == 0)  # the call was cancelled on the loop
    assert not handle.describe().status.finished  # and the client goes on


def test_close_closes_the_backend_on_its_loop_and_ends_every_call(
    backend_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = loop_threads()
    client = tapeflow.SyncClient(backend_url)
    assert loop_threads() == before + 1
    backend = client._inner.backend
    closed_in: list[str] = []
    close = backend.close

    async def recorded_close() -> None:
        closed_in.append(threading.current_thread().name)
        await close()

    monkeypatch.setattr(backend, "close", recorded_close)
    handle = client.start_workflow(greet, "nobody")  # no worker: result() waits
    with ThreadPoolExecutor(1) as other:
        waiting = other.submit(handle.result)
        eventually(lambda: client._loop.pending == 1)
        client.close()
        with pytest.raises(RuntimeError, match="closed while it waited"):
            waiting.result(timeout=10)
    assert closed_in == [THREAD]
    assert loop_threads() == before

    after: list[Callable[[], object]] = [
        lambda: client.describe(handle.id),
        lambda: client.get_handle(handle.id),
        handle.describe,
    ]
    for call in after:
        with pytest.raises(RuntimeError, match="the client is closed"):
            call()
    client.close()  # again: nothing


def test_a_client_closes_as_a_context_manager_and_when_collected(backend_url: str) -> None:
    before = loop_threads()
    with tapeflow.SyncClient(backend_url) as client:
        assert client.count_workflows() == 0
    with pytest.raises(RuntimeError, match="the client is closed"):
        client.count_workflows()
    forgotten = tapeflow.SyncClient(backend_url)
    handle = forgotten.get_handle("kept")
    del forgotten
    gc.collect()
    with pytest.raises(tapeflow.WorkflowNotFound):  # a handle keeps the loop alive
        handle.describe()
    del handle

    def collected() -> bool:  # a call's traceback may hold the handle until the loop lets go
        gc.collect()
        return loop_threads() == before

    eventually(collected)


@pytest.mark.parametrize(
    "url",
    ["mysql://somewhere", "sqlite:///{tmp}/notes.db", "postgresql://postgres@127.0.0.1:1/none"],
    ids=["unknown-scheme", "not-a-database", "nothing-listens"],
)
def test_a_failed_open_raises_what_connect_raises_and_leaves_no_thread(
    url: str, tmp_path: Path
) -> None:
    (tmp_path / "notes.db").write_text("not SQLite\n" * 100)
    url = url.format(tmp=tmp_path)

    async def connect() -> None:
        async with tapeflow.connect(url):
            pass

    with pytest.raises(Exception) as by_connect:  # noqa: PT011  # whichever it is
        asyncio.run(connect())
    before = loop_threads()
    with pytest.raises(type(by_connect.value)):
        tapeflow.SyncClient(url)
    assert loop_threads() == before


def test_a_forked_process_is_told_to_open_its_own_client(
    sync: tapeflow.SyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: parent + 1)  # as in a child forked after opening
    with pytest.raises(RuntimeError, match="open a client in each process, after the fork"):
        sync.count_workflows()


# -- one implementation: the async client's ------------------------------------------------------


def public(names: Iterable[str]) -> set[str]:
    return {name for name in names if not name.startswith("_")}


def assert_each_runs_its_twin(sync_class: type[Any], async_class: type[Any]) -> set[str]:
    """The async class's public methods, each of which ``sync_class`` has as a wrapper of
    that very method (so its parameters, types and docstring): none is written twice."""
    methods = public(dir(async_class))
    for name in methods:
        ours, theirs = getattr(sync_class, name, None), getattr(async_class, name)
        assert ours is not None, f"{sync_class.__name__} lacks {async_class.__name__}.{name}"
        assert inspect.unwrap(ours) is theirs, f"{sync_class.__name__}.{name} runs another"
        assert ours.__doc__ == theirs.__doc__
    return methods


UNOPENED = backend_for("sqlite://")  # made, not opened: what a handle needs to be made


def test_the_sync_client_has_every_method_of_the_client() -> None:
    methods = assert_each_runs_its_twin(tapeflow.SyncClient, tapeflow.Client)
    assert public(dir(tapeflow.SyncClient)) == methods | {"close"}
    # Its one public attribute stays out: the backend lives on the sync client's own loop.
    assert public(vars(tapeflow.Client(UNOPENED))) == {"backend"}


def test_the_sync_handle_has_every_method_and_attribute_of_the_handle() -> None:
    methods = assert_each_runs_its_twin(tapeflow.SyncWorkflowHandle, tapeflow.WorkflowHandle)
    handle = tapeflow.WorkflowHandle[Any](UNOPENED, "wf", run_id="run")
    attributes = public(vars(handle))
    assert public(dir(tapeflow.SyncWorkflowHandle)) == methods | attributes
    synced = tapeflow.SyncWorkflowHandle(cast(LoopThread, None), handle)
    assert {name: getattr(synced, name) for name in attributes} == {
        name: getattr(handle, name) for name in attributes
    }


def test_the_sync_schedule_handle_has_every_method_and_attribute_of_the_handle() -> None:
    methods = assert_each_runs_its_twin(tapeflow.SyncScheduleHandle, tapeflow.ScheduleHandle)
    handle = tapeflow.ScheduleHandle(UNOPENED, "nightly")
    assert public(vars(handle)) == {"id"}
    assert public(dir(tapeflow.SyncScheduleHandle)) == methods | {"id"}
    assert tapeflow.SyncScheduleHandle(cast(LoopThread, None), handle).id == "nightly"
