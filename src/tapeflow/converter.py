"""Values <-> JSON, driven by the functions' type hints (pydantic does the work).

Inputs and outputs are stored as JSON values typed by the annotations of the workflow or
activity: dataclasses, pydantic models, TypedDicts, primitives, datetime, UUID, Decimal,
enums and containers of them come back as the annotated type, never as a bare dict.
Nothing is ever pickled.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, cast, get_type_hints

from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError

from tapeflow.errors import PayloadError
from tapeflow.history import JSONValue

_adapters: dict[object, TypeAdapter[Any]] = {}

MAX_PAYLOAD_BYTES = int(os.environ.get("TAPEFLOW_MAX_PAYLOAD_BYTES", 2 * 1024 * 1024))
"""Largest JSON form of one value (argument, result, event payload, heartbeat), checked
before anything is written. Set $TAPEFLOW_MAX_PAYLOAD_BYTES to change it."""


def _adapter(hint: object) -> TypeAdapter[Any]:
    try:
        return _adapters[hint]
    except KeyError:
        adapter: TypeAdapter[Any] = TypeAdapter(cast(Any, hint))
        _adapters[hint] = adapter
        return adapter
    except TypeError:  # an unhashable hint: build one each time
        return TypeAdapter(cast(Any, hint))


def to_json(value: object, hint: object = Any, *, what: str = "value") -> JSONValue:
    """``value`` as JSON, checked against ``hint`` both ways so that it will decode again."""
    adapter = _adapter(hint)
    try:
        data = adapter.dump_python(value, mode="json", warnings="error")
        adapter.validate_python(data)
    except (PydanticSerializationError, ValidationError, TypeError, ValueError) as exc:
        raise PayloadError(
            f"{what} {_short(value)} cannot be stored as {_name(hint)}: {exc}"
        ) from exc
    _check_size(data, what)
    return data


def _check_size(data: JSONValue, what: str) -> None:
    if isinstance(data, int | float | bool) or data is None:
        return
    if isinstance(data, str) and len(data) * 4 < MAX_PAYLOAD_BYTES:  # UTF-8: <= 4 bytes each
        return
    size = len(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_PAYLOAD_BYTES:
        raise PayloadError(
            f"{what} is {size:,} bytes as JSON, over the {MAX_PAYLOAD_BYTES:,}-byte limit "
            "($TAPEFLOW_MAX_PAYLOAD_BYTES): store large data elsewhere and pass a reference"
        )


def from_json(data: JSONValue, hint: object = Any, *, what: str = "value") -> Any:
    """JSON back into the annotated type."""
    if hint is Any:
        return data
    try:
        return _adapter(hint).validate_python(data)
    except ValidationError as exc:
        raise PayloadError(f"{what} does not match {_name(hint)}: {exc}") from exc


@dataclass(frozen=True)
class Signature:
    """The parameter and return types of a workflow or activity function, read once."""

    function: Callable[..., Any]

    @cached_property
    def _inspected(self) -> inspect.Signature:
        return inspect.signature(self.function)

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

    def encode_args(self, args: Sequence[object]) -> list[JSONValue]:
        """Positional arguments as JSON, after checking that they bind to the function."""
        try:
            self._inspected.bind(*args)
        except TypeError as exc:
            raise PayloadError(f"bad arguments for {self.function.__qualname__}: {exc}") from exc
        hints = self._positional_hints(len(args))
        return [
            to_json(value, hint, what=f"argument {name!r} of {self.function.__qualname__}")
            for value, (name, hint) in zip(args, hints, strict=True)
        ]

    def decode_args(self, data: Sequence[JSONValue]) -> list[Any]:
        hints = self._positional_hints(len(data))
        return [
            from_json(value, hint, what=f"argument {name!r} of {self.function.__qualname__}")
            for value, (name, hint) in zip(data, hints, strict=True)
        ]

    def encode_result(self, value: object) -> JSONValue:
        return to_json(value, self.return_hint, what=f"result of {self.function.__qualname__}")

    def decode_result(self, data: JSONValue) -> Any:
        return from_json(data, self.return_hint, what=f"result of {self.function.__qualname__}")

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
    return getattr(hint, "__qualname__", None) or repr(hint)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
