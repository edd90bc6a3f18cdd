"""Updates in the engine: a request is validated once, live; an accepted one is recorded as
``UpdateAccepted`` and replayed by running its handler (never its validator) to the same
``UpdateCompleted``; a rejected one leaves history as it was."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

import tapeflow
from tapeflow import workflow
from tapeflow._engine.instance import Activation
from tapeflow.errors import NonDeterminismError, WorkflowSandboxError
from tapeflow.history import (
    ActivityCompleted,
    ActivityScheduled,
    EventReceived,
    HistoryEvent,
    UpdateAccepted,
    UpdateCompleted,
    UpdateRequested,
    WorkflowExecutionCompleted,
    WorkflowExecutionFailed,
    WorkflowTaskStarted,
)
from tests.engine.conftest import RunFactory
from tests.engine.harness import T0, at, replay_decisions, started

VALIDATED: list[str] = []
"""The items ``check`` was asked about, in order: a validator runs once, live only."""


def check(item: str) -> None:
    VALIDATED.append(item)
    if not item:
        raise ValueError("empty item")


@workflow.defn
async def checkout() -> str:
    items: list[str] = []

    def add(item: str) -> int:
        items.append(item)
        return len(items)

    workflow.on_update("add", add, validator=check)
    await workflow.wait_event("pay")
    return ",".join(items)


@pytest.fixture(autouse=True)
def _forget_validations() -> None:
    VALIDATED.clear()


def request(update_id: str, name: str, *args: object) -> UpdateRequested:
    return UpdateRequested(update_id=update_id, name=name, args=list(args))


def test_an_accepted_update_is_recorded_with_its_answer(run: RunFactory) -> None:
    wf = run(checkout)
    wf.start()
    assert wf.later(1, request("u-1", "add", "apple")) == [
        UpdateCompleted(update_id="u-1", name="add", result=1)
    ]
    assert wf.history[-3:] == [
        WorkflowTaskStarted(at=at(1)),
        UpdateAccepted(update_id="u-1", name="add", args=["apple"]),
        UpdateCompleted(update_id="u-1", name="add", result=1),
    ]
    assert wf.instance.rejected_updates() == []
    assert wf.later(1, EventReceived("pay", None)) == [WorkflowExecutionCompleted("apple")]


def test_a_rejected_update_leaves_no_trace_in_history(run: RunFactory) -> None:
    wf = run(checkout)
    wf.start()
    before = list(wf.history)
    assert wf.later(1, request("u-1", "add", "")) == []
    assert wf.history == before  # not even the task's start
    [rejected] = wf.instance.rejected_updates()
    assert (rejected.update_id, rejected.name) == ("u-1", "add")
    assert (rejected.failure.type, rejected.failure.message) == ("ValueError", "empty item")
    wf.later(1, request("u-2", "add", "pear"))
    assert wf.instance.rejected_updates() == []  # an activation's own rejections only
    assert wf.later(1, EventReceived("pay", None)) == [WorkflowExecutionCompleted("pear")]
    assert wf.replayed().finished


def test_a_rejection_beside_other_events_keeps_them_and_drops_only_itself(
    run: RunFactory,
) -> None:
    wf = run(checkout)
    wf.start()
    wf.later(1, request("u-1", "add", ""), EventReceived("note", 1))
    assert wf.history[-2:] == [WorkflowTaskStarted(at=at(1)), EventReceived("note", 1)]


def test_replay_runs_the_handler_and_not_the_validator(run: RunFactory) -> None:
    wf = run(checkout)
    wf.start()
    wf.later(1, request("u-1", "add", "apple"), request("u-2", "add", ""))
    wf.later(1, request("u-3", "add", "pear"))
    assert VALIDATED == ["apple", "", "pear"]
    VALIDATED.clear()
    replayed = wf.replayed()  # its decisions checked against history
    assert VALIDATED == []
    paid = replayed.activate(Activation(at(3), [EventReceived("pay", None)]))
    assert paid == [WorkflowExecutionCompleted("apple,pear")]  # the state the handlers made
    replayed.close()


def test_an_accepted_update_replays_even_if_the_validator_would_now_refuse_it() -> None:
    """A hand-built history, as if accepted by code whose validator was laxer."""
    history: list[HistoryEvent] = [
        WorkflowTaskStarted(at=T0),
        started(checkout),
        WorkflowTaskStarted(at=at(1)),
        UpdateAccepted(update_id="u-1", name="add", args=[""]),
        UpdateCompleted(update_id="u-1", name="add", result=1),
        WorkflowTaskStarted(at=at(2)),
        EventReceived("pay", None),
        WorkflowExecutionCompleted(""),
    ]
    emitted, instance = replay_decisions(checkout, history)
    assert emitted == [[], [UpdateCompleted(update_id="u-1", name="add", result=1)], [history[-1]]]
    assert VALIDATED == []
    instance.close()


@dataclass
class Order:
    sku: str
    quantity: int


@tapeflow.activity.defn
def reserve(order: Order) -> str:
    return f"{order.quantity}x{order.sku}"


@workflow.defn
async def warehouse() -> list[str]:
    reserved: list[str] = []

    async def place(order: Order) -> str:
        token = await workflow.execute_activity(reserve, order)
        reserved.append(token)
        return token

    workflow.on_update("place", place)
    await workflow.wait_condition(lambda: len(reserved) == 2)
    return reserved


def test_an_async_handler_calls_an_activity_and_the_workflow_goes_on(run: RunFactory) -> None:
    wf = run(warehouse)
    wf.start()
    first = wf.later(1, request("u-1", "place", {"sku": "cup", "quantity": 2}))
    assert first == [ActivityScheduled(seq=1, name="reserve", args=[{"sku": "cup", "quantity": 2}])]
    second = wf.later(1, request("u-2", "place", {"sku": "pot", "quantity": 1}))
    assert [type(d) for d in second] == [ActivityScheduled]  # two updates at once
    assert wf.later(1, ActivityCompleted(seq=2, result="1xpot", attempt=1)) == [
        UpdateCompleted(update_id="u-2", name="place", result="1xpot")
    ]
    assert wf.later(1, ActivityCompleted(seq=1, result="2xcup", attempt=1)) == [
        UpdateCompleted(update_id="u-1", name="place", result="2xcup"),
        WorkflowExecutionCompleted(["1xpot", "2xcup"]),
    ]
    assert wf.replayed().finished


@workflow.defn
async def fussy() -> int:
    answered = 0

    def divide(n: int) -> float:
        nonlocal answered
        answered += 1
        return 10 / n

    workflow.on_update("divide", divide)
    await workflow.wait_condition(lambda: answered == 2)
    return answered


def test_a_failing_handler_fails_its_update_and_the_workflow_goes_on(run: RunFactory) -> None:
    wf = run(fussy)
    wf.start()
    [failed] = wf.later(1, request("u-1", "divide", 0))
    assert isinstance(failed, UpdateCompleted)
    assert failed.failure is not None
    assert (failed.failure.type, failed.result) == ("ZeroDivisionError", None)
    assert "ZeroDivisionError" in (failed.failure.traceback or "")
    assert wf.later(1, request("u-2", "divide", 4)) == [
        UpdateCompleted(update_id="u-2", name="divide", result=2.5),
        WorkflowExecutionCompleted(2),
    ]


@pytest.mark.parametrize(
    ("sent", "kind", "says"),
    [
        (request("u-1", "remove", "apple"), "InvalidArgument", "no update handler named 'remove'"),
        (request("u-1", "add", 7), "PayloadError", "must be str"),
        (request("u-1", "add"), "PayloadError", "missing a required argument"),
        (request("u-1", "add", "a", "b"), "PayloadError", "too many positional arguments"),
    ],
    ids=["unknown-name", "wrong-type", "too-few", "too-many"],
)
def test_a_request_that_fits_no_handler_is_rejected(
    run: RunFactory, sent: UpdateRequested, kind: str, says: str
) -> None:
    wf = run(checkout)
    wf.start()
    assert wf.later(1, sent) == []
    [rejected] = wf.instance.rejected_updates()
    assert rejected.failure.type == kind
    assert says in rejected.failure.message
    assert VALIDATED == []  # bad arguments never reach the validator


def test_requests_with_the_start_find_the_handlers_registered_before_the_first_await(
    run: RunFactory,
) -> None:
    wf = run(checkout)
    assert wf.step(T0, started(checkout), request("u-1", "add", "apple")) == [
        UpdateCompleted(update_id="u-1", name="add", result=1)
    ]


@workflow.defn
async def unique_cart() -> list[str]:
    items: list[str] = []

    def add(item: str) -> int:
        items.append(item)
        return len(items)

    def not_twice(item: str) -> None:
        if item in items:
            raise ValueError(f"{item} is in the cart already")

    workflow.on_update("add", add, validator=not_twice)
    await workflow.wait_event("pay")
    return items


def test_requests_in_one_task_are_taken_in_order_each_seeing_the_ones_before(
    run: RunFactory,
) -> None:
    wf = run(unique_cart)
    wf.start()
    sent = [request(f"u-{n}", "add", item) for n, item in enumerate("abacb")]
    assert wf.later(1, *sent) == [
        UpdateCompleted(update_id="u-0", name="add", result=1),
        UpdateCompleted(update_id="u-1", name="add", result=2),
        UpdateCompleted(update_id="u-3", name="add", result=3),
    ]
    assert [r.update_id for r in wf.instance.rejected_updates()] == ["u-2", "u-4"]
    assert [e.update_id for e in wf.history if isinstance(e, UpdateAccepted)] == [
        "u-0",
        "u-1",
        "u-3",
    ]
    assert wf.replayed().commands.pending == 0


@workflow.defn
async def slow_answers() -> str:
    async def later(seconds: float) -> str:
        await workflow.sleep(seconds)
        return "late"

    workflow.on_update("later", later)
    await workflow.wait_event("stop")
    return "stopped"


def test_a_handler_still_running_when_the_workflow_ends_fails_before_the_ending(
    run: RunFactory,
) -> None:
    wf = run(slow_answers)
    wf.start()
    wf.later(1, request("u-1", "later", 60))
    update, ending = wf.later(1, EventReceived("stop", None))
    assert ending == WorkflowExecutionCompleted("stopped")
    assert isinstance(update, UpdateCompleted)
    assert update.failure is not None
    assert update.failure.type == "WorkflowAlreadyCompleted"
    assert "completed before the update's handler finished" in update.failure.message
    assert wf.replayed().finished


def test_a_request_after_the_workflow_returned_in_the_same_task_is_rejected(
    run: RunFactory,
) -> None:
    wf = run(slow_answers)
    wf.start()
    assert wf.later(1, EventReceived("stop", None), request("u-1", "later", 1)) == [
        WorkflowExecutionCompleted("stopped")
    ]
    [rejected] = wf.instance.rejected_updates()
    assert rejected.failure.type == "WorkflowAlreadyCompleted"


@workflow.defn
async def replaces() -> str:
    workflow.on_update("which", lambda: "first")
    workflow.on_update("which", lambda: "second")
    await workflow.wait_event("stop")
    return "done"


def test_registering_a_name_again_replaces_its_handler(run: RunFactory) -> None:
    wf = run(replaces)
    wf.start()
    assert wf.later(1, request("u-1", "which")) == [
        UpdateCompleted(update_id="u-1", name="which", result="second")
    ]


@workflow.defn
async def meddles() -> None:
    def sneaky(item: str) -> None:
        workflow.execute_activity(reserve, Order(item, 1))

    workflow.on_update("add", lambda item: item, validator=sneaky)
    await workflow.wait_event("stop")


def test_a_validator_that_issues_a_command_fails_the_task(run: RunFactory) -> None:
    wf = run(meddles)
    wf.start()
    with pytest.raises(WorkflowSandboxError, match="validator of update 'add' must only look"):
        wf.later(1, request("u-1", "add", "cup"))


@pytest.mark.parametrize(
    ("handler", "validator", "says"),
    [
        (42, None, "on_update handler must be a function"),
        (len, 42, "on_update validator must be a plain"),
        (len, lambda: None, None),
    ],
    ids=["handler", "validator", "ok"],
)
def test_bad_registrations_are_invalid_arguments(
    run: RunFactory, handler: object, validator: object, says: str | None
) -> None:
    @workflow.defn
    async def registers() -> str:
        workflow.on_update("x", handler, validator=validator)  # type: ignore[arg-type]
        return "registered"

    [outcome] = run(registers).start()
    if says is None:
        assert outcome == WorkflowExecutionCompleted("registered")
    else:
        assert isinstance(outcome, WorkflowExecutionFailed)
        assert outcome.failure.type == "InvalidArgument"
        assert says in outcome.failure.message


def test_an_async_validator_and_a_bad_name_are_refused(run: RunFactory) -> None:
    async def validator(item: str) -> None: ...

    @workflow.defn
    async def registers(name: str) -> str:
        workflow.on_update(name, len, validator=validator if name == "x" else None)
        return "registered"

    for name, says in (("x", "plain (not async)"), ("", "update name")):
        [outcome] = run(registers).start(name)
        assert isinstance(outcome, WorkflowExecutionFailed), name
        assert says in outcome.failure.message


def test_on_update_outside_a_workflow_is_refused() -> None:
    with pytest.raises(tapeflow.TapeflowError, match="inside a running workflow"):
        workflow.on_update("add", len)


def test_an_accepted_update_without_a_handler_on_replay_is_non_determinism() -> None:
    @workflow.defn
    async def forgot() -> str:
        await workflow.wait_event("pay")
        return "paid"

    history: list[HistoryEvent] = [
        WorkflowTaskStarted(at=T0),
        started(forgot),
        WorkflowTaskStarted(at=at(1)),
        UpdateAccepted(update_id="u-1", name="add", args=["apple"]),
        UpdateCompleted(update_id="u-1", name="add", result=1),
    ]
    with pytest.raises(NonDeterminismError, match="no handler of that name"):
        replay_decisions(forgot, history)


def test_a_request_in_a_stored_history_is_non_determinism() -> None:
    history: list[HistoryEvent] = [
        WorkflowTaskStarted(at=T0),
        started(checkout),
        WorkflowTaskStarted(at=at(1)),
        request("u-1", "add", "apple"),
    ]
    with pytest.raises(NonDeterminismError, match="update request"):
        replay_decisions(checkout, history)


def test_an_answer_that_changed_on_replay_is_non_determinism(run: RunFactory) -> None:
    history: list[HistoryEvent] = [
        WorkflowTaskStarted(at=T0),
        started(fussy),
        WorkflowTaskStarted(at=at(1)),
        UpdateAccepted(update_id="u-1", name="divide", args=[0]),
        UpdateCompleted(update_id="u-1", name="divide", result=1.0),  # it raises now
    ]
    with pytest.raises(NonDeterminismError, match=r"update_completed 'divide' \(u-1\)"):
        run(fussy, history=history)
