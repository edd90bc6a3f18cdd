"""The bank transfer saga: across banks in three steps, and when a step fails for
good the steps already done are compensated in reverse order, so the money adds up."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest

import tapeflow
from tests.conftest import WorkerFactory
from tests.scenarios.bank_transfer import (
    ALL_ACTIVITIES,
    Posting,
    Receipt,
    Transfer,
    bank_transfer,
    open_ledger,
)

OPENING = {
    "A/alice": 100,
    "A/bob": 20,
    "A/reserve": 1000,
    "B/carol": 5,
    "B/reserve": 1000,
}
TOTAL = sum(OPENING.values())

DEBIT = Posting("debit_to_reserve", "A/alice", "A/reserve", 30)
MOVE = Posting("move_between_banks", "A/reserve", "B/reserve", 30)
CREDIT = Posting("credit_from_reserve", "B/reserve", "B/carol", 30)
UNDO_DEBIT = Posting("undo_debit_to_reserve", "A/reserve", "A/alice", 30)
UNDO_MOVE = Posting("undo_move_between_banks", "B/reserve", "A/reserve", 30)


@dataclass(frozen=True)
class Case:
    frozen: frozenset[str]
    """The account whose freeze makes the chosen step fail."""
    postings: list[Posting]
    """What the ledger applies, in order: the steps, then their compensations."""
    failure: str | None


CASES = {
    "no-failure": Case(frozenset(), [DEBIT, MOVE, CREDIT], None),
    "step-1-fails": Case(
        frozenset({"A/alice"}),
        [],
        "debit_to_reserve failed (AccountFrozen: A/alice is frozen); compensated by: nothing",
    ),
    "step-2-fails": Case(
        frozenset({"B/reserve"}),
        [DEBIT, UNDO_DEBIT],
        "move_between_banks failed (AccountFrozen: B/reserve is frozen); "
        "compensated by: undo_debit_to_reserve",
    ),
    "step-3-fails": Case(
        frozenset({"B/carol"}),
        [DEBIT, MOVE, UNDO_MOVE, UNDO_DEBIT],
        "credit_from_reserve failed (AccountFrozen: B/carol is frozen); "
        "compensated by: undo_move_between_banks, undo_debit_to_reserve",
    ),
}


def ledger_id() -> str:
    return f"ledger-{uuid.uuid4().hex}"


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_cross_bank_transfer_compensates_in_reverse_order_and_money_adds_up(
    client: tapeflow.Client, worker: WorkerFactory, case: Case
) -> None:
    lid = ledger_id()
    with open_ledger(lid, OPENING, frozen=case.frozen) as ledger:
        async with worker(workflows=[bank_transfer], activities=ALL_ACTIVITIES):
            handle = await client.start_workflow(
                bank_transfer, Transfer(lid, "A", "alice", "B", "carol", 30), id="transfer-1"
            )
            if case.failure is None:
                receipt = await handle.result(timeout=10)
                assert receipt == Receipt(
                    steps=["debit_to_reserve", "move_between_banks", "credit_from_reserve"]
                )
            else:
                with pytest.raises(tapeflow.WorkflowFailed) as failed:
                    await handle.result(timeout=10)
                assert failed.value.type == "TransferFailed"
                assert failed.value.message == case.failure
                assert (await handle.describe()).status == tapeflow.WorkflowStatus.FAILED

        assert ledger.journal == case.postings
        balances = ledger.balances
    assert sum(balances.values()) == TOTAL
    if case.failure is None:
        assert balances == {**OPENING, "A/alice": 70, "B/carol": 35}
    else:
        assert balances == OPENING


async def test_same_bank_transfer_is_one_step(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    lid = ledger_id()
    with open_ledger(lid, OPENING) as ledger:
        async with worker(workflows=[bank_transfer], activities=ALL_ACTIVITIES):
            handle = await client.start_workflow(
                bank_transfer, Transfer(lid, "A", "alice", "A", "bob", 30), id="transfer-1"
            )
            assert await handle.result(timeout=10) == Receipt(steps=["transfer_within_bank"])
        assert ledger.journal == [Posting("transfer_within_bank", "A/alice", "A/bob", 30)]
        assert ledger.balances == {**OPENING, "A/alice": 70, "A/bob": 50}


async def test_same_bank_transfer_without_funds_fails_and_moves_nothing(
    client: tapeflow.Client, worker: WorkerFactory
) -> None:
    lid = ledger_id()
    with open_ledger(lid, OPENING) as ledger:
        async with worker(workflows=[bank_transfer], activities=ALL_ACTIVITIES):
            handle = await client.start_workflow(
                bank_transfer, Transfer(lid, "A", "alice", "A", "bob", 500), id="transfer-1"
            )
            with pytest.raises(tapeflow.WorkflowFailed) as failed:
                await handle.result(timeout=10)
        assert failed.value.type == "TransferFailed"
        assert failed.value.message == (
            "transfer_within_bank: InsufficientFunds: A/alice has 100, less than 500"
        )
        assert ledger.journal == []
        assert ledger.balances == OPENING
