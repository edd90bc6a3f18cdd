"""Importing the user's modules named on the command line, and finding their definitions."""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from tapeflow._definition import Definition, definitions_in
from tapeflow.cli._exits import CliError, ExitCode
from tapeflow.queues import Queue


@dataclass(frozen=True)
class Definitions:
    workflows: list[Definition]
    activities: list[Definition]
    queues: dict[str, Queue]
    """The ``tapeflow.Queue`` objects the modules define, by name: a worker given one of
    their names serves it with its limits."""

    def workflow_named(self, name: str) -> Definition | None:
        return next((d for d in self.workflows if d.name == name), None)


def import_module(spec: str) -> ModuleType:
    """``billing``, ``pkg.mod`` or ``path/to/billing.py``, imported as Python would.

    A file is imported by its name from its folder (put first on ``sys.path``), so that it
    and a module that imports it by name (``from billing import ...``) share one module
    object, and its sibling modules import as they do when it runs as a script. A name is
    looked up from the current directory first, as ``python -m`` does."""
    path = Path(spec)
    if spec.endswith(".py") or os.sep in spec or (os.altsep and os.altsep in spec):
        if not path.is_file():
            raise CliError(f"no Python file at {spec}", ExitCode.USAGE)
        folder, name = str(path.resolve().parent), path.stem
    else:
        folder, name = os.getcwd(), spec
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (name == exc.name or name.startswith(exc.name + ".")):
            raise  # a module it imports is missing: the user's traceback says which
        raise CliError(
            f"cannot import {spec!r}: no module named {exc.name!r} (run from the folder "
            "that holds it, or give its path)",
            ExitCode.USAGE,
        ) from None


def load_definitions(specs: list[str]) -> Definitions:
    """The workflows and activities of the modules ``specs`` name, each once."""
    found: dict[int, Definition] = {}
    queues: dict[str, Queue] = {}
    for spec in specs:
        module = import_module(spec)
        for definition in definitions_in(vars(module)):
            found.setdefault(id(definition.function), definition)
        for value in vars(module).values():
            if isinstance(value, Queue):
                queues.setdefault(value.name, value)
    return Definitions(
        workflows=[d for d in found.values() if d.kind == "workflow"],
        activities=[d for d in found.values() if d.kind == "activity"],
        queues=queues,
    )
