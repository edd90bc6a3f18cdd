"""What ``@workflow.defn`` and ``@activity.defn`` attach to a function.

The decorators mark a function and return it unchanged (still callable, still typed); they
register nothing globally. A Worker is given the functions explicitly.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from tapeflow._validate import check_name
from tapeflow.converter import Signature
from tapeflow.errors import NotADefinition

F = TypeVar("F", bound=Callable[..., Any])

_ATTR = "__tapeflow_definition__"


@dataclass(frozen=True)
class Definition:
    kind: Literal["workflow", "activity"]
    name: str
    function: Callable[..., Any]
    signature: Signature = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "signature", Signature(self.function, f"{self.kind} {self.name!r}")
        )

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.function)


def _mark(function: Any, kind: Literal["workflow", "activity"], name: str | None) -> None:
    if not callable(function):
        raise NotADefinition(f"@{kind}.defn needs a function, got {function!r}")
    if kind == "workflow" and not inspect.iscoroutinefunction(function):
        raise NotADefinition(
            f"@workflow.defn needs an 'async def' function; {function.__qualname__} is not one"
        )
    params = inspect.signature(function).parameters.values()
    if any(p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD) for p in params):
        raise NotADefinition(
            f"{function.__qualname__}: {kind} arguments are positional; "
            "keyword-only parameters cannot be recorded"
        )
    registered = check_name(function.__name__ if name is None else name, f"a {kind} name")
    definition = Definition(kind, registered, function)
    setattr(function, _ATTR, definition)


def defn_decorator(
    kind: Literal["workflow", "activity"], fn: F | None, name: str | None
) -> F | Callable[[F], F]:
    """Shared body of both decorators: bare (``@defn``) or called (``@defn(name=...)``)."""

    def apply(function: F) -> F:
        _mark(function, kind, name)
        return function

    return apply(fn) if fn is not None else apply


def definition_of(function: object, kind: Literal["workflow", "activity"]) -> Definition:
    """The definition behind a decorated function, or a clear error if it is not one."""
    definition = getattr(function, _ATTR, None)
    if not isinstance(definition, Definition) or definition.kind != kind:
        label = getattr(function, "__qualname__", repr(function))
        raise NotADefinition(f"{label} is not a {kind} definition: decorate it with @{kind}.defn")
    return definition
