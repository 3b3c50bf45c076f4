"""The API's own description and docs: /api (OpenAPI 3.0, the OGC service-desc), /openapi.json (3.1), /docs
(Swagger UI) and /redoc; closed as every read is."""

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, JSONResponse

from app.errors import UnsupportedParameter
from app.openapi import service_description, service_description_30

router = APIRouter(include_in_schema=False)
OPENAPI_URL = "/openapi.json"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
OPENAPI_30_MEDIA_TYPE = "application/vnd.oai.openapi+json;version=3.0"


def _root(request: Request) -> str:
    """The path the service is mounted under, without a trailing slash."""
    return request.scope.get("root_path", "").rstrip("/")


@router.get(OPENAPI_URL)
def openapi_json(request: Request) -> JSONResponse:
    """The service's OpenAPI 3.1 document."""
    return JSONResponse(service_description(request.app))


@router.get("/api")
def openapi_30(request: Request) -> JSONResponse:
    """The service's OpenAPI 3.0 document: what the landing page links and /conformance claims (`f=json` only)."""
    items = request.query_params.multi_items()
    for name, value in items:
        if name != "f" or value != "json" or len(items) > 1:
            raise UnsupportedParameter("/api takes only f=json", parameter=name)
    return JSONResponse(service_description_30(request.app), media_type=OPENAPI_30_MEDIA_TYPE)


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
