"""The API's own description and docs: /api (OpenAPI 3.0, the OGC service-desc), /openapi.json (3.1), /docs
(Swagger UI) and /redoc, both from the vendored assets (they work with no network); closed as every read is."""

import functools
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, JSONResponse, Response

from app.errors import NotFound, UnsupportedParameter
from app.openapi import service_description, service_description_30

router = APIRouter(include_in_schema=False)
OPENAPI_URL = "/openapi.json"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
OPENAPI_30_MEDIA_TYPE = "application/vnd.oai.openapi+json;version=3.0"
VENDOR_DIR = Path(__file__).resolve().parent.parent / "vendor"
ASSETS_URL = "/docs/assets"
DOCS_ASSETS = {  # served name -> (file under app/vendor, media type); see app/vendor/README.md
    "swagger-ui-bundle.js": ("swagger-ui-dist/swagger-ui-bundle.js", "text/javascript"),
    "swagger-ui.css": ("swagger-ui-dist/swagger-ui.css", "text/css"),
    "favicon.png": ("swagger-ui-dist/favicon-32x32.png", "image/png"),
    "redoc.standalone.js": ("redoc/bundles/redoc.standalone.js", "text/javascript"),
}
DOCS_PATCHES = {  # served name -> (bytes, replacement): ReDoc 2.5's menu footer loads its logo from a CDN; a `data:,`
    # image fails at once without a request, and ReDoc then hides it (its onError)
    "redoc.standalone.js": ((b'src:"https://cdn.redoc.ly/redoc/logo-mini.svg"', b'src:"data:,"'),),
}


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
    """Swagger UI over the OpenAPI document, from the vendored swagger-ui-dist (no CDN, no online validator)."""
    assets = _root(request) + ASSETS_URL
    return get_swagger_ui_html(
        openapi_url=_root(request) + OPENAPI_URL, title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{assets}/swagger-ui-bundle.js", swagger_css_url=f"{assets}/swagger-ui.css",
        swagger_favicon_url=f"{assets}/favicon.png", oauth2_redirect_url=_root(request) + OAUTH2_REDIRECT_URL,
        swagger_ui_parameters={"validatorUrl": None})


@functools.cache
def asset_bytes(name: str) -> bytes:
    """A vendored docs file as served: ReDoc's bundle with its one outside request (the footer's logo) patched out."""
    data = (VENDOR_DIR / DOCS_ASSETS[name][0]).read_bytes()
    for old, new in DOCS_PATCHES.get(name, ()):
        if data.count(old) != 1:
            raise RuntimeError(f"app/vendor: {name} no longer holds {old!r} once; review DOCS_PATCHES")
        data = data.replace(old, new)
    return data


@router.get(ASSETS_URL + "/{name}")
def docs_asset(name: str) -> Response:
    """One of the docs' vendored files (a fixed list; anything else is 404)."""
    if name not in DOCS_ASSETS:
        raise NotFound(f"no docs asset {name!r}", parameter="name")
    return Response(asset_bytes(name), media_type=DOCS_ASSETS[name][1],
                    headers={"Cache-Control": "public, max-age=86400"})


@router.get(OAUTH2_REDIRECT_URL)
def swagger_ui_redirect() -> HTMLResponse:
    """Swagger UI's OAuth2 redirect page."""
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    """ReDoc over the OpenAPI document."""
    assets = _root(request) + ASSETS_URL
    return get_redoc_html(openapi_url=_root(request) + OPENAPI_URL, title=f"{request.app.title} - ReDoc",
                          redoc_js_url=f"{assets}/redoc.standalone.js", redoc_favicon_url=f"{assets}/favicon.png",
                          with_google_fonts=False)
