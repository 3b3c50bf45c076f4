"""The API description as the service enforces it: every query parameter a route documents, and no other."""

from __future__ import annotations

from fastapi import Depends, FastAPI, Request

from app.errors import UnsupportedParameter


def _repeatable(schema: dict) -> bool:
    """Whether a parameter's schema takes several values (`?x=a&x=b`): an array, not comma-separated."""
    types = [schema.get("type"), *(member.get("type") for member in schema.get("anyOf", ()))]
    return "array" in types


def _operation_parameters(document: dict) -> dict[tuple[str, str], dict[str, bool]]:
    """(METHOD, path template) -> {query parameter name: whether it may repeat}, from an OpenAPI document."""
    table = {}
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            table[(method.upper(), path)] = {
                parameter["name"]: parameter.get("explode", True) and _repeatable(parameter.get("schema", {}))
                for parameter in operation.get("parameters", ()) if parameter.get("in") == "query"
            }
    return table


def documented_query_parameters(app: FastAPI) -> dict[tuple[str, str], dict[str, bool]]:
    """The query parameters each documented operation accepts, from the app's OpenAPI (cached with it)."""
    document = app.openapi()
    cached = getattr(app.state, "query_parameters", None)
    if cached is None or cached[0] is not document:
        cached = (document, _operation_parameters(document))
        app.state.query_parameters = cached
    return cached[1]


def check_query_parameters(request: Request) -> None:
    """400 naming a query parameter the operation does not document, or a single-valued one given twice."""
    route = request.scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    method = "GET" if request.method == "HEAD" else request.method
    allowed = documented_query_parameters(request.app).get((method, path))
    if allowed is None:  # an operation left out of the description (the docs themselves)
        return
    counts: dict[str, int] = {}
    for name, _ in request.query_params.multi_items():
        counts[name] = counts.get(name, 0) + 1
    for name, count in counts.items():
        if name not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise UnsupportedParameter(f"unknown query parameter {name!r}; this operation takes: {known}",
                                       parameter=name)
        if count > 1 and not allowed[name]:
            raise UnsupportedParameter(f"{name} was given {count} times; it takes one value", parameter=name)


QUERY_PARAMETERS = Depends(check_query_parameters)
"""Router-level dependency: `include_router(r, dependencies=[..., QUERY_PARAMETERS])`."""
