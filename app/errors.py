"""The domain's exceptions, each mapped to one HTTP status and one JSON error shape."""

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException


class CatalogueError(Exception):
    """Base of every error the service reports to a client."""

    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, parameter: str | None = None):
        super().__init__(message)
        self.message = message
        self.parameter = parameter


class InvalidParameter(CatalogueError):
    """A parameter's value is well-formed but not acceptable (unknown place, bad combination)."""

    status_code = 422
    code = "invalid_parameter"


class UnsupportedParameter(CatalogueError):
    """A query parameter the resource does not define, or one OGC API - Features answers with 400."""

    status_code = 400
    code = "bad_parameter"


class NotFound(CatalogueError):
    """The resource named in the path does not exist."""

    status_code = 404
    code = "not_found"


class Unauthorized(CatalogueError):
    """No bearer token, a malformed one, or one the operator never issued."""

    status_code = 401
    code = "unauthorized"

    def __init__(self, message: str, *, error: str | None = None):
        super().__init__(message)
        challenge = 'Bearer realm="missile-sites"' + (f', error="{error}"' if error else "")
        self.headers = {"WWW-Authenticate": challenge}


class Forbidden(CatalogueError):
    """A valid token whose role does not allow the request (a reader's token on a write)."""

    status_code = 403
    code = "forbidden"


class TooManyRequests(CatalogueError):
    """The token made more writes than its rate allows; `retry_after` seconds until the next one."""

    status_code = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after
        self.headers = {"Retry-After": str(retry_after)}


class PayloadTooLarge(CatalogueError):
    """The request body is larger than the service accepts."""

    status_code = 413
    code = "payload_too_large"


class Conflict(CatalogueError):
    """The request conflicts with the resource's current state (an existing id, a stale version)."""

    status_code = 409
    code = "conflict"


class Gone(CatalogueError):
    """The resource existed and was retired."""

    status_code = 410
    code = "gone"


class ServiceBusy(CatalogueError):
    """Another writer held the catalogue longer than a write may wait; try again after `retry_after` seconds."""

    status_code = 503
    code = "busy"

    def __init__(self, message: str, *, retry_after: int = 2):
        super().__init__(message)
        self.retry_after = retry_after
        self.headers = {"Retry-After": str(retry_after)}


class StorageUnavailable(CatalogueError):
    """The live catalogue cannot be written (read-only, deleted or replaced, full disk); an operator must act."""

    status_code = 503
    code = "storage_unavailable"

    def __init__(self, message: str, *, retry_after: int = 30):
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after)}


SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff"}
"""Headers on every response (the 500 too, sent outside the middleware that adds them to the rest)."""


def error_body(status: int, code: str, message: str, parameter: str | None = None) -> dict:
    """The single JSON error shape every error path returns."""
    return {"error": {"status": status, "code": code, "message": message, "parameter": parameter}}


class ErrorDetail(BaseModel):
    """What went wrong, and the parameter at fault where there is one."""

    status: int = Field(description="The HTTP status, repeated.")
    code: str = Field(description="A stable, machine-readable code, e.g. invalid_parameter.")
    message: str
    parameter: str | None = Field(description="The query, path or body parameter at fault, or null.")


class ErrorBody(BaseModel):
    """The one JSON shape of every error."""

    error: ErrorDetail


_ERROR_DESCRIPTIONS = {
    400: "Bad request: a parameter the resource does not define, or an unsupported format",
    401: "No bearer token, a malformed one, or one never issued",
    403: "The token's role does not allow this request",
    404: "Not found",
    409: "Conflicts with the resource's current state",
    410: "Retired",
    413: "The request body is too large",
    422: "A parameter or body field is invalid",
    429: "Over the token's write rate",
    503: "The catalogue is busy or cannot be written now; retry after the Retry-After seconds",
}
_ERROR_HEADERS = {
    401: {"WWW-Authenticate": {"description": "The bearer challenge.", "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "Seconds until the next write is allowed.", "schema": {"type": "integer"}}},
    503: {"Retry-After": {"description": "Seconds to wait before trying again.", "schema": {"type": "integer"}}},
}


def _error_schema() -> dict:
    """ErrorBody's JSON schema with ErrorDetail inlined (served as application/json whatever the route's own type)."""
    schema = ErrorBody.model_json_schema()
    definitions = schema.pop("$defs")
    schema["properties"]["error"] = definitions["ErrorDetail"]
    return schema


def error_responses(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI `responses=` for the given error statuses, each in the house error shape."""
    content = {"application/json": {"schema": _error_schema()}}
    return {status: {"description": _ERROR_DESCRIPTIONS[status], "content": content,
                     **({"headers": _ERROR_HEADERS[status]} if status in _ERROR_HEADERS else {})}
            for status in statuses}


READ_ERRORS = error_responses(400, 401, 404, 410, 413, 422)
"""What a read may answer besides success (401 only when the operator closes reads)."""
WRITE_ERRORS = error_responses(400, 401, 403, 404, 409, 410, 413, 422, 429, 503)
"""What a write may answer besides success."""


def _parameter_name(loc: tuple) -> str | None:
    """The parameter a pydantic error location points at (`("query", "lat")` -> `lat`)."""
    names = [str(part) for part in loc if part not in ("query", "path", "body", "header") and not isinstance(part, int)]
    return ".".join(names) or None


async def _on_catalogue_error(_: Request, exc: CatalogueError) -> JSONResponse:
    body = error_body(exc.status_code, exc.code, exc.message, exc.parameter)
    return JSONResponse(body, exc.status_code, headers=getattr(exc, "headers", None))


def validation_problem(exc: RequestValidationError) -> tuple[str, str | None]:
    """The first problem of a validation error as (message, parameter)."""
    first = exc.errors()[0]
    parameter = _parameter_name(tuple(first.get("loc", ())))
    message = f"{parameter}: {first.get('msg', 'invalid value')}" if parameter else first.get("msg", "invalid")
    return message, parameter


async def _on_validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    message, parameter = validation_problem(exc)
    return JSONResponse(error_body(422, "invalid_parameter", message, parameter), 422)


async def _on_http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = "not_found" if exc.status_code == 404 else "http_error"
    return JSONResponse(error_body(exc.status_code, code, str(exc.detail)), exc.status_code, headers=exc.headers)


async def _on_unexpected(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(error_body(500, "internal_error", "internal error"), 500, headers=SECURITY_HEADERS)


def install_error_handlers(app: FastAPI) -> None:
    """Route every exception to the one error shape."""
    app.add_exception_handler(CatalogueError, _on_catalogue_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
