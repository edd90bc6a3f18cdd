"""Argument checks for every public entry point: one meaning of "bad input" and one message
shape (the argument, the value, what was expected), so a bad value fails where it is given,
as ``InvalidArgument``, instead of deep inside a worker or a database driver."""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import NoReturn, TypeVar

from tapeflow.errors import InvalidArgument

T = TypeVar("T")

MAX_NAME_LENGTH = 255


def fail(what: str, value: object, expected: str) -> NoReturn:
    raise InvalidArgument(f"{what} must be {expected}, got {value!r}")


def check_name(value: object, what: str, *, allow_empty: bool = False) -> str:
    """Ids, names and versions: at most 255 characters, none of them a control character
    or a lone surrogate (databases refuse those); anything else round-trips exactly."""
    limits = "at most" if allow_empty else "1 to"
    expected = f"a string of {limits} {MAX_NAME_LENGTH} characters"
    if not isinstance(value, str):
        fail(what, value, expected)
    if len(value) > MAX_NAME_LENGTH or not (value.strip() or (allow_empty and not value)):
        fail(what, value, expected)
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value):
        fail(what, value, f"{expected}, without control characters")
    return value


MAX_TIMEOUT = timedelta(days=36_500)
"""The longest timeout taken: a hundred years (past that, dates overflow)."""


def check_timeout(value: object, what: str) -> float | None:
    """A timeout: None, or a positive timedelta of at most MAX_TIMEOUT; in seconds."""
    if value is None:
        return None
    return check_timedelta(value, what, positive=True, maximum=MAX_TIMEOUT).total_seconds()


MAX_REASON_LENGTH = 4096


def check_reason(value: object, what: str) -> str:
    """Free text kept with a workflow (a cancel's reason): a string the databases can store
    (no NUL, no lone surrogate), at most MAX_REASON_LENGTH characters."""
    expected = f"a string of at most {MAX_REASON_LENGTH} characters"
    if not isinstance(value, str) or len(value) > MAX_REASON_LENGTH:
        fail(what, value, expected)
    if any(ch == "\0" or unicodedata.category(ch) == "Cs" for ch in value):
        fail(what, value, f"{expected}, without NUL or lone surrogates")
    return value


def check_label(value: object, what: str) -> str:
    """A name shown in logs and lease owners: printable, so no log line can be forged."""
    label = check_name(value, what)
    if not label.isprintable():
        fail(what, value, "printable (no control, format or separator characters)")
    return label


def check_bool(value: object, what: str) -> bool:
    """Only ``True`` or ``False``: ``"no"`` is truthy, and a flag that means the opposite
    of what was written is worse than an error."""
    if not isinstance(value, bool):
        fail(what, value, "True or False")
    return value


def check_int(value: object, what: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        fail(what, value, f"an integer >= {minimum}")
    return value


def check_number(value: object, what: str, *, minimum: float) -> float:
    """A finite real number (not a bool, not a numeric string)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        fail(what, value, f"a finite number >= {minimum}")
    if not (math.isfinite(value) and value >= minimum):
        fail(what, value, f"a finite number >= {minimum}")
    return float(value)


def check_choice(value: object, what: str, choices: Collection[T]) -> T:
    for choice in choices:
        if type(value) is type(choice) and value == choice:
            return choice
    fail(what, value, "one of " + ", ".join(repr(choice) for choice in choices))


def check_timedelta(
    value: object,
    what: str,
    *,
    positive: bool = False,
    maximum: timedelta = timedelta.max,
) -> timedelta:
    """A ``timedelta``, non-negative (or positive), and at most ``maximum``."""
    low = "positive" if positive else "non-negative"
    expected = f"a {low} timedelta of at most {maximum}"
    if not isinstance(value, timedelta):
        fail(what, value, expected)
    if value < timedelta(0) or (positive and not value) or value > maximum:
        fail(what, value, expected)
    return value


def check_seconds(value: object, what: str) -> float:
    """A duration given as a ``timedelta`` or a number of seconds: finite, non-negative."""
    if isinstance(value, timedelta):
        return check_timedelta(value, what).total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        fail(what, value, "a timedelta or a finite number of seconds >= 0")
    return check_number(value, what, minimum=0)


def check_moment(value: object, what: str) -> datetime:
    """A tz-aware datetime that both backends can store: it must stay within the years
    1 to 9999 once converted to UTC, which is how every backend keeps it."""
    if not isinstance(value, datetime) or value.utcoffset() is None:
        fail(what, value, "a tz-aware datetime")
    try:
        value.astimezone(UTC)
    except OverflowError:
        fail(what, value, "within the years 1 to 9999 in UTC")
    return value
