"""Passwords masked wherever a database URL or connection string is shown: in messages,
logs and reprs, which end up in terminals, log stores and bug reports."""

from __future__ import annotations

import re

MASK = "***"
_URL_PASSWORD = re.compile(
    r"(?P<head>\b[A-Za-z][\w+.-]*://[^\s:@/?#\"']*:)(?P<secret>[^\s?\"']*)(?=@)"
)
"""``scheme://user:SECRET@host``, up to the last ``@`` before the query: an unencoded ``@``
or ``/`` in a password stays hidden."""
_KEYWORD_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<secret>'(?:\\.|[^\\'])*'|[^\s&#]*)")
"""``password=SECRET`` in a URL's query or in a key=value connection string."""


def redact(text: str, *, url: str | None = None) -> str:
    """``text`` with every password of a URL or key=value connection string in it masked.

    Given the ``url`` a driver's message is about, its passwords are also masked where the
    message quotes them alone (libpq quotes the token it could not decode)."""
    masked = _KEYWORD_PASSWORD.sub(rf"\g<head>{MASK}", _URL_PASSWORD.sub(rf"\g<head>{MASK}", text))
    if url is not None:
        for pattern in (_URL_PASSWORD, _KEYWORD_PASSWORD):
            for found in pattern.finditer(url):
                secret = found["secret"].strip("'")
                if secret:
                    masked = masked.replace(f'"{secret}"', f'"{MASK}"')
    return masked
