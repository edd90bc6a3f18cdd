"""What can be registered: methods of an object, and functions that never return."""

from __future__ import annotations

import asyncio
from typing import Never, NoReturn

import pytest

import tapeflow
from tapeflow import activity, workflow
from tapeflow._definition import definition_of
from tests.conftest import WorkerFactory


class Billing:
    """An activity that needs something only an object holds (a client, a pool)."""

    def __init__(self, account: str) -> None:
        self.account = account
        self.charged: list[int] = []

    @activity.defn
    def charge(self, amount: int) -> str:
        self.charged.append(amount)
        return f"{self.account} charged {amount}"

    @activity.defn(name="refund")
    async def refund_later(self, amount: int) -> str:
        await asyncio.sleep(0)
        return f"{self.account} refunded {amount}"

    @classmethod
    @activity.defn
    def currency(cls) -> str:
        return cls.__name__ + ":EUR"


@workflow.defn
async def bill(amount: int) -> list[str]:
    return [
        await workflow.execute_activity(Billing.charge, amount),
        await workflow.execute_activity(Billing.refund_later, amount // 2),
        await workflow.execute_activity(Billing.currency),
    ]


@activity.defn
def reject(reason: str) -> NoReturn:
    raise tapeflow.NonRetryableError(reason)


@workflow.defn
async def rejected(reason: str) -> str:
    try:
        await workflow.execute_activity(reject, reason)
    except tapeflow.ActivityError as exc:
        return exc.message
    return "unreachable"


@workflow.defn
async def doomed(reason: str) -> Never:
    raise ValueError(reason)


async def test_bound_methods_run_on_their_object(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    billing = Billing("acct-7")
    activities = [billing.charge, billing.refund_later, Billing.currency]
    async with worker(workflows=[bill], activities=activities):
        handle = await client.start_workflow(bill, 10, id="bill-by-method")
        assert await handle.result(timeout=10) == [
            "acct-7 charged 10",
            "acct-7 refunded 5",
            "Billing:EUR",
        ]
    assert billing.charged == [10]


async def test_functions_annotated_never_returning_are_accepted(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[rejected, doomed], activities=[reject]):
        handle = await client.start_workflow(rejected, "card expired", id="never-returns")
        assert await handle.result(timeout=10) == "card expired"
        failing = await client.start_workflow(doomed, "no luck", id="never-returns-wf")
        with pytest.raises(tapeflow.WorkflowFailed, match="ValueError: no luck"):
            await failing.result(timeout=10)


def test_a_method_is_registered_bound_and_once(backend: tapeflow.Backend) -> None:
    billing = Billing("acct-1")
    worker = tapeflow.Worker(backend, activities=[billing.charge, billing.charge])
    assert sorted(worker.activities) == ["charge"]
    with pytest.raises(tapeflow.InvalidArgument, match="two different activity functions"):
        tapeflow.Worker(backend, activities=[billing.charge, Billing("acct-2").charge])
    with pytest.raises(tapeflow.InvalidArgument, match="is a method"):
        tapeflow.Worker(backend, activities=[Billing.charge])


class Undecorated:
    def pay(self, amount: int) -> int:
        return amount


def test_decorators_refuse_methods_they_cannot_run() -> None:
    with pytest.raises(tapeflow.NotADefinition, match="class body"):
        activity.defn(Undecorated().pay)

    with pytest.raises(tapeflow.NotADefinition, match="not a method"):

        class Flows:
            @workflow.defn
            async def run(self) -> None: ...


def test_a_function_annotated_never_returning_cannot_store_a_result() -> None:
    @activity.defn
    def liar() -> NoReturn:
        return None  # type: ignore[misc]

    signature = definition_of(liar, "activity").signature
    with pytest.raises(tapeflow.PayloadError, match="annotated -> NoReturn but returned None"):
        signature.encode_result(liar())
