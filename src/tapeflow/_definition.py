"""What ``@workflow.defn`` and ``@activity.defn`` attach to a function.

The decorators mark a function and return it unchanged (still callable, still typed); they
register nothing globally. A Worker is given the functions explicitly.

An activity may be a method (it needs a client or a connection pool held by an object): the
worker is given it bound (``activities=[service.charge]``) and calls it so; a workflow names
it unbound (``execute_activity(Service.charge, ...)``), its arguments then checked without
``self``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from tapeflow._validate import check_name
from tapeflow.converter import Signature, to_json
from tapeflow.errors import NotADefinition

F = TypeVar("F", bound=Callable[..., Any])

_ATTR = "__tapeflow_definition__"


@dataclass(frozen=True)
class Definition:
    kind: Literal["workflow", "activity"]
    name: str
    function: Callable[..., Any]
    """What runs: the decorated function, or a method bound to its object."""
    method: bool = False
    """``function`` is a method defined in a class body, unbound: it takes its object first
    (``self``), which only its bound form supplies."""
    signature: Signature = field(init=False, compare=False)

    def __post_init__(self) -> None:
        signature = Signature(self.function, f"{self.kind} {self.name!r}", skip_first=self.method)
        object.__setattr__(self, "signature", signature)

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
    if inspect.ismethod(function):
        raise NotADefinition(
            f"@{kind}.defn marks the function itself: apply it to {function.__qualname__} in "
            "its class body, then register the bound method"
        )
    method = _is_method(function)
    if method and kind == "workflow":
        raise NotADefinition(
            f"{function.__qualname__}: a workflow is a plain 'async def' function, not a "
            "method: an object's state would be shared by all its runs and not replayed"
        )
    setattr(function, _ATTR, Definition(kind, registered, function, method))


def _is_method(function: Callable[..., Any]) -> bool:
    """Defined in a class body (``Service.charge``, not ``charge`` or ``f.<locals>.charge``)
    with ``self`` first: called on an object, so its first parameter is no argument."""
    scope = function.__qualname__.split(".")[:-1]
    params = list(inspect.signature(function).parameters)
    return bool(scope) and scope[-1] != "<locals>" and params[:1] == ["self"]


def defn_decorator(
    kind: Literal["workflow", "activity"], fn: F | None, name: str | None
) -> F | Callable[[F], F]:
    """Shared body of both decorators: bare (``@defn``) or called (``@defn(name=...)``)."""

    def apply(function: F) -> F:
        _mark(function, kind, name)
        return function

    return apply(fn) if fn is not None else apply


def definition_of(function: object, kind: Literal["workflow", "activity"]) -> Definition:
    """The definition behind a decorated function, or a clear error if it is not one; for a
    bound method (``service.charge``), the definition of its function, bound to its object."""
    definition = getattr(function, _ATTR, None)
    if not isinstance(definition, Definition) or definition.kind != kind:
        label = getattr(function, "__qualname__", repr(function))
        raise NotADefinition(f"{label} is not a {kind} definition: decorate it with @{kind}.defn")
    if inspect.ismethod(function) and definition.function is function.__func__:
        return Definition(kind, definition.name, function)
    return definition


@dataclass(frozen=True)
class Call:
    """A workflow or activity to call, by definition or by name: its name, its arguments
    encoded, and the type its result decodes to."""

    name: str
    args: list[Any]
    result_hint: object


def call_of(
    target: Callable[..., Any] | str, kind: Literal["workflow", "activity"], args: tuple[Any, ...]
) -> Call:
    """A definition's call, its arguments checked against its annotations; or a name's,
    the arguments taken as plain JSON and the result left so."""
    if isinstance(target, str):
        return Call(check_name(target, f"a {kind} name"), [to_json(a) for a in args], Any)
    definition = definition_of(target, kind)
    signature = definition.signature
    return Call(definition.name, signature.encode_args(args), signature.return_hint)


def definitions_in(namespace: Mapping[str, object]) -> list[Definition]:
    """The workflows and activities a module's namespace holds (defined or imported there),
    each once, for a program that runs a module's definitions without naming them
    (``tapeflow worker billing``). Methods are left out: only the program that makes their
    object can register them."""
    found: dict[int, Definition] = {}
    for value in namespace.values():
        definition = getattr(value, _ATTR, None)
        if not isinstance(definition, Definition) or definition.method:
            continue
        if definition.function is value:  # not an object that only forwards attributes
            found.setdefault(id(value), definition)
    return list(found.values())
