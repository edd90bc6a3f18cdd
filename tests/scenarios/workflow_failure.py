"""Workflows that end with an error: an exception that escapes the workflow function is its
failed result."""

from __future__ import annotations

import tapeflow
from tapeflow import activity, workflow


class InvoiceRejected(Exception):
    """A workflow's own error type."""


@activity.defn
def check_invoice(number: int) -> int:
    return number


@activity.defn
def lookup_customer(customer: str) -> str:
    raise tapeflow.NonRetryableError(f"no customer {customer!r}", type="UnknownCustomer")


@workflow.defn
async def reject_invoice(number: int) -> str:
    checked = await workflow.execute_activity(check_invoice, number)
    raise InvoiceRejected(f"invoice {checked} is over the limit")


@workflow.defn
async def bill_unknown_customer(customer: str) -> str:
    """Does not catch the activity's final failure: it fails the workflow."""
    return await workflow.execute_activity(lookup_customer, customer)
