"""PostgreSQL: many workers on many machines sharing one database (psycopg 3, async)."""

from tapeflow.backends.postgres.backend import PostgresBackend

__all__ = ["PostgresBackend"]
