"""SQL lives in .sql files: a schema, numbered migrations and named queries.

A queries file holds blocks that start with ``-- name: some_query``.
"""

from __future__ import annotations

import re
from importlib import resources

_HEADER = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def read_sql(package: str, filename: str) -> str:
    return resources.files(package).joinpath(filename).read_text(encoding="utf-8")


def load_queries(package: str, filename: str = "queries.sql") -> dict[str, str]:
    text = read_sql(package, filename)
    parts = _HEADER.split(text)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def migrations(package: str) -> list[tuple[int, str]]:
    """(version, script) for every ``migrations/NNNN_*.sql``, in order."""
    folder = resources.files(package).joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = re.fullmatch(r"(\d{4})_\w+\.sql", entry.name)
        if match:
            found.append((int(match.group(1)), entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _ in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"{package}: migrations must be numbered 1..n without gaps: {versions}")
    return found
