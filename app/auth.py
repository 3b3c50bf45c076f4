"""Access: operator-issued bearer tokens (reader, editor), a per-token write rate limit and a body-size cap."""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import SECURITY_HEADERS, Forbidden, PayloadTooLarge, TooManyRequests, Unauthorized, error_body
from app.settings import Settings, TokenEntry

DRAIN_BYTES = 4 << 20
"""How much of an over-cap body is read and dropped before the 413, so ordinary clients see the answer."""
ALWAYS_OPEN = frozenset({"/health"})
"""Read routes left open even when reads need a token (container health checks)."""

_TOKEN_SYNTAX = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")  # RFC 6750 b64token
_bearer = HTTPBearer(auto_error=False, description="An operator-issued token: `missile-sites token create`.")


@dataclass(frozen=True)
class Principal:
    """Who made a request: a token's name and role, or the anonymous reader."""

    name: str
    role: str


ANONYMOUS = Principal("anonymous", "anonymous")


TOKEN_PREFIX = "ms_"  # names the token's kind, and keeps it from starting with "-" (a command line would read an option)


def new_token() -> str:
    """A fresh random token: the prefix and 256 random bits, URL-safe."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """A token's SHA-256 (hex): unsalted and fast on purpose, as tokens are 256 random bits, not passwords."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def find_principal(token: str, entries: list[TokenEntry]) -> Principal | None:
    """The entry whose hash matches the token, compared in constant time against every entry."""
    digest, found = hash_token(token), None
    for entry in entries:
        if hmac.compare_digest(digest, entry.sha256):
            found = Principal(entry.name, entry.role)
    return found


class RateLimiter:
    """Token buckets per key (`burst` deep, refilled at `per_minute`), thread-safe, in process memory."""

    def __init__(self, per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self.clock = per_minute / 60.0, burst, clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Spend one unit of key's bucket: 0 when allowed, else the seconds until one is available."""
        with self._lock:
            now = self.clock()
            level, then = self._buckets.get(key, (float(self.burst), now))
            level = min(float(self.burst), level + (now - then) * self.rate)
            allowed = level >= 1
            self._buckets[key] = (level - 1 if allowed else level, now)
            return 0.0 if allowed else (1 - level) / self.rate


@dataclass
class Access:
    """What the dependencies consult, built once from the settings by `install_access`."""

    tokens: list[TokenEntry]
    read_access: str
    limiter: RateLimiter = field(repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Access:
        """The access rules the settings describe."""
        limiter = RateLimiter(settings.write_rate_per_minute, settings.write_burst)
        return cls(list(settings.tokens), settings.read_access, limiter)


def _access(request: Request) -> Access:
    """The app's access rules; failing closed (500) when `install_access` was never called."""
    access = getattr(request.app.state, "access", None)
    if access is None:
        raise RuntimeError("install_access(app, settings) was not called")
    return access


def _authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Principal:
    """The principal behind the request's bearer token, or 401."""
    if credentials is None:
        if "authorization" in request.headers:
            raise Unauthorized("the Authorization header must be `Bearer <token>`", error="invalid_request")
        raise Unauthorized("a bearer token is required")
    if not _TOKEN_SYNTAX.match(credentials.credentials):
        raise Unauthorized("the bearer token is malformed", error="invalid_request")
    principal = find_principal(credentials.credentials, _access(request).tokens)
    if principal is None:
        raise Unauthorized("the bearer token is not valid", error="invalid_token")
    return principal


def require_editor(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Principal:
    """Dependency of every write: an editor's token (401 without one, 403 for a reader's), rate-limited (429)."""
    principal = _authenticate(request, credentials)
    if principal.role != "editor":
        raise Forbidden(f"token {principal.name!r} is a reader's; writes need an editor's")
    wait = _access(request).limiter.take(principal.name)
    if wait:
        raise TooManyRequests(f"token {principal.name!r} is over its write rate", retry_after=max(1, math.ceil(wait)))
    return principal


async def require_reader(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Principal:
    """Dependency of reads: anyone when reads are open (a valid token still names its holder), else a token."""
    route = request.scope.get("route")
    if _access(request).read_access == "open" or getattr(route, "path", None) in ALWAYS_OPEN:
        try:
            return _authenticate(request, credentials)
        except Unauthorized:
            return ANONYMOUS
    return _authenticate(request, credentials)


READ_ACCESS = Depends(require_reader)
"""Router-level dependency closing reads when `read_access=token`: `include_router(r, dependencies=[READ_ACCESS])`."""


class _BodyLimit:
    """ASGI middleware reading the whole body (up to the cap) before the app runs, answering 413 past it."""

    def __init__(self, app: ASGIApp, max_bytes: int, drain_bytes: int = DRAIN_BYTES):
        self.app, self.max_bytes, self.drain_bytes = app, max_bytes, drain_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if _content_length(scope) > self.max_bytes:
            return await self._too_large(scope, receive, send, unread=True)
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                return await self._too_large(scope, receive, send, unread=message.get("more_body", False))
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(messages, receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, *, unread: bool) -> None:
        """The 413 in the house error shape, sent after reading (and dropping) a bounded rest of any unread body."""
        if unread:
            await _drain(receive, self.drain_bytes)
        exc = PayloadTooLarge(f"the request body is larger than {self.max_bytes} bytes")
        response = JSONResponse(error_body(exc.status_code, exc.code, exc.message), exc.status_code,
                                headers={"Connection": "close"})
        await response(scope, receive, send)


async def _drain(receive: Receive, limit: int) -> None:
    """Read and drop the body up to `limit` bytes, so a client still sending can read the answer (no TCP reset)."""
    dropped = 0
    while dropped <= limit:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
        dropped += len(message.get("body", b""))


def _content_length(scope: Scope) -> int:
    """The request's declared Content-Length, or 0 when absent or unreadable."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else 0
    return 0


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A receive that hands back the buffered body as one message, then defers to the real one."""
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")
    pending = [{"type": "http.request", "body": body, "more_body": False}]
    pending += [m for m in messages if m["type"] != "http.request"]

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


class _SecurityHeaders:
    """ASGI middleware adding SECURITY_HEADERS to every HTTP response that does not set them itself."""

    def __init__(self, app: ASGIApp):
        self.app = app
        self.headers = [(name.lower().encode("latin-1"), value.encode("latin-1"))
                        for name, value in SECURITY_HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", ())}
                message["headers"] = [*message.get("headers", ()),
                                      *(header for header in self.headers if header[0] not in present)]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_body_limit(app: FastAPI, max_bytes: int) -> None:
    """Cap every request body at max_bytes (413 by Content-Length or while streaming, never 500)."""
    app.add_middleware(_BodyLimit, max_bytes=max_bytes)


def install_access(app: FastAPI, settings: Settings) -> None:
    """Tokens, the write rate limit, the body cap and the security headers, from the settings; call once in create_app."""
    app.state.access = Access.from_settings(settings)
    install_body_limit(app, settings.max_body_bytes)
    app.add_middleware(_SecurityHeaders)  # outermost: the body cap's 413 gets the headers too
