"""The embedded default: stdlib sqlite3 in WAL mode, zero setup."""

from tapeflow.backends.sqlite.backend import SQLiteBackend

__all__ = ["SQLiteBackend"]
