"""The API docs (/docs Swagger UI, /redoc ReDoc) come from the vendored assets and render offline in Chromium."""

import re

import pytest

from app.routers.docs import DOCS_ASSETS, VENDOR_DIR
from app.snapshot import offline_page
from tests.service import Service

pytestmark = pytest.mark.slow  # a real browser, client or fuzzer

OUTSIDE = re.compile(r"""(?:src|href)=["']?(?:https?:)?//""")


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_the_docs_pages_name_no_outside_asset(client, path):
    page = client.get(path)
    assert page.status_code == 200
    assert not OUTSIDE.search(page.text), page.text
    assert "/docs/assets/" in page.text


@pytest.mark.parametrize("name", list(DOCS_ASSETS))
def test_each_vendored_asset_is_served(client, name):
    asset = client.get(f"/docs/assets/{name}")
    assert asset.status_code == 200
    vendored = (VENDOR_DIR / DOCS_ASSETS[name][0]).read_bytes()
    assert asset.content == vendored or name == "redoc.standalone.js"
    assert len(asset.content) > 500 and b"cdn.redoc.ly" not in asset.content
    assert asset.headers["content-type"].split(";")[0] == DOCS_ASSETS[name][1]


def test_redoc_is_served_with_only_its_logo_url_patched(client):
    served = client.get("/docs/assets/redoc.standalone.js").content
    vendored = (VENDOR_DIR / DOCS_ASSETS["redoc.standalone.js"][0]).read_bytes()
    assert served == vendored.replace(b'src:"https://cdn.redoc.ly/redoc/logo-mini.svg"', b'src:"data:,"') != vendored


@pytest.mark.parametrize("name", ["nope.js", "swagger-ui-bundle.js.map", "..%2Fmaps.js", "..%2F..%2Fsettings.py"])
def test_any_other_asset_is_404(client, name):
    response = client.get(f"/docs/assets/{name}")
    assert response.status_code == 404 and response.json()["error"]["status"] == 404
    assert response.json()["error"]["parameter"] == ("name" if "%2F" not in name else None)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """A real service to open the docs from."""
    with Service(tmp_path_factory.mktemp("docs-live") / "catalogue.gpkg") as running:
        yield running


def _pinned(package: str) -> str:
    """The version app/vendor/refresh.sh pins for an npm package."""
    return re.search(rf"fetch {re.escape(package)}@([0-9.]+)", (VENDOR_DIR / "refresh.sh").read_text()).group(1)


def _operations(service) -> int:
    """How many operations the OpenAPI document the docs read has."""
    import httpx

    paths = httpx.get(f"{service.base}/openapi.json", timeout=30).json()["paths"]
    return sum(1 for item in paths.values() for method in item if method in ("get", "post", "patch", "delete", "put"))


def test_swagger_ui_renders_every_operation_offline(service, capsys):
    """No request leaves the machine (only the service's own origin answers) and every operation is listed."""
    with offline_page(local_origin=service.base) as (page, log):
        page.goto(f"{service.base}/docs")
        page.wait_for_selector(".opblock", timeout=30_000)
        shown = page.locator(".opblock").count()
        title = page.locator(".information-container .title").inner_text()
    assert log.problems == []
    assert shown == _operations(service) and "missile-sites" in title
    with capsys.disabled():
        print(f"\nSwagger UI (vendored swagger-ui-dist {_pinned('swagger-ui-dist')}) in Chromium, offline:"
              f" {shown} operations")


def test_redoc_renders_every_operation_offline(service, capsys):
    with offline_page(local_origin=service.base) as (page, log):
        page.goto(f"{service.base}/redoc")
        page.wait_for_selector("[data-section-id^='operation/']", timeout=60_000)
        shown = page.locator("[data-section-id^='operation/']").count()
        heading = page.locator("h1").first.inner_text()
    assert log.problems == []
    assert shown == _operations(service) and "missile-sites" in heading
    with capsys.disabled():
        print(f"\nReDoc (vendored redoc {_pinned('redoc')} standalone bundle) in Chromium, offline: {shown} operations")
