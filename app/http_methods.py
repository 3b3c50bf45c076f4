"""HTTP methods: HEAD answered on every GET route, and a 405's `Allow` listing every method the path takes."""

from __future__ import annotations

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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


def install_http_methods(app) -> None:
    """HEAD on every GET route; call once in create_app."""
    app.add_middleware(HeadAsGet, router_app=app)
