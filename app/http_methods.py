"""HTTP requests around routing: HEAD answered on every GET route, a 405's `Allow` listing every method the path
takes, and a path ending in a newline refused (404) before a route's `$` can match across it."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import SECURITY_HEADERS, error_body


PROBED = ("GET", "POST", "PUT", "PATCH", "DELETE")
"""The methods a route may define (HEAD follows GET; OPTIONS is not served)."""


def allowed_methods(app, scope: Scope) -> list[str]:
    """The methods some route of the app takes on this request's path, sorted, HEAD included with GET."""
    found = set()
    for method in PROBED:
        probe = {"type": "http", "method": method, "path": scope["path"], "root_path": scope.get("root_path", ""),
                 "headers": [], "query_string": b""}  # a fresh scope: routing state is kept in the scope
        if any(route.matches(probe)[0] == Match.FULL for route in app.router.routes):
            found.add(method)
    if "GET" in found:
        found.add("HEAD")
    return sorted(found)


class HeadAsGet:
    """ASGI middleware answering HEAD as the GET of the same path would, without its body."""

    def __init__(self, app: ASGIApp, router_app):
        self.app, self.router_app = app, router_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD" or "GET" not in allowed_methods(self.router_app, scope):
            return await self.app(scope, receive, send)

        async def send_headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, send_headers_only)


async def _on_method_not_allowed(request: Request, exc: HTTPException) -> JSONResponse:
    """405 in the house shape, its Allow naming every method of the path (the router names one route's)."""
    headers = {**(exc.headers or {}), "Allow": ", ".join(allowed_methods(request.app, request.scope))}
    return JSONResponse(error_body(405, "method_not_allowed", str(exc.detail)), 405, headers=headers)


class FinalNewline:
    """ASGI middleware answering 404 for a path ending in a newline: Starlette's route patterns end in `$`, which
    matches before a final newline, so `/health%0A` was answered as /health (ids with one are 404 already)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].endswith("\n"):
            response = JSONResponse(error_body(404, "not_found", "no resource has a path ending in a newline"),
                                    404, headers=SECURITY_HEADERS)
            return await response(scope, receive, send)
        await self.app(scope, receive, send)


def install_http_methods(app) -> None:
    """HEAD on every GET route, the 405's Allow, no final newline in paths; call once in create_app."""
    app.add_exception_handler(405, _on_method_not_allowed)
    app.add_middleware(HeadAsGet, router_app=app)
    app.add_middleware(FinalNewline)
