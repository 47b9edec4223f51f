"""Web safety for the console: CSRF tokens, login rate limiting, a request body bound, response headers.

Sessions are Starlette's signed cookie (itsdangerous, HttpOnly, SameSite=Lax, Secure when configured),
holding the user id, the CSRF token and the login time; a login starts a new session (no fixation).
"""
from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import defaultdict, deque
from typing import Callable

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSRF_FIELD = "csrf"

# No inline script or style anywhere: what a check-in carries can never run, even if escaping failed.
HEADERS = [
    (b"content-security-policy", b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                 b"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                                 b"frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return str(token)


async def checked_form(request: Request) -> FormData:
    """The POSTed form, after its CSRF token matched the session's; 403 otherwise."""
    form = await request.form(max_files=2, max_fields=200)
    sent = form.get(CSRF_FIELD)
    expected = request.session.get("csrf")
    if not isinstance(sent, str) or not expected or not hmac.compare_digest(sent, str(expected)):
        raise HTTPException(403, "CSRF token missing or wrong: reload the page and try again")
    return form


class LoginLimiter:
    """At most `attempts` failures per user name and per client address in a sliding window.

    In this process's memory: with several console processes each keeps its own count (document: put the
    login behind one of them, or accept attempts x processes)."""

    def __init__(self, attempts: int, window_seconds: float, clock: Callable[[], float] = time.monotonic):
        self.attempts, self.window, self.clock = attempts, window_seconds, clock
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures[key]
        while q and now - q[0] > self.window:
            q.popleft()
        return q

    def allowed(self, *keys: str) -> bool:
        now = self.clock()
        with self._lock:
            return all(len(self._recent(k, now)) < self.attempts for k in keys)

    def failed(self, *keys: str) -> None:
        now = self.clock()
        with self._lock:
            for k in keys:
                self._recent(k, now).append(now)
            if len(self._failures) > 100_000:      # a flood of made-up names must not grow memory for ever
                for k in [k for k, q in self._failures.items() if not q]:
                    del self._failures[k]

    def succeeded(self, *keys: str) -> None:
        with self._lock:
            for k in keys:
                self._failures.pop(k, None)


class BodyLimit:
    """Refuse a request body over `limit` bytes with 413, whether or not it declared its length."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _too_large(send)
            return
        seen = 0

        async def bounded() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise HTTPException(413, "request body too large")
            return message

        await self.app(scope, bounded, send)


async def _too_large(send: Send) -> None:
    body = b"request body too large"
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class SecurityHeaders:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + HEADERS
            await send(message)

        await self.app(scope, receive, with_headers)
