"""The API description as the service enforces it: FastAPI's OpenAPI 3.1 document with the OGC parameters and the
access rules applied, the same as OpenAPI 3.0 (what OGC API - Features clients read), and the check that every
query parameter a request carries is one its operation documents."""

from __future__ import annotations

import copy

from fastapi import Depends, FastAPI, Request

from app.auth import ALWAYS_OPEN
from app.errors import UnsupportedParameter
from app.ogc_schemas import PARAMETERS

OPENAPI_30 = "3.0.3"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def _operations(document: dict):
    """(path, method, operation) for every operation of a document."""
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def _without_null(schema: dict) -> dict:
    """A query parameter's schema without FastAPI's `anyOf: [..., {type: null}]` (a query value is never null)."""
    members = [m for m in schema.get("anyOf", ()) if m.get("type") != "null"]
    if "anyOf" not in schema or len(members) != 1:
        return schema
    return {**{k: v for k, v in schema.items() if k != "anyOf"}, **members[0]}


def _close_reads(document: dict, read_access: str) -> None:
    """Bearer security only where a token is needed: writes always, reads only when the operator closes them."""
    for path, method, operation in _operations(document):
        if method == "get" and (read_access == "open" or path in ALWAYS_OPEN):
            operation.pop("security", None)
            operation.get("responses", {}).pop("401", None)


def _describe(app: FastAPI) -> dict:
    """FastAPI's document with the OGC parameters, typed query parameters and the access rules applied."""
    document = copy.deepcopy(app.openapi())
    document.setdefault("components", {})["parameters"] = copy.deepcopy(PARAMETERS)
    for _, _, operation in _operations(document):
        for parameter in operation.get("parameters", ()):
            if parameter.get("in") == "query" and "schema" in parameter:
                parameter["schema"] = _without_null(parameter["schema"])
    settings = getattr(app.state, "settings", None)
    _close_reads(document, getattr(settings, "read_access", "open"))
    return document


def service_description(app: FastAPI) -> dict:
    """The service's OpenAPI 3.1 document (rebuilt when FastAPI's is)."""
    source = app.openapi()
    cached = getattr(app.state, "service_description", None)
    if cached is None or cached[0] is not source:
        described = _describe(app)
        cached = (source, described, _operation_parameters(described))
        app.state.service_description = cached
    return cached[1]


def service_description_30(app: FastAPI) -> dict:
    """The service's OpenAPI document as 3.0, for OGC API - Features clients (GDAL, QGIS, OWSLib)."""
    cached = getattr(app.state, "service_description_30", None)
    source = service_description(app)
    if cached is None or cached[0] is not source:
        cached = (source, openapi_30(source))
        app.state.service_description_30 = cached
    return cached[1]


# --- OpenAPI 3.1 -> 3.0 ---------------------------------------------------------------------------------------


def _schema_30(schema):
    """A JSON Schema (2020-12, as OpenAPI 3.1 has it) written as an OpenAPI 3.0 schema object."""
    if not isinstance(schema, dict):
        return schema
    schema = dict(schema)
    if "$ref" in schema and len(schema) > 1:  # 3.0 ignores a $ref's siblings
        schema = {"allOf": [{"$ref": schema.pop("$ref")}], **schema}
    for key in ("properties", "patternProperties", "$defs"):
        if isinstance(schema.get(key), dict):
            schema[key] = {name: _schema_30(value) for name, value in schema[key].items()}
    for key in ("items", "additionalProperties", "not"):
        if isinstance(schema.get(key), dict):
            schema[key] = _schema_30(schema[key])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in schema:
            schema[key] = [_schema_30(member) for member in schema[key]]
    _null_to_nullable(schema)
    if "const" in schema:
        schema["enum"] = [schema.pop("const")]
    if "examples" in schema:
        examples = schema.pop("examples")
        if examples:
            schema["example"] = examples[0]
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(schema.get(bound), (int, float)) and not isinstance(schema[bound], bool):
            schema[plain], schema[bound] = schema[bound], True
    if "prefixItems" in schema:  # a tuple: 3.0 can only say "an array" (its length bounds stay)
        members = schema.pop("prefixItems")
        schema.setdefault("items", members[0] if len({repr(m) for m in members}) == 1 else {})
    if schema.get("type") == "array":
        schema.setdefault("items", {})
    for key in ("contentMediaType", "contentEncoding", "$schema", "$id", "x-ogc-role"):
        schema.pop(key, None)
    return schema


def _null_to_nullable(schema: dict) -> None:
    """`type: [t, "null"]` and `anyOf: [s, {type: null}]` as 3.0's `nullable: true`."""
    kind = schema.get("type")
    if isinstance(kind, list):
        others = [t for t in kind if t != "null"]
        if len(others) < len(kind):
            schema["nullable"] = True
        if len(others) == 1:
            schema["type"] = others[0]
        else:
            del schema["type"]
            schema["anyOf"] = [*schema.get("anyOf", ()), *({"type": t} for t in others)]
    for key in ("anyOf", "oneOf"):
        members = schema.get(key)
        if not members or not any(m == {"type": "null"} for m in members):
            continue
        rest = [m for m in members if m != {"type": "null"}]
        schema["nullable"] = True
        if len(rest) == 1 and "$ref" not in rest[0]:
            del schema[key]
            schema.update({k: v for k, v in rest[0].items() if k not in schema or k == "type"})
        else:
            schema[key] = rest


def _content_30(content: dict) -> dict:
    return {media: {**body, **({"schema": _schema_30(body["schema"])} if "schema" in body else {})}
            for media, body in content.items()}


def _parameter_30(parameter: dict) -> dict:
    if "schema" in parameter:
        return {**parameter, "schema": _schema_30(parameter["schema"])}
    return parameter


def openapi_30(document: dict) -> dict:
    """An OpenAPI 3.1 document as 3.0.3: the same operations, its schemas in 3.0's dialect."""
    out = copy.deepcopy(document)
    out["openapi"] = OPENAPI_30
    info = out.get("info", {})
    if "summary" in info:
        summary = info.pop("summary")
        info["description"] = f"{summary}\n\n{info['description']}" if info.get("description") else summary
    info.get("license", {}).pop("identifier", None)
    for key in ("webhooks", "jsonSchemaDialect"):
        out.pop(key, None)
    components = out.get("components", {})
    components["schemas"] = {name: _schema_30(s) for name, s in components.get("schemas", {}).items()}
    components["parameters"] = {name: _parameter_30(p) for name, p in components.get("parameters", {}).items()}
    for _, _, operation in _operations(out):
        operation["parameters"] = [_parameter_30(p) for p in operation.get("parameters", ())]
        if not operation["parameters"]:
            del operation["parameters"]
        if "requestBody" in operation:
            operation["requestBody"]["content"] = _content_30(operation["requestBody"].get("content", {}))
        for response in operation.get("responses", {}).values():
            if "content" in response:
                response["content"] = _content_30(response["content"])
            for header in response.get("headers", {}).values():
                if "schema" in header:
                    header["schema"] = _schema_30(header["schema"])
    return out


# --- the query-parameter check ----------------------------------------------------------------------------------


def _repeatable(parameter: dict) -> bool:
    """Whether a parameter takes several values (`?x=a&x=b`): an exploded array."""
    schema = parameter.get("schema", {})
    types = [schema.get("type"), *(member.get("type") for member in schema.get("anyOf", ()))]
    return "array" in types and parameter.get("explode", True)


def _operation_parameters(document: dict) -> dict[tuple[str, str], dict[str, bool]]:
    """(METHOD, path template) -> {query parameter name: whether it may repeat}, references resolved."""
    shared = document.get("components", {}).get("parameters", {})
    table = {}
    for path, method, operation in _operations(document):
        parameters = [shared[p["$ref"].rsplit("/", 1)[-1]] if "$ref" in p else p
                      for p in operation.get("parameters", ())]
        table[(method.upper(), path)] = {p["name"]: _repeatable(p) for p in parameters if p.get("in") == "query"}
    return table


async def check_query_parameters(request: Request) -> None:
    """400 naming a query parameter the operation does not document, or a single-valued one given twice."""
    service_description(request.app)
    route = request.scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    method = "GET" if request.method == "HEAD" else request.method
    allowed = request.app.state.service_description[2].get((method, path))
    if allowed is None:  # an operation left out of the description (the docs themselves, unknown collections)
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
