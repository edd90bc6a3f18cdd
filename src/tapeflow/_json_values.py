"""What JSON holds exactly, and the refusal of everything else before it is written.

A value written is read back by every worker and client from then on: one that cannot be
read, or reads back as something else, would wedge or silently change a workflow. So an
untyped value (annotated ``Any`` or not at all) must be JSON already, or of a kind whose JSON
form the reading side restores by its own annotation (dataclasses, models, dates, UUIDs,
enums). Values that JSON would change (a tuple comes back a list, a Decimal a string, the
key 1 the key "1") are refused with the annotation that keeps them, and iterators are
refused outright: storing one means exhausting it, perhaps forever.
"""

from __future__ import annotations

import enum
import json
import math
import os
import sys
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

from tapeflow.codec import ENVELOPE_KEY
from tapeflow.errors import PayloadError

MAX_PAYLOAD_BYTES = int(os.environ.get("TAPEFLOW_MAX_PAYLOAD_BYTES", 2 * 1024 * 1024))
"""Largest JSON form of one value (argument, result, event payload, heartbeat), checked
before anything is written. Set $TAPEFLOW_MAX_PAYLOAD_BYTES to change it."""

MAX_INT_DIGITS = 4300
"""Longer integers are refused: pydantic's JSON parser (which reads history) cannot read
them back, whatever ``sys.set_int_max_str_digits`` says, and Python's ``int`` refuses them
by default."""

_INT_BOUND = 10**MAX_INT_DIGITS

SCALARS = frozenset({int, float, str, bool, type(None)})
"""Types that are JSON as they are: exactly these, not subclasses (enums, say)."""

_AS_STRING = {Decimal: "Decimal", complex: "complex", bytes: "bytes", bytearray: "bytes"}
"""Scalars that JSON turns into strings (read back as strings), and what to annotate them."""


@dataclass(frozen=True)
class _Spot:
    """A place in a value where it stops being plain JSON."""

    path: tuple[object, ...]
    value: object
    is_key: bool = False


def _spots(value: object, path: tuple[object, ...] = ()) -> Iterator[_Spot]:
    """Every place where ``value`` is not plain JSON (not descending into such places)."""
    kind = type(value)
    if kind is int:
        if not -_INT_BOUND < cast(int, value) < _INT_BOUND:
            yield _Spot(path, value)
    elif kind in SCALARS:
        return
    elif kind is list:
        for index, item in enumerate(cast(list[object], value)):
            yield from _spots(item, (*path, index))
    elif kind is dict:
        for key, item in cast(dict[object, object], value).items():
            if type(key) is str:
                yield from _spots(item, (*path, key))
            else:
                yield _Spot(path, key, is_key=True)
    else:
        yield _Spot(path, value)


def _refusal(spot: _Spot) -> str | None:
    """Why the value at ``spot`` cannot be stored as it is, or None if pydantic may convert
    it (a record, date, UUID or enum, which the reading side's annotation restores)."""
    value, name = spot.value, type(spot.value).__qualname__
    if spot.is_key:
        return (
            f"has the {name} key {value!r}, which JSON would turn into a string: "
            f"annotate it as dict[{name}, ...]"
        )
    if type(value) is int:
        return (
            f"is an integer of more than {MAX_INT_DIGITS:,} digits, which JSON readers "
            "refuse: make it a Decimal (annotated as Decimal) or a string"
        )
    if isinstance(value, Iterator):
        return f"is a {name}, which tapeflow will not exhaust to store it: make it a list"
    for kind, annotation in _AS_STRING.items():
        if isinstance(value, kind):
            return f"is a {name}, which JSON would turn into a string: annotate it as {annotation}"
    if isinstance(value, Collection) and not isinstance(value, Mapping | str | enum.Enum):
        return f"is a {name}, which JSON would turn into a list: annotate it as {name}[...]"
    return None


def _at(path: tuple[object, ...]) -> str:
    return "".join(f"[{step!r}]" for step in path)


def _refuse(spot: _Spot, reason: str, what: str) -> PayloadError:
    where = f" at {_at(spot.path)}" if spot.path else ""
    return PayloadError(f"{what}{where} {reason}")


def check_untyped(value: object, what: str) -> bool:
    """Refuse an untyped value that JSON would change or cannot read back; True if it is
    JSON already, False if pydantic must convert it."""
    plain = True
    try:
        for spot in _spots(value):
            reason = _refusal(spot)
            if reason is not None:
                raise _refuse(spot, reason, what)
            plain = False
    except RecursionError:
        raise PayloadError(f"{what} is nested too deeply to store") from None
    return plain


def check_iterator(value: object, what: str) -> None:
    """An iterator is refused before any conversion tries to exhaust it."""
    if isinstance(value, Iterator):
        raise _refuse(_Spot((), value), cast(str, _refusal(_Spot((), value))), what)


def check_json(data: Any, what: str) -> None:
    """Strict JSON (no NaN, valid UTF-8, integers JSON readers take) of at most
    MAX_PAYLOAD_BYTES: the one check every value passes before it is written."""
    if isinstance(data, int) or data is None:
        _first_refusal(data, what)
        return
    if isinstance(data, float):
        if not math.isfinite(data):
            raise PayloadError(f"{what} is {data}, which JSON cannot hold")
        return
    if isinstance(data, dict) and ENVELOPE_KEY in data:
        raise PayloadError(
            f"{what} is a dict with the key {ENVELOPE_KEY!r}, which tapeflow keeps for the "
            "payloads a codec encoded: nest it, or name the key otherwise"
        )
    try:
        if isinstance(data, str):
            size = len(data.encode())
        else:
            text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
            size = len(text.encode())
    except (ValueError, RecursionError) as exc:  # NaN/inf, lone surrogates, long ints, depth
        _first_refusal(data, what)
        raise PayloadError(f"{what} cannot be stored as JSON: {exc}") from None
    if size > MAX_PAYLOAD_BYTES:
        raise PayloadError(
            f"{what} is {size:,} bytes as JSON, over the {MAX_PAYLOAD_BYTES:,}-byte limit "
            "($TAPEFLOW_MAX_PAYLOAD_BYTES): store large data elsewhere and pass a reference"
        )
    if size > MAX_INT_DIGITS and not 0 < sys.get_int_max_str_digits() <= MAX_INT_DIGITS:
        _first_refusal(data, what)  # Python's limit was lifted: json.dumps let them through


def _first_refusal(data: object, what: str) -> None:
    try:
        spot = next(_spots(data), None)
    except RecursionError:
        return
    reason = None if spot is None else _refusal(spot)
    if spot is not None and reason is not None:
        raise _refuse(spot, reason, what)
