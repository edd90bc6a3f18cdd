"""Values that are JSON already skip pydantic; everything else, and every refusal, is the
same on both paths."""

from __future__ import annotations

import enum
import itertools
import json
import math
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast, get_origin

import pytest
from pydantic import TypeAdapter

from tapeflow import _json_values, converter
from tapeflow._json_values import MAX_INT_DIGITS
from tapeflow.converter import Signature, from_json, to_json
from tapeflow.errors import PayloadError
from tapeflow.history import EventReceived, decode_event, encode_event


class Colour(enum.StrEnum):
    RED = "red"


PLAIN: list[tuple[object, object]] = [
    (7, int),
    (7, Any),
    (-(2**70), Any),
    ("héllo", str),
    (2.5, float),
    (True, bool),
    (None, Any),
    ([1, "a", None, [2.0, {"k": False}]], Any),
    ({"a": [1, 2], "b": {"c": "d"}}, Any),
]


@pytest.mark.parametrize(("value", "hint"), PLAIN)
def test_plain_values_come_out_as_pydantic_would_make_them(value: object, hint: object) -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(cast(Any, hint))
    assert to_json(value, hint) == adapter.dump_python(value, mode="json")
    assert from_json(to_json(value, hint), hint) == value


def test_plain_values_do_not_go_through_pydantic(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_adapter(hint: object) -> Any:
        raise AssertionError(f"pydantic used for {hint}")

    monkeypatch.setattr(converter, "_adapter", no_adapter)
    for value, hint in PLAIN:
        assert from_json(to_json(value, hint), hint) == value


@pytest.mark.parametrize(
    ("value", "hint", "expected"),
    [
        ((1, 2), tuple[int, int], [1, 2]),  # annotated: pydantic restores it
        ({1: "a"}, dict[int, str], {"1": "a"}),
        (Colour.RED, Colour, "red"),  # a str subclass: its own type rules
        (Colour.RED, Any, "red"),  # untyped, yet an annotation on the other side restores it
        (True, int, True),  # bool is not int here: pydantic decides
    ],
)
def test_values_that_need_converting_still_are(
    value: object, hint: object, expected: object
) -> None:
    assert to_json(value, hint) == expected


@pytest.mark.parametrize(
    "value", [math.nan, math.inf, "\ud800", ["ok", "\udfff"], {"k": math.nan}], ids=repr
)
def test_what_json_cannot_hold_is_refused_on_the_fast_path(value: object) -> None:
    with pytest.raises(PayloadError):
        to_json(value)


def test_the_size_limit_holds_on_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_json_values, "MAX_PAYLOAD_BYTES", 100)
    with pytest.raises(PayloadError, match="over the 100-byte limit"):
        to_json(["x" * 60, "y" * 60])
    with pytest.raises(PayloadError, match="over the 100-byte limit"):
        to_json("z" * 101, str)


def _two(a: int, b: int = 2) -> None: ...


def _many(a: int, *rest: int) -> None: ...


def _keyword(a: int, *, must: int) -> None: ...


@pytest.mark.parametrize(
    ("function", "args", "binds"),
    [
        (_two, (1,), True),
        (_two, (1, 2), True),
        (_two, (), False),
        (_two, (1, 2, 3), False),
        (_many, (1, 2, 3, 4), True),
        (_many, (), False),
        (_keyword, (1,), False),  # the keyword-only argument cannot be given positionally
    ],
)
def test_arguments_are_checked_against_the_signature(
    function: Callable[..., None], args: tuple[int, ...], binds: bool
) -> None:
    signature = Signature(function)
    if binds:
        assert signature.encode_args(args) == list(args)
    else:
        with pytest.raises(PayloadError, match="bad arguments"):
            signature.encode_args(args)


# -- untyped values that JSON would change are refused, with the annotation that keeps them -----


def charge(amount, note: Any = None) -> None:  # type: ignore[no-untyped-def]
    """Its first argument is unannotated, its second typed Any: both are untyped."""


@dataclass(frozen=True)
class Order:
    amount: Decimal
    items: tuple[int, int]


AMBIGUOUS: list[Any] = [
    pytest.param(Decimal("1.10"), "is a Decimal, which JSON would turn into a string: "
                 "annotate it as Decimal", id="decimal"),
    pytest.param(b"abc", "is a bytes, which JSON would turn into a string: annotate it as bytes",
                 id="bytes"),
    pytest.param(bytearray(b"abc"), "is a bytearray, which JSON would turn into a string: "
                 "annotate it as bytes", id="bytearray"),
    pytest.param(1 + 2j, "is a complex, which JSON would turn into a string", id="complex"),
    pytest.param({1, 2}, "is a set, which JSON would turn into a list: annotate it as set[...]",
                 id="set"),
    pytest.param(frozenset({1}), "annotate it as frozenset[...]", id="frozenset"),
    pytest.param((1, 2), "is a tuple, which JSON would turn into a list: annotate it as "
                 "tuple[...]", id="tuple"),
    pytest.param(deque([1]), "annotate it as deque[...]", id="deque"),
    pytest.param({1: "a"}, "has the int key 1, which JSON would turn into a string: "
                 "annotate it as dict[int, ...]", id="int-key"),
    pytest.param({(1, 2): "a"}, "has the tuple key (1, 2)", id="tuple-key"),
    pytest.param({"order": {"total": Decimal(1)}}, "at ['order']['total'] is a Decimal",
                 id="nested-decimal"),
    pytest.param([1, [2, (3, 4)]], "at [1][1] is a tuple", id="nested-tuple"),
    pytest.param([datetime(2024, 1, 1, tzinfo=UTC), {5}], "at [1] is a set",
                 id="set-after-a-date"),
]  # fmt: skip


@pytest.mark.parametrize(("value", "message"), AMBIGUOUS)
def test_untyped_values_json_would_change_are_refused_saying_to_annotate(
    value: object, message: str
) -> None:
    signature = Signature(charge, "activity 'charge'")
    with pytest.raises(PayloadError) as unannotated:
        signature.encode_args([value])
    assert str(unannotated.value).startswith("argument 'amount' of activity 'charge'")
    assert message in str(unannotated.value)
    with pytest.raises(PayloadError, match="argument 'note' of activity 'charge'") as typed_any:
        signature.encode_args([1, value])
    assert message in str(typed_any.value)
    for hint in (Any, object):
        with pytest.raises(PayloadError, match="annotate it as"):
            to_json(value, hint)


ANNOTATED: list[tuple[object, object]] = [
    (Decimal("1.10"), Decimal),
    (b"abc", bytes),
    (1 + 2j, complex),
    ({"a", "b"}, set[str]),
    (frozenset({1}), frozenset[int]),
    ((1, 2), tuple[int, int]),
    (deque([1]), deque[int]),
    ({1: "a"}, dict[int, str]),
    (Order(Decimal("9.99"), (1, 2)), Order),
    (Decimal(10 ** (MAX_INT_DIGITS + 5)), Decimal),  # a long integer, as the refusal says
]


def _kind(item: object) -> str:
    """A test id: a type as written, a value by its type (a long int has no repr)."""
    return str(item) if get_origin(item) else getattr(item, "__name__", type(item).__name__)


@pytest.mark.parametrize(("value", "hint"), ANNOTATED, ids=_kind)
def test_the_same_values_annotated_round_trip_exactly(value: object, hint: object) -> None:
    back = from_json(to_json(value, hint), hint)
    assert back == value
    assert type(back) is type(value)


def test_untyped_records_dates_and_enums_take_their_usual_json_form() -> None:
    """Their JSON form is what the reading side's annotation restores (an event sent as a
    dataclass, read with ``wait_event(type=...)``): converted, not refused."""
    when = datetime(2024, 1, 1, tzinfo=UTC)
    assert to_json({"at": when, "colour": Colour.RED}) == {
        "at": "2024-01-01T00:00:00Z",
        "colour": "red",
    }
    assert to_json(Order(Decimal("9.99"), (1, 2))) == {"amount": "9.99", "items": [1, 2]}


# -- iterators are refused, never exhausted -----------------------------------------------------


def _generator() -> Iterator[int]:
    yield from range(3)


ITERATORS: dict[str, Callable[[], Iterator[int]]] = {
    "count": itertools.count,
    "generator": _generator,
    "list-iterator": lambda: iter([0, 1]),
    "map": lambda: map(int, "012"),
}
HINTS: dict[str, object] = {"Any": Any, "list[int]": list[int], "Iterable[int]": Iterable[int]}


@pytest.mark.parametrize(
    ("make", "hint"),
    [
        *(
            pytest.param(make, hint, id=f"{name}-{hint_name}")
            for name, make in ITERATORS.items()
            for hint_name, hint in HINTS.items()
        ),
        pytest.param(lambda: [1, {"rest": itertools.repeat(0)}], Any, id="nested-repeat-Any"),
    ],
)
def test_iterators_are_refused_without_being_exhausted(
    make: Callable[[], object], hint: object
) -> None:
    value = make()
    with pytest.raises(PayloadError, match="will not exhaust to store it: make it a list"):
        to_json(value, hint, what="result of activity 'counts'")
    if isinstance(value, Iterator):
        assert next(value) == 0  # not even started


# -- integers too long for JSON readers ---------------------------------------------------------

LONGEST = 10**MAX_INT_DIGITS - 1
"""4,300 digits: the longest integer pydantic's JSON parser (which reads history) takes."""
TOO_LONG = 10**MAX_INT_DIGITS


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        (TOO_LONG, Any),
        (-TOO_LONG, Any),
        (TOO_LONG, int),
        (TOO_LONG, int | None),
        ([1, TOO_LONG], Any),
        ({"n": [TOO_LONG]}, Any),
        ([1, TOO_LONG], list[int]),
        ({"n": TOO_LONG}, dict[str, int]),
    ],
    ids=["any", "negative", "int", "optional", "in-list", "in-dict", "list[int]", "dict[str,int]"],
)
@pytest.mark.parametrize("python_limit", [4300, 0], ids=["python-limit", "no-python-limit"])
def test_integers_too_long_to_read_back_are_refused(
    value: object, hint: object, python_limit: int
) -> None:
    """Whatever Python's own limit is set to: pydantic's parser has a fixed one."""
    before = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(python_limit)
    try:
        with pytest.raises(PayloadError, match=r"more than 4,300 digits.*make it a Decimal"):
            to_json(value, hint, what="payload of event 'n'")
    finally:
        sys.set_int_max_str_digits(before)


def test_the_longest_integer_json_readers_take_is_stored_and_read_back() -> None:
    for value in (LONGEST, -LONGEST, [LONGEST]):
        stored = encode_event(EventReceived(name="n", payload=to_json(value)))
        decoded = decode_event(stored)
        assert isinstance(decoded, EventReceived)
        assert decoded.payload == value
        assert json.loads(stored)["payload"] == value


# -- wrong types: which value, the type it should be, the type it is ----------------------------


@dataclass(frozen=True)
class Point:
    x: int
    y: int


def place(label: str, at: Point, tags: list[int]) -> None: ...


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            [7, Point(1, 2), []],
            "argument 'label' of activity 'place' must be str, not int: 7",
        ),
        (
            ["a", "here", []],
            "argument 'at' of activity 'place' must be Point, not str: 'here'",
        ),
        (
            ["a", Point(1, 2), [1, "x"]],
            "argument 'tags' of activity 'place' must be list[int], not list: [1, 'x'] "
            "(at [1]: Input should be a valid integer",
        ),
    ],
    ids=["scalar", "record", "nested"],
)
def test_a_wrong_argument_names_the_argument_and_both_types(
    args: list[object], message: str
) -> None:
    with pytest.raises(PayloadError) as refused:
        Signature(place, "activity 'place'").encode_args(args)
    assert str(refused.value).startswith(message)
    assert "errors.pydantic.dev" not in str(refused.value)


def test_a_stored_value_that_does_not_decode_names_the_argument_and_both_types() -> None:
    with pytest.raises(PayloadError) as refused:
        Signature(place, "workflow 'place'").decode_args(["a", {"x": "one", "y": 2}, []])
    assert str(refused.value) == (
        "argument 'at' of workflow 'place' must be Point, not dict: {'x': 'one', 'y': 2} "
        "(at ['x']: Input should be a valid integer, unable to parse string as an integer)"
    )
