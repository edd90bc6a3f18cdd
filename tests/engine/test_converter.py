"""Values that are JSON already skip pydantic; everything else, and every refusal, is the
same on both paths."""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from typing import Any, cast

import pytest
from pydantic import TypeAdapter

from tapeflow import converter
from tapeflow.converter import Signature, from_json, to_json
from tapeflow.errors import PayloadError


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
        ((1, 2), Any, [1, 2]),  # a tuple is not JSON: converted
        ({1: "a"}, Any, {"1": "a"}),  # a non-string key: converted
        (Colour.RED, Colour, "red"),  # a str subclass: its own type rules
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
    monkeypatch.setattr(converter, "MAX_PAYLOAD_BYTES", 100)
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
