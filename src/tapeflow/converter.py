"""Values <-> JSON, driven by the functions' type hints (pydantic does the work).

Inputs and outputs are stored as JSON values typed by the annotations of the workflow or
activity: dataclasses, pydantic models, TypedDicts, primitives, datetime, UUID, Decimal,
enums and containers of them come back as the annotated type, never as a bare dict.
Nothing is ever pickled.
"""

from __future__ import annotations

import inspect
import reprlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Never, NoReturn, cast, get_args, get_type_hints

from pydantic import (
    ConfigDict,
    PydanticSchemaGenerationError,
    PydanticUserError,
    TypeAdapter,
    ValidationError,
)
from pydantic_core import PydanticSerializationError

from tapeflow._json_values import (
    SCALARS,
    check_iterator,
    check_json,
    check_untyped,
)
from tapeflow.codec import ENVELOPE_KEY, KEYS_VARIABLE, is_envelope
from tapeflow.errors import CodecError, PayloadError
from tapeflow.history import JSONValue

_adapters: dict[object, TypeAdapter[Any]] = {}

_BOTTOM = (NoReturn, Never)
"""Return annotations of a function that never returns."""

_UNTYPED = (Any, object)
"""Annotations that say nothing about a value: it is stored as the JSON it already is."""

_STRICT_FLOATS = ConfigDict(ser_json_inf_nan="constants")
"""NaN and infinities stay floats when dumped, so the JSON check below refuses them
instead of pydantic silently storing null."""


def _adapter(hint: object) -> TypeAdapter[Any]:
    """The (cached) adapter for ``hint``; a type pydantic cannot handle is a PayloadError."""
    try:
        return _adapters[hint]
    except KeyError:
        adapter = _build_adapter(hint)
        _adapters[hint] = adapter
        return adapter
    except TypeError:  # an unhashable hint: build one each time
        return _build_adapter(hint)


def _build_adapter(hint: object) -> TypeAdapter[Any]:
    try:
        try:
            return TypeAdapter(cast(Any, hint), config=_STRICT_FLOATS)
        except PydanticUserError:  # a model or dataclass with a config of its own
            return TypeAdapter(cast(Any, hint))
    except (PydanticSchemaGenerationError, PydanticUserError, TypeError) as exc:
        raise PayloadError(f"tapeflow cannot store values of type {_name(hint)}: {exc}") from None


def to_json(value: object, hint: object = Any, *, what: str = "value") -> JSONValue:
    """``value`` as JSON, checked against ``hint`` both ways so that it will decode again,
    and refused if JSON cannot hold it (NaN, infinities, lone surrogates, integers too
    long to read back), would change it (an untyped tuple, Decimal, bytes...), or if it is
    over the size limit. Iterators are refused, never exhausted."""
    check_iterator(value, what)
    if hint in _UNTYPED:
        if check_untyped(value, what):
            check_json(value, what)  # already JSON: no conversion to check
            return value
        hint = Any
    elif hint is type(value) and hint in SCALARS:
        check_json(value, what)
        return value
    adapter = _adapter(hint)
    try:
        data = adapter.dump_python(value, mode="json", warnings="error")
        adapter.validate_python(data)
    except (PydanticSerializationError, ValidationError, TypeError, ValueError) as exc:
        raise PayloadError(_mismatch(what, hint, value, exc)) from exc
    check_json(data, what)
    return data


def from_json(data: JSONValue, hint: object = Any, *, what: str = "value") -> Any:
    """JSON back into the annotated type. A codec's envelope is refused: it is a value no
    configured codec could decode (its key is missing), never one to hand to code."""
    if is_envelope(data):
        raise CodecError(
            f"{what} is stored encoded ({', '.join(data[ENVELOPE_KEY])}) and was not decoded: "
            f"connect with its codec (for AES-GCM, its key in ${KEYS_VARIABLE})"
        )
    if hint in _UNTYPED or (hint is type(data) and hint in SCALARS):
        return data
    try:
        return _adapter(hint).validate_python(data)
    except ValidationError as exc:
        raise PayloadError(_mismatch(what, hint, data, exc)) from exc


def _mismatch(what: str, hint: object, value: object, exc: Exception) -> str:
    """Which value, the type it should be and the type it is, and where inside it pydantic
    found the fault: pydantic's own report is pages of text and links."""
    if hint is Any:  # no annotation to miss: the value is of a kind nobody can store
        return (
            f"{what} is a {type(value).__qualname__} ({_short(value)}), which tapeflow cannot "
            "store: annotate it with a type it can (a dataclass, a pydantic model, ...)"
        )
    if not isinstance(exc, ValidationError):  # a dump refused: validating says where
        try:
            _adapter(hint).validate_python(value)
        except ValidationError as found:
            exc = found
        except Exception:  # only looking for a location: none is fine
            pass
    where = ""
    if isinstance(exc, ValidationError) and exc.errors():
        first = exc.errors()[0]
        if first["loc"]:
            steps = "".join(f"[{step!r}]" for step in first["loc"])
            where = f" (at {steps}: {first['msg']})"
    return f"{what} must be {_name(hint)}, not {type(value).__qualname__}: {_short(value)}{where}"


@dataclass(frozen=True)
class Signature:
    """The parameter and return types of a workflow or activity function, read once."""

    function: Callable[..., Any]
    label: str = ""
    """How messages name the function ("activity 'charge'"); its qualified name if empty."""
    skip_first: bool = False
    """Leave out the first parameter: an unbound method's ``self``, not an argument."""

    @property
    def _label(self) -> str:
        return self.label or self.function.__qualname__

    @cached_property
    def _inspected(self) -> inspect.Signature:
        found = inspect.signature(self.function)
        if self.skip_first:
            return found.replace(parameters=list(found.parameters.values())[1:])
        return found

    @cached_property
    def _hints(self) -> dict[str, Any]:
        try:
            return get_type_hints(self.function)
        except NameError as exc:
            raise PayloadError(
                f"cannot resolve the annotations of {self.function.__qualname__}: {exc}"
            ) from exc

    @property
    def parameters(self) -> list[tuple[str, object]]:
        return [(p.name, self._hints.get(p.name, Any)) for p in self._inspected.parameters.values()]

    @property
    def return_hint(self) -> object:
        return self._hints.get("return", Any)

    @property
    def never_returns(self) -> bool:
        """Annotated ``-> NoReturn`` (or ``Never``): it only raises, so no result is stored."""
        return any(self.return_hint is bottom for bottom in _BOTTOM)

    def check(self) -> None:
        """Resolve the annotations and build their adapters now, so a type tapeflow cannot
        store is refused when the function is registered, not when it first runs."""
        for _, hint in self.parameters:
            _adapter(hint)
        if not self.never_returns:
            _adapter(self.return_hint)

    @cached_property
    def _positional_counts(self) -> tuple[int, float] | None:
        """How many positional arguments bind (fewest, most), or None if only a full bind
        can tell (a keyword-only parameter without a default)."""
        fewest, most = 0, 0.0
        for p in self._inspected.parameters.values():
            if p.kind is p.KEYWORD_ONLY and p.default is p.empty:
                return None
            if p.kind is p.VAR_POSITIONAL:
                most = float("inf")
            elif p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                most += 1
                fewest += p.default is p.empty
        return fewest, most

    def encode_args(self, args: Sequence[object]) -> list[JSONValue]:
        """Positional arguments as JSON, after checking that they bind to the function."""
        self._check_binds(args)
        hints = self._positional_hints(len(args))
        return [
            to_json(value, hint, what=f"argument {name!r} of {self._label}")
            for value, (name, hint) in zip(args, hints, strict=True)
        ]

    def decode_args(self, data: Sequence[JSONValue]) -> list[Any]:
        """JSON arguments back into the annotated types, checked to bind first: they may
        come from a caller who never saw the function (an update's)."""
        self._check_binds(data)
        hints = self._positional_hints(len(data))
        return [
            from_json(value, hint, what=f"argument {name!r} of {self._label}")
            for value, (name, hint) in zip(data, hints, strict=True)
        ]

    def encode_result(self, value: object) -> JSONValue:
        if self.never_returns:
            raise PayloadError(
                f"{self._label} is annotated -> {_name(self.return_hint)} but returned "
                f"{_short(value)}"
            )
        return to_json(value, self.return_hint, what=f"result of {self._label}")

    def decode_result(self, data: JSONValue) -> Any:
        return from_json(data, self.return_hint, what=f"result of {self._label}")

    def _check_binds(self, args: Sequence[object]) -> None:
        counts = self._positional_counts
        if counts is None or not counts[0] <= len(args) <= counts[1]:
            try:  # binding says what is wrong (and catches what the counts cannot)
                self._inspected.bind(*args)
            except TypeError as exc:
                raise PayloadError(f"bad arguments for {self._label}: {exc}") from exc

    def _positional_hints(self, count: int) -> list[tuple[str, object]]:
        params = list(self._inspected.parameters.values())
        out: list[tuple[str, object]] = []
        for index in range(count):
            if index < len(params) and params[index].kind is not params[index].VAR_POSITIONAL:
                out.append((params[index].name, self._hints.get(params[index].name, Any)))
            else:  # *args: every extra value shares the var-positional annotation
                star = next(p for p in params if p.kind is p.VAR_POSITIONAL)
                out.append((star.name, self._hints.get(star.name, Any)))
        return out


def _name(hint: object) -> str:
    """``int``, ``list[int]``, ``Point``: a type as it is written in an annotation."""
    if isinstance(hint, type) and not get_args(hint):
        return hint.__qualname__
    return repr(hint).replace("typing.", "")


def _short(value: object) -> str:
    return _REPR.repr(value)


class _ShortRepr(reprlib.Repr):
    def repr_int(self, x: int, level: int) -> str:
        try:
            return super().repr_int(x, level)
        except ValueError:  # over Python's int-to-str limit: repr() itself refuses it
            return f"<an integer of {x.bit_length():,} bits>"


_REPR = _ShortRepr()
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlevel = 3
