"""The API's own description and docs: /openapi.json, /docs (Swagger UI), /redoc; closed as every read is."""

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, JSONResponse

router = APIRouter(include_in_schema=False)
OPENAPI_URL = "/openapi.json"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"


def _root(request: Request) -> str:
    """The path the service is mounted under, without a trailing slash."""
    return request.scope.get("root_path", "").rstrip("/")


@router.get(OPENAPI_URL)
def openapi_json(request: Request) -> JSONResponse:
    """FastAPI's OpenAPI document of the service."""
    return JSONResponse(request.app.openapi())


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI over the OpenAPI document."""
    title = f"{request.app.title} - Swagger UI"
    return get_swagger_ui_html(openapi_url=_root(request) + OPENAPI_URL, title=title,
                               oauth2_redirect_url=_root(request) + OAUTH2_REDIRECT_URL)


@router.get(OAUTH2_REDIRECT_URL)
def swagger_ui_redirect() -> HTMLResponse:
    """Swagger UI's OAuth2 redirect page."""
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    """ReDoc over the OpenAPI document."""
    return get_redoc_html(openapi_url=_root(request) + OPENAPI_URL, title=f"{request.app.title} - ReDoc")
