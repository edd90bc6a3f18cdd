"""Fake activities: a function run in place of a real activity, under its name and types.

The fake is called as the real one would be: with the arguments decoded by the real
activity's annotations, its result encoded by them, retried by the same policy, sync in
the worker's threads or ``async def`` on its loop (as the fake is written). So the fake
needs no decorator and no annotations, and the workflow sees exactly the values it would.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tapeflow import activity
from tapeflow._definition import Definition, definition_of
from tapeflow.errors import InvalidArgument


def with_fakes(
    activities: Iterable[Callable[..., Any]], fakes: Mapping[str, Callable[..., Any]]
) -> list[Callable[..., Any]]:
    """``activities`` with those named in ``fakes`` replaced. Raises InvalidArgument for a
    fake that names no activity given, is not callable, or cannot take its arguments."""
    if not isinstance(fakes, Mapping):
        raise InvalidArgument(f"fakes must map activity names to functions, got {fakes!r}")
    given = [(function, definition_of(function, "activity")) for function in activities]
    known = {definition.name for _, definition in given}
    for name, fake in fakes.items():
        if name not in known:
            names = ", ".join(repr(n) for n in sorted(known)) or "none"
            raise InvalidArgument(
                f"fakes: no activity named {name!r} is given to replace (activities: {names})"
            )
        if not callable(fake):
            raise InvalidArgument(f"the fake of activity {name!r} must be a function: {fake!r}")
    return [
        _faked(definition, fakes[definition.name]) if definition.name in fakes else function
        for function, definition in given
    ]


def _faked(real: Definition, fake: Callable[..., Any]) -> Callable[..., Any]:
    """An activity named and typed as ``real`` (a method's without ``self``: its object is
    not needed) that calls ``fake``."""
    signature = inspect.signature(real.function)
    if real.method:
        signature = signature.replace(parameters=list(signature.parameters.values())[1:])
    try:
        inspect.signature(fake).bind(*signature.parameters)
    except TypeError as exc:
        raise InvalidArgument(
            f"the fake of activity {real.name!r} cannot take its arguments {signature}: {exc}"
        ) from None
    except ValueError:  # no signature to read (a builtin): let the call tell
        pass

    if inspect.iscoroutinefunction(fake):

        async def run_async(*args: Any) -> Any:
            return await fake(*args)

        run: Callable[..., Any] = run_async
    else:

        def run_sync(*args: Any) -> Any:
            return fake(*args)

        run = run_sync
    functools.update_wrapper(run, real.function)  # its annotations, resolved where it is
    run.__signature__ = signature  # type: ignore[attr-defined]
    return activity.defn(name=real.name)(run)
