"""A workflow that raises has failed: result() raises WorkflowFailed with the error's type
and message, the stored status is FAILED, and it accepts no more events."""

from __future__ import annotations

import pytest

import tapeflow
from tests.conftest import WorkerFactory
from tests.scenarios.workflow_failure import (
    bill_unknown_customer,
    check_invoice,
    lookup_customer,
    reject_invoice,
)

ACTIVITIES = [check_invoice, lookup_customer]


async def test_an_exception_escaping_the_workflow_fails_it(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[reject_invoice], activities=ACTIVITIES):
        handle = await client.start_workflow(reject_invoice, 1042, id="invoice-1042")
        with pytest.raises(tapeflow.WorkflowFailed) as failed:
            await handle.result(timeout=10)

    assert failed.value.workflow_id == "invoice-1042"
    assert failed.value.type == "InvoiceRejected"
    assert failed.value.message == "invoice 1042 is over the limit"
    assert failed.value.traceback is not None
    assert "InvoiceRejected" in failed.value.traceback

    record = await handle.describe()
    assert record.status == tapeflow.WorkflowStatus.FAILED
    assert record.result is None
    assert record.failure is not None
    assert (record.failure.type, record.failure.message) == (
        "InvoiceRejected",
        "invoice 1042 is over the limit",
    )

    # Asked again, by a fresh handle: the same failure, at once.
    with pytest.raises(tapeflow.WorkflowFailed) as again:
        await client.get_handle("invoice-1042").result(timeout=1)
    assert (again.value.type, again.value.message) == (
        "InvoiceRejected",
        "invoice 1042 is over the limit",
    )
    # The event is refused with the status the workflow really has, not "completed".
    with pytest.raises(tapeflow.WorkflowAlreadyCompleted) as ended:
        await client.send_event("invoice-1042", "retry")
    assert ended.value.status == tapeflow.WorkflowStatus.FAILED
    assert str(ended.value) == (
        "workflow 'invoice-1042' has already failed: it accepts no more events"
    )


async def test_an_uncaught_activity_error_fails_the_workflow(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    async with worker(workflows=[bill_unknown_customer], activities=ACTIVITIES):
        handle = await client.start_workflow(bill_unknown_customer, "zoe", id="bill-zoe")
        with pytest.raises(tapeflow.WorkflowFailed) as failed:
            await handle.result(timeout=10)
    # The workflow failed with the ActivityError it let escape, which names the activity's
    # own failure.
    assert failed.value.type == "ActivityError"
    assert failed.value.message == (
        "activity 'lookup_customer' failed after 1 attempt(s): UnknownCustomer: no customer 'zoe'"
    )
    assert (await handle.describe()).status == tapeflow.WorkflowStatus.FAILED
