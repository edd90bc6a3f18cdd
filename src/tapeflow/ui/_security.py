"""Who may use the UI, and proof that a POST came from its own pages.

Every action is a POST carrying a CSRF token that must match the per-browser cookie (the
double-submit pattern: another site can make the browser send the cookie, not read it to
copy it into the form). Bound beyond loopback, the UI also wants the operator's token on
every request, as ``Authorization: Bearer`` or the cookie its login form sets.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable

from starlette.datastructures import FormData
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp

CSRF_COOKIE = "tapeflow_csrf"
CSRF_FIELD = "csrf"
TOKEN_COOKIE = "tapeflow_ui_token"
OPEN_PATHS = ("/login", "/static/")
"""Reachable without the token: the login form and what it is styled with."""

HEADERS = {
    # No inline or foreign script can run, even if some value escaped escaping; no framing
    # (a framed page could be clicked through its confirmations).
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def same(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and hmac.compare_digest(a.encode(), b.encode())


class Guard(BaseHTTPMiddleware):
    """Sets the CSRF cookie, checks the token if there is one, adds the security headers."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        super().__init__(app)
        self.token = token

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        csrf = request.cookies.get(CSRF_COOKIE)
        fresh = csrf is None or len(csrf) < 32
        request.state.csrf = secrets.token_urlsafe(32) if fresh else csrf
        response = await self._admitted(request, call_next)
        if fresh:
            response.set_cookie(
                CSRF_COOKIE, request.state.csrf, httponly=True, samesite="strict", path="/"
            )
        response.headers.update(HEADERS)
        return response

    async def _admitted(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        if self.token is None or request.url.path.startswith(OPEN_PATHS):
            return await call_next(request)
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if same(given if scheme.lower() == "bearer" else None, self.token) or same(
            request.cookies.get(TOKEN_COOKIE), self.token
        ):
            return await call_next(request)
        if request.method == "GET":
            return RedirectResponse("/login", status_code=303)
        return PlainTextResponse("a token is needed", status_code=401)


Action = Callable[[Request, FormData], Awaitable[Response]]


def checked(action: Action) -> Callable[[Request], Awaitable[Response]]:
    """A POST endpoint that runs ``action`` only if the form's CSRF token matches the
    cookie's: else 403, having done nothing."""

    async def endpoint(request: Request) -> Response:
        form = await request.form()
        given = form.get(CSRF_FIELD)
        if not same(request.cookies.get(CSRF_COOKIE), given if isinstance(given, str) else None):
            return PlainTextResponse("the form's CSRF token is missing or stale", status_code=403)
        return await action(request, form)

    return endpoint
