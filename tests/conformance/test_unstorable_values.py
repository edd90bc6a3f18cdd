"""A value that cannot be stored, or would read back as something else, is refused before it
is written: at the caller as a PayloadError, or as a final failure of the activity attempt or
of the workflow that produced it. Nothing is written that a later task cannot read, so no
workflow is wedged and nothing is retried in a loop; bystanders run on beside each case.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest

import tapeflow
from tapeflow.history import ActivityFailed, WorkflowExecutionFailed
from tests.conformance._bystanders import bystanders_finish, start_bystanders
from tests.conformance.test_hostile_input import inbox_rows, kinds, waits_after
from tests.conftest import WorkerFactory
from tests.scenarios.hostile import double, steady, waits_for_go
from tests.scenarios.unstorable import (
    SURROGATE_MESSAGE,
    TOO_LONG,
    catches_then_waits,
    charge,
    charges_untyped,
    counts_as_list,
    counts_forever,
    echo_precise,
    fails_with_a_lone_surrogate,
    generates,
    precise_round_trip,
    raises_a_lone_surrogate,
    returns_a_set,
    returns_too_long,
    takes_anything,
    too_long_result,
    wants_ints,
)

Status = tapeflow.WorkflowStatus
DIGITS = "more than 4,300 digits"


async def no_task_failures(client: tapeflow.Client, *workflow_ids: str) -> None:
    """No workflow task failed on the way: nothing was given back to be retried."""
    for workflow_id in workflow_ids:
        assert (await client.describe(workflow_id)).task_error is None, workflow_id


# -- a too-long integer, at each place a value is written -------------------------------------


@pytest.mark.parametrize("value", [TOO_LONG, -TOO_LONG, [1, TOO_LONG], {"n": TOO_LONG}],
                         ids=["int", "negative", "in-list", "in-dict"])  # fmt: skip
async def test_a_too_long_integer_is_refused_by_the_client_and_the_workflow_goes_on(
    client: tapeflow.Client, worker: WorkerFactory, value: Any
) -> None:
    async with worker(workflows=[waits_for_go, wants_ints, steady], activities=[double]):
        target = await client.start_workflow(waits_for_go, "target", id="target")
        await waits_after(client, target.id, 2)
        with pytest.raises(tapeflow.PayloadError, match=f"payload of event 'go'.*{DIGITS}"):
            await client.send_event(target.id, "go", value)
        assert await inbox_rows(client.backend, target.id) == 0
        for workflow in (takes_anything, "waits_for_go"):
            with pytest.raises(tapeflow.PayloadError, match=DIGITS):
                await client.start_workflow(workflow, value, id="never")
        with pytest.raises(tapeflow.PayloadError, match="must be str, not int: <an integer"):
            await client.start_workflow(waits_for_go, TOO_LONG, id="never")
        with pytest.raises(tapeflow.PayloadError, match=f"argument 'counts'.*{DIGITS}"):
            await client.start_workflow(wants_ints, [1, TOO_LONG], id="never")
        with pytest.raises(tapeflow.WorkflowNotFound):
            await client.describe("never")

        await client.send_event(target.id, "go", "normal")
        assert await target.result(timeout=10) == "target:normal"
    await no_task_failures(client, target.id)


async def test_a_too_long_workflow_result_fails_the_workflow_once(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[returns_too_long, steady], activities=[double]):
        handle = await client.start_workflow(returns_too_long, id="too-long-result")
        bystanders = await start_bystanders(client, "too-long-result")
        with pytest.raises(tapeflow.WorkflowFailed) as failed:
            await handle.result(timeout=10)
        await bystanders_finish(bystanders)
    assert failed.value.type == "PayloadError"
    assert "result of workflow 'returns_too_long'" in failed.value.message
    assert DIGITS in failed.value.message
    record = await handle.describe()
    assert (record.status, record.task_error) == (Status.FAILED, None)
    history = await client.backend.load_history(handle.id)
    assert kinds(history)[-1] == "workflow_failed"
    assert kinds(history).count("workflow_task_started") == 1  # one task: no retry loop


STORED_BADLY = [
    pytest.param(too_long_result, DIGITS, id="too-long-int"),
    pytest.param(counts_forever, "is a count, which tapeflow will not exhaust", id="count"),
    pytest.param(generates, "is a generator, which tapeflow will not exhaust", id="generator"),
    pytest.param(counts_as_list, "is a count, which tapeflow will not exhaust", id="count-list"),
    pytest.param(returns_a_set, "is a set, which JSON would turn into a list: annotate it",
                 id="untyped-set"),
]  # fmt: skip


@pytest.mark.parametrize(("bad", "message"), STORED_BADLY)
@pytest.mark.parametrize("executor", ["thread", "process"])
async def test_an_activity_result_that_cannot_be_stored_fails_its_attempt_for_good(
    client: tapeflow.Client, worker: WorkerFactory, bad: Any, message: str, executor: str
) -> None:
    """The attempt fails at once with a PayloadError the workflow can catch, never retried;
    the worker's loop stays free (bystanders finish meanwhile) and the worker stays up."""
    workflows = [catches_then_waits, steady]
    async with worker(workflows=workflows, activities=[bad, double], activity_executor=executor):
        began = time.monotonic()
        handle = await client.start_workflow(catches_then_waits, bad.__name__, id="bad-result")
        bystanders = await start_bystanders(client, "bad-result")
        await bystanders_finish(bystanders, timeout=10)
        await waits_after(client, handle.id, 5)  # the failure consumed, waiting for "go"
        assert time.monotonic() - began < 10
        await client.send_event(handle.id, "go", "on")
        caught, event = await handle.result(timeout=10)
        again = await client.start_workflow(steady, 21, id="after")  # the worker is still up
        assert await again.result(timeout=10) == 42
    assert caught == {"type": "PayloadError", "message": caught["message"], "attempt": 1}
    assert caught["message"].startswith(f"result of activity {bad.__name__!r}")
    assert message in caught["message"]
    assert event == "on"
    await no_task_failures(client, handle.id)
    history = await client.backend.load_history(handle.id)
    assert kinds(history).count("activity_failed") == 1


# -- failure texts UTF-8 cannot hold --------------------------------------------------------------


async def test_an_error_message_with_a_lone_surrogate_is_stored_spelled_out(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    workflows = [raises_a_lone_surrogate, catches_then_waits, steady]
    activities = [fails_with_a_lone_surrogate, double]
    async with worker(workflows=workflows, activities=activities):
        raises = await client.start_workflow(raises_a_lone_surrogate, id="surrogate-workflow")
        catches = await client.start_workflow(
            catches_then_waits, "fails_with_a_lone_surrogate", id="surrogate-activity"
        )
        bystanders = await start_bystanders(client, "surrogate")
        with pytest.raises(tapeflow.WorkflowFailed) as failed:
            await raises.result(timeout=10)
        await client.send_event(catches.id, "go", "on")
        caught, _ = await catches.result(timeout=10)
        await bystanders_finish(bystanders)
    spelled = SURROGATE_MESSAGE.encode("utf-8", "backslashreplace").decode()
    assert (failed.value.type, failed.value.message) == ("ValueError", spelled)
    assert caught == {"type": "NonRetryableError", "message": spelled, "attempt": 1}
    await no_task_failures(client, raises.id, catches.id)
    (ended,) = (await client.backend.load_history(raises.id))[-1:]
    assert isinstance(ended, WorkflowExecutionFailed)
    recorded = [
        e for e in await client.backend.load_history(catches.id) if isinstance(e, ActivityFailed)
    ]
    assert [e.failure.message for e in recorded] == [spelled]


# -- untyped values JSON would change ------------------------------------------------------------

AMBIGUOUS: list[Any] = [
    pytest.param(Decimal("1.10"), "is a Decimal, which JSON would turn into a string: "
                 "annotate it as Decimal", id="decimal"),
    pytest.param(b"raw", "is a bytes, which JSON would turn into a string", id="bytes"),
    pytest.param(1 + 2j, "is a complex, which JSON would turn into a string", id="complex"),
    pytest.param({"a"}, "is a set, which JSON would turn into a list", id="set"),
    pytest.param(frozenset({"a"}), "is a frozenset, which JSON would turn into a list",
                 id="frozenset"),
    pytest.param((1, 2), "is a tuple, which JSON would turn into a list", id="tuple"),
    pytest.param({1: "a"}, "has the int key 1, which JSON would turn into a string", id="int-key"),
    pytest.param({"deep": [(1, 2)]}, "at ['deep'][0] is a tuple", id="nested"),
]  # fmt: skip


@pytest.mark.parametrize(("value", "message"), AMBIGUOUS)
async def test_untyped_values_json_would_change_are_refused_before_any_write(
    client: tapeflow.Client, value: Any, message: str
) -> None:
    with pytest.raises(tapeflow.PayloadError) as typed_any:
        await client.start_workflow(takes_anything, value, id="never")
    assert str(typed_any.value).startswith("argument 'value' of workflow 'takes_anything'")
    assert message in str(typed_any.value)
    with pytest.raises(tapeflow.PayloadError, match="annotate it as"):
        await client.start_workflow("takes_anything", value, id="never")
    with pytest.raises(tapeflow.WorkflowNotFound):
        await client.describe("never")
    target = await client.start_workflow(waits_for_go, "ok", id="target")
    with pytest.raises(tapeflow.PayloadError, match=r"payload of event 'go'.*annotate it as"):
        await client.send_event(target.id, "go", value)
    assert await inbox_rows(client.backend, target.id) == 1  # only its start


async def test_an_untyped_activity_argument_is_refused_inside_the_workflow(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[charges_untyped], activities=[charge]):
        handle = await client.start_workflow(charges_untyped, Decimal("9.99"), id="charge")
        assert await handle.result(timeout=10) == (
            "refused: argument 'amount' of activity 'charge' is a Decimal, which JSON would "
            "turn into a string: annotate it as Decimal"
        )
    assert "activity_scheduled" not in kinds(await client.backend.load_history(handle.id))


async def test_precisely_annotated_values_round_trip_through_every_hop(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[precise_round_trip], activities=[echo_precise]):
        handle = await client.start_workflow(
            precise_round_trip, Decimal("1.10"), b"raw", (1, 2), {"a", "b"}, id="precise"
        )
        await client.send_event(handle.id, "amount", "0.05")  # the JSON form of a Decimal
        result = await handle.result(timeout=10)
    assert result == (Decimal("1.15"), b"raw", (1, 2), {"a", "b"})
    assert [type(part) for part in result] == [Decimal, bytes, tuple, set]
