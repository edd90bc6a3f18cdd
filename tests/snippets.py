"""The Python blocks of the README and docs, assembled into the programs a reader would make.

The convention the documents follow, read from each block's first line:

- ``# billing.py``: the block is the file ``billing.py``, written beside the others so that
  later blocks can import it, and run as a program.
- ``# extends billing.py``: the block goes at the end of ``billing.py``, which runs again.
- ``# worker.py: runs until ...``: a program that runs until it is stopped; it is started in
  the background, left running while the document's later programs run, then stopped with
  SIGTERM, and must exit cleanly.
- ``# not run: why``: left out, for the reason given (kept for PostgreSQL or long runs).
- any other first line: the block is a complete program on its own.

A program's output is the ```` ```text ```` block that follows it, introduced by one
paragraph ending in a colon ("It prints:"); ``...`` in it stands for any text, as in doctest.
A program with no such block must print nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.MULTILINE | re.DOTALL)
_FILE = re.compile(r"# (?P<name>\w+\.py)(?P<service>: runs until .+)?")
_EXTENDS = re.compile(r"# extends (?P<name>\w+\.py)")
_NOT_RUN = re.compile(r"# not run: (?P<why>.+)")
_INTRO = re.compile(r"\n+(?:[^\n]+\n)*[^\n]*:\n\n")  # one paragraph, ending in a colon


@dataclass(frozen=True)
class Step:
    """One program to run after a block: `source` saved as `name`, then run (or started)."""

    document: str
    line: int
    name: str
    source: str
    service: bool
    expected: str | None


def steps(document: Path) -> Iterator[Step]:
    """The programs a reader of `document` would run, block by block, in order."""
    text = document.read_text(encoding="utf-8")
    files: dict[str, str] = {}
    blocks = list(_FENCE.finditer(text))
    for index, block in enumerate(blocks):
        if block.group(1) != "python":
            continue
        line = text.count("\n", 0, block.start()) + 1
        source = block.group(2)
        first = source.split("\n", 1)[0]
        if _NOT_RUN.fullmatch(first):
            continue
        after = blocks[index + 1] if index + 1 < len(blocks) else None
        expected = None
        if (
            after is not None
            and after.group(1) == "text"
            and _INTRO.fullmatch(text, block.end(), after.start())
        ):
            expected = after.group(2)
        service = False
        if extends := _EXTENDS.fullmatch(first):
            name = extends.group("name")
            assert name in files, f"{document.name}:{line} extends {name}, not shown before"
            source = files[name] + "\n\n" + source
        elif named := _FILE.fullmatch(first):
            name, service = named.group("name"), named.group("service") is not None
        else:
            name = f"snippet_line_{line}.py"
        files[name] = source
        yield Step(document.name, line, name, source, service, expected)


def files(document: Path) -> dict[str, str]:
    """Each file a document builds (``# name.py`` and its extensions), as it ends up."""
    return {
        step.name: step.source for step in steps(document) if not step.name.startswith("snippet_")
    }
