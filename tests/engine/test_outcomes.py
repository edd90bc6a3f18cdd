"""How a workflow ends: its result by annotation, its failure, and task failures (sandbox)."""

from __future__ import annotations

import asyncio
import enum
import subprocess
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel

from tapeflow import NonDeterminismError, NonRetryableError, WorkflowSandboxError, workflow
from tapeflow._engine import loop as loop_module
from tapeflow.history import (
    EventReceived,
    TimerFired,
    TimerStarted,
    WorkflowExecutionCompleted,
    WorkflowExecutionFailed,
)
from tests.engine.conftest import RunFactory
from tests.engine.harness import T0, at


@dataclass
class Summary:
    paid: int
    overdue: int
    when: datetime


class Colour(enum.Enum):
    RED = "red"


class Model(BaseModel):
    name: str
    tags: list[str]
    price: Decimal
    colour: Colour


@workflow.defn
async def summarise(paid: int) -> Summary:
    return Summary(paid=paid, overdue=3, when=workflow.now())


def test_a_dataclass_result_is_recorded_as_json(run: RunFactory) -> None:
    wf = run(summarise)
    assert wf.start(40) == [
        WorkflowExecutionCompleted(
            result={"paid": 40, "overdue": 3, "when": T0.isoformat().replace("+00:00", "Z")}
        )
    ]
    assert wf.instance.finished


@workflow.defn
async def model_result() -> Model:
    return Model(name="ünïcødé ✓", tags=["a"], price=Decimal("1.10"), colour=Colour.RED)


def test_a_pydantic_result_is_recorded_as_json(run: RunFactory) -> None:
    wf = run(model_result)
    assert wf.start() == [
        WorkflowExecutionCompleted(
            result={"name": "ünïcødé ✓", "tags": ["a"], "price": "1.10", "colour": "red"}
        )
    ]


@workflow.defn
async def nothing() -> None:
    return None


@workflow.defn
async def unannotated():  # type: ignore[no-untyped-def]
    return {"free": ["form", 1]}


@pytest.mark.parametrize(
    ("function", "result"), [(nothing, None), (unannotated, {"free": ["form", 1]})]
)
def test_none_and_unannotated_results(run: RunFactory, function: Any, result: Any) -> None:
    wf = run(function)
    assert wf.start() == [WorkflowExecutionCompleted(result=result)]


@workflow.defn
async def lies_about_its_result() -> int:
    return "not an int"  # type: ignore[return-value]


def test_a_result_that_does_not_match_the_annotation_fails_with_payload_error(
    run: RunFactory,
) -> None:
    wf = run(lies_about_its_result)
    [decision] = wf.start()
    assert isinstance(decision, WorkflowExecutionFailed)
    assert decision.failure.type == "PayloadError"
    message = "result of workflow 'lies_about_its_result' must be int, not str: 'not an int'"
    assert decision.failure.message == message


@workflow.defn
async def unserialisable() -> Any:
    return object()


def test_a_result_that_cannot_be_json_fails_with_payload_error(run: RunFactory) -> None:
    wf = run(unserialisable)
    [decision] = wf.start()
    assert isinstance(decision, WorkflowExecutionFailed)
    assert decision.failure.type == "PayloadError"


class Overdrawn(Exception):
    pass


@workflow.defn
async def raises(kind: str) -> None:
    await workflow.sleep(1)
    if kind == "plain":
        raise Overdrawn("account 7 is short by 3")
    if kind == "final":
        raise NonRetryableError("card declined", type="CardDeclined")
    if kind == "cancelled":
        raise asyncio.CancelledError
    raise KeyError(kind)


@pytest.mark.parametrize(
    ("kind", "type", "message"),
    [
        ("plain", "Overdrawn", "account 7 is short by 3"),
        ("final", "CardDeclined", "card declined"),
        ("other", "KeyError", "'other'"),
        ("cancelled", "CancelledError", "the workflow's main task was cancelled"),
    ],
)
def test_an_escaping_exception_fails_the_workflow_with_its_type_and_message(
    run: RunFactory, kind: str, type: str, message: str
) -> None:
    wf = run(raises)
    wf.start(kind)
    [decision] = wf.step(at(1), TimerFired(seq=1))
    assert isinstance(decision, WorkflowExecutionFailed)
    assert (decision.failure.type, decision.failure.message) == (type, message)
    assert wf.instance.finished


def test_history_that_goes_on_after_the_end_is_refused(run: RunFactory) -> None:
    wf = run(nothing)
    wf.start()
    with pytest.raises(NonDeterminismError, match="already finished"):
        wf.later(1, EventReceived("late", None))


@workflow.defn
async def bad_arguments(count: int) -> int:
    return count


def test_start_arguments_that_do_not_match_the_annotation_fail_the_workflow(
    run: RunFactory,
) -> None:
    from tapeflow.history import WorkflowExecutionStarted

    wf = run(bad_arguments)
    start = WorkflowExecutionStarted(name="bad_arguments", version="1", args=["x"], started_at=T0)
    [decision] = wf.step(T0, start)
    assert isinstance(decision, WorkflowExecutionFailed)
    assert decision.failure.type == "PayloadError"


# -- the sandbox: task failures, never workflow failures ---------------------------------------


@workflow.defn
async def uses_executor() -> int:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, sum, [1, 2])


@workflow.defn
async def opens_a_socket() -> None:
    await workflow.sleep(1)
    _reader, writer = await asyncio.open_connection("127.0.0.1", 9)
    writer.close()


@workflow.defn
async def runs_a_process() -> None:
    process = await asyncio.create_subprocess_exec("true", stdout=subprocess.DEVNULL)
    await process.wait()


@workflow.defn
async def resolves_names() -> None:
    await asyncio.get_running_loop().getaddrinfo("example.com", 80)


@workflow.defn
async def executor_in_gathered_task() -> list[int]:
    async def offload() -> int:
        return await asyncio.get_running_loop().run_in_executor(None, int)

    async def fine() -> int:
        return 1

    return list(await asyncio.gather(fine(), offload()))


@pytest.mark.parametrize(
    ("function", "match"),
    [
        (uses_executor, "run_in_executor"),
        (runs_a_process, "subprocess_exec"),
        (resolves_names, "getaddrinfo"),
        (executor_in_gathered_task, "run_in_executor"),
    ],
)
def test_io_in_a_workflow_fails_the_task_not_the_workflow(
    run: RunFactory, function: Any, match: str
) -> None:
    wf = run(function)
    with pytest.raises(WorkflowSandboxError, match=match):
        wf.start()
    assert not wf.instance.finished
    assert wf.instance.commands.take_decisions() == []


def test_open_connection_after_a_timer_fails_the_task(run: RunFactory) -> None:
    wf = run(opens_a_socket)
    assert wf.start() == [TimerStarted(seq=1, fire_at=at(1))]
    with pytest.raises(WorkflowSandboxError, match="create_connection"):
        wf.step(at(1), TimerFired(seq=1))
    assert not wf.instance.finished


@workflow.defn
async def spins() -> None:
    while True:  # noqa: ASYNC110
        await asyncio.sleep(0)


def test_a_spinning_workflow_fails_the_task(
    run: RunFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loop_module, "MAX_STEPS_PER_ACTIVATION", 5_000)
    wf = run(spins)
    with pytest.raises(WorkflowSandboxError, match="spinning"):
        wf.start()


@workflow.defn
async def busy_but_finite() -> int:
    for _ in range(3_000):
        await asyncio.sleep(0)
    return 3


def test_many_steps_below_the_limit_are_fine(
    run: RunFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loop_module, "MAX_STEPS_PER_ACTIVATION", 5_000)
    wf = run(busy_but_finite)
    assert wf.start() == [WorkflowExecutionCompleted(result=3)]


def test_the_step_limit_counts_per_activation(
    run: RunFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loop_module, "MAX_STEPS_PER_ACTIVATION", 5_000)

    @workflow.defn
    async def busy_between_timers() -> int:
        for _ in range(3):
            for _ in range(3_000):
                await asyncio.sleep(0)
            await workflow.sleep(1)
        return 9

    wf = run(busy_between_timers)
    wf.start()
    wf.step(at(1), TimerFired(seq=1))
    wf.step(at(2), TimerFired(seq=2))
    assert wf.step(at(3), TimerFired(seq=3)) == [WorkflowExecutionCompleted(result=9)]


@workflow.defn
async def swallows_the_sandbox_error() -> str:
    try:
        await asyncio.get_running_loop().run_in_executor(None, int)
    except Exception:
        return "carried on as if the I/O had happened"
    return "done"


def test_a_sandbox_violation_fails_the_task_even_if_the_workflow_catches_it(
    run: RunFactory,
) -> None:
    """A broad ``except Exception`` in workflow code must not hide the violation: the code
    is wrong, and the task fails until it is fixed, rather than the workflow completing."""
    wf = run(swallows_the_sandbox_error)
    with pytest.raises(WorkflowSandboxError, match="run_in_executor"):
        wf.start()
