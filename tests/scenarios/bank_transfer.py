"""The bank transfer saga.

A transfer within one bank is one activity. Across banks it is three steps: debit the
source account into its bank's reserve, move the money from that reserve to the
destination bank's reserve, credit the destination account from its bank's reserve. If a
step fails for good, the steps already done are undone by compensating activities, in
reverse order, and the workflow fails with ``TransferFailed``.

Balances live in an in-memory ``Ledger`` (thread-safe, since sync activities run in a
thread pool) found by the ``ledger_id`` in the input. A move touching a frozen account is
refused with a final error: that is how a test makes a chosen step fail. Each applied move
is recorded in the ledger's journal, so a test can check which steps and compensations ran.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeAlias

import tapeflow
from tapeflow import activity, workflow


def account(bank: str, name: str) -> str:
    return f"{bank}/{name}"


def reserve(bank: str) -> str:
    """The bank's own account that money passes through on its way to another bank."""
    return account(bank, "reserve")


@dataclass(frozen=True)
class Posting:
    """One applied move, as the ledger's journal records it."""

    action: str
    source: str
    target: str
    amount: int


class Ledger:
    def __init__(self, balances: Mapping[str, int], frozen: frozenset[str]) -> None:
        self._lock = threading.Lock()
        self._balances = dict(balances)
        self._frozen = frozen
        self._journal: list[Posting] = []
        self._applied: set[str] = set()

    def move(self, key: str, action: str, source: str, target: str, amount: int) -> None:
        """Move ``amount`` once per ``key`` (an activity may run more than once)."""
        with self._lock:
            if key in self._applied:
                return
            for name in (source, target):
                if name not in self._balances:
                    raise tapeflow.NonRetryableError(f"no account {name}", type="UnknownAccount")
                if name in self._frozen:
                    raise tapeflow.NonRetryableError(f"{name} is frozen", type="AccountFrozen")
            if self._balances[source] < amount:
                raise tapeflow.NonRetryableError(
                    f"{source} has {self._balances[source]}, less than {amount}",
                    type="InsufficientFunds",
                )
            self._balances[source] -= amount
            self._balances[target] += amount
            self._journal.append(Posting(action, source, target, amount))
            self._applied.add(key)

    @property
    def balances(self) -> dict[str, int]:
        with self._lock:
            return dict(self._balances)

    @property
    def journal(self) -> list[Posting]:
        with self._lock:
            return list(self._journal)


_ledgers: dict[str, Ledger] = {}
_ledgers_lock = threading.Lock()


@contextmanager
def open_ledger(
    ledger_id: str, balances: Mapping[str, int], frozen: frozenset[str] = frozenset()
) -> Iterator[Ledger]:
    """Make a ledger findable by ``ledger_id`` for the duration of the block."""
    ledger = Ledger(balances, frozen)
    with _ledgers_lock:
        if ledger_id in _ledgers:
            raise ValueError(f"ledger {ledger_id!r} is already open")
        _ledgers[ledger_id] = ledger
    try:
        yield ledger
    finally:
        with _ledgers_lock:
            del _ledgers[ledger_id]


def _ledger(ledger_id: str) -> Ledger:
    with _ledgers_lock:
        return _ledgers[ledger_id]


@dataclass(frozen=True)
class Transfer:
    ledger_id: str
    from_bank: str
    from_account: str
    to_bank: str
    to_account: str
    amount: int


@dataclass(frozen=True)
class Move:
    ledger_id: str
    source: str
    target: str
    amount: int


def _apply(action: str, move: Move) -> None:
    info = activity.info()
    _ledger(move.ledger_id).move(
        f"{info.workflow_id}/{info.seq}", action, move.source, move.target, move.amount
    )


@activity.defn
def transfer_within_bank(move: Move) -> None:
    _apply("transfer_within_bank", move)


@activity.defn
def debit_to_reserve(move: Move) -> None:
    _apply("debit_to_reserve", move)


@activity.defn
def move_between_banks(move: Move) -> None:
    _apply("move_between_banks", move)


@activity.defn
def credit_from_reserve(move: Move) -> None:
    _apply("credit_from_reserve", move)


@activity.defn
def undo_debit_to_reserve(move: Move) -> None:
    """Compensates ``debit_to_reserve``: ``move`` is the original, applied backwards."""
    _apply("undo_debit_to_reserve", _backwards(move))


@activity.defn
def undo_move_between_banks(move: Move) -> None:
    """Compensates ``move_between_banks``: ``move`` is the original, applied backwards."""
    _apply("undo_move_between_banks", _backwards(move))


def _backwards(move: Move) -> Move:
    return Move(move.ledger_id, source=move.target, target=move.source, amount=move.amount)


MoveActivity: TypeAlias = Callable[[Move], None]

ALL_ACTIVITIES: list[MoveActivity] = [
    transfer_within_bank,
    debit_to_reserve,
    move_between_banks,
    credit_from_reserve,
    undo_debit_to_reserve,
    undo_move_between_banks,
]

STEP_RETRY = tapeflow.RetryPolicy(initial_interval=timedelta(milliseconds=50), maximum_attempts=3)
COMPENSATION_RETRY = tapeflow.RetryPolicy(initial_interval=timedelta(milliseconds=50))
"""A compensation must not give up: retried until it succeeds."""


class TransferFailed(Exception):
    """The transfer did not happen; every step that had been done was undone."""


@dataclass(frozen=True)
class Receipt:
    steps: list[str]


@workflow.defn
async def bank_transfer(t: Transfer) -> Receipt:
    source = account(t.from_bank, t.from_account)
    target = account(t.to_bank, t.to_account)
    if t.from_bank == t.to_bank:
        try:
            await workflow.execute_activity(
                transfer_within_bank, Move(t.ledger_id, source, target, t.amount), retry=STEP_RETRY
            )
        except tapeflow.ActivityError as err:
            raise TransferFailed(f"transfer_within_bank: {err.type}: {err.message}") from None
        return Receipt(steps=["transfer_within_bank"])

    steps: list[tuple[MoveActivity, Move, MoveActivity | None]] = [
        (
            debit_to_reserve,
            Move(t.ledger_id, source, reserve(t.from_bank), t.amount),
            undo_debit_to_reserve,
        ),
        (
            move_between_banks,
            Move(t.ledger_id, reserve(t.from_bank), reserve(t.to_bank), t.amount),
            undo_move_between_banks,
        ),
        (credit_from_reserve, Move(t.ledger_id, reserve(t.to_bank), target, t.amount), None),
    ]
    done: list[str] = []
    compensations: list[tuple[MoveActivity, Move]] = []
    for step, move, undo in steps:
        try:
            await workflow.execute_activity(step, move, retry=STEP_RETRY)
        except tapeflow.ActivityError as err:
            undone = []
            for compensate, original in reversed(compensations):
                await workflow.execute_activity(compensate, original, retry=COMPENSATION_RETRY)
                undone.append(compensate.__name__)
            raise TransferFailed(
                f"{step.__name__} failed ({err.type}: {err.message}); "
                f"compensated by: {', '.join(undone) or 'nothing'}"
            ) from None
        done.append(step.__name__)
        if undo is not None:
            compensations.append((undo, move))
    return Receipt(steps=done)
