"""Where a tapeflow URL points, for the test's own connections (ledger, inspector)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


@dataclass(frozen=True)
class Location:
    kind: str
    """"sqlite" or "postgres"."""
    path: str = ""
    """The SQLite file."""
    conninfo: str = ""
    """The PostgreSQL URL for libpq, without tapeflow's ``schema``, ``pool_max_size`` nor
    ``application_name``."""
    schema: str = "tapeflow"
    application_name: str | None = None

    def postgres_url(self, application_name: str) -> str:
        """A libpq URL naming the connection ``application_name``."""
        parts = urlsplit(self.conninfo)
        query = [*parse_qsl(parts.query), ("application_name", application_name)]
        return urlunsplit(parts._replace(query=urlencode(query)))


def locate(url: str) -> Location:
    scheme, _, rest = url.partition("://")
    if scheme == "sqlite":
        if not rest.startswith("/") or rest in ("/", "/:memory:"):
            raise ValueError(f"the chaos runs need a SQLite file shared by processes, not {url!r}")
        return Location("sqlite", path=rest[1:].partition("?")[0])
    if scheme not in ("postgresql", "postgres"):
        raise ValueError(f"not a tapeflow URL: {url!r}")
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    options = dict(query)
    rest_query = urlencode(
        [
            (key, value)
            for key, value in query
            if key not in ("schema", "application_name", "pool_max_size")
        ]
    )
    conninfo = urlunsplit(parts._replace(scheme="postgresql", query=rest_query))
    return Location(
        "postgres",
        conninfo=conninfo,
        schema=options.get("schema", "tapeflow"),
        application_name=options.get("application_name"),
    )


def with_application_name(url: str, name: str) -> str:
    """``url`` with its PostgreSQL connections named ``name`` (shown in pg_stat_activity)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "application_name"]
    return urlunsplit(parts._replace(query=urlencode([*query, ("application_name", name)])))
