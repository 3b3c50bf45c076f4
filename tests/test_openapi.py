"""The API definition: the OpenAPI 3.0 document the landing page links (service-desc) is valid 3.0 and agrees with
/conformance; FastAPI's 3.1 one is valid 3.1; every parameter is typed (OGC's `limit` and `bbox` as OGC writes them);
bearer security is declared only where a token is needed."""

import pytest
from fastapi.testclient import TestClient
from openapi_spec_validator import OpenAPIV30SpecValidator, OpenAPIV31SpecValidator

from app.auth import hash_token, new_token
from app.main import create_app
from app.schemas import MAX_LIMIT
from app.settings import Settings

COLLECTIONS = ("sites", "places", "borders", "observations")
METHODS = ("get", "put", "post", "patch", "delete")


@pytest.fixture(scope="module")
def documents(client):
    """The 3.0 document (/api) and the 3.1 one (/openapi.json)."""
    api = client.get("/api")
    assert api.status_code == 200
    assert api.headers["content-type"] == "application/vnd.oai.openapi+json;version=3.0"
    return api.json(), client.get("/openapi.json").json()


def _parameters(document: dict, operation: dict) -> list[dict]:
    """An operation's parameters with references resolved."""
    shared = document["components"].get("parameters", {})
    return [shared[p["$ref"].rsplit("/", 1)[1]] if "$ref" in p else p for p in operation.get("parameters", ())]


def _operations(document: dict):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def test_the_service_desc_is_valid_openapi_30_and_the_conformance_says_so(client, documents):
    api, _ = documents
    errors = [f"{list(e.path)}: {e.message[:200]}" for e in OpenAPIV30SpecValidator(api).iter_errors()]
    assert errors == [] and api["openapi"].startswith("3.0.")
    links = {link["rel"]: link for link in client.get("/").json()["links"]}
    assert links["service-desc"]["href"].endswith("/api")
    assert links["service-desc"]["type"] == "application/vnd.oai.openapi+json;version=3.0"
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30" in client.get("/conformance").json()[
        "conformsTo"]
    print(f"\nopenapi-spec-validator: /api ({api['openapi']}) 0 errors, {len(api['paths'])} paths")


def test_fastapis_document_is_valid_openapi_31(documents):
    _, full = documents
    assert full["openapi"].startswith("3.1.")
    assert [e.message for e in OpenAPIV31SpecValidator(full).iter_errors()] == []


def test_both_documents_describe_the_same_operations(documents):
    api, full = documents
    assert {(p, m) for p, m, _ in _operations(api)} == {(p, m) for p, m, _ in _operations(full)}


@pytest.mark.parametrize("collection", COLLECTIONS)
def test_items_limit_and_bbox_as_ogc_writes_them(documents, collection):
    api, _ = documents
    operation = api["paths"][f"/collections/{collection}/items"]["get"]
    assert {"$ref": "#/components/parameters/limit"} in operation["parameters"]  # where GDAL reads the page size
    parameters = {p["name"]: p for p in _parameters(api, operation)}
    assert parameters["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 100}
    bbox = parameters["bbox"]
    assert (bbox["style"], bbox["explode"]) == ("form", False)
    assert bbox["schema"]["type"] == "array" and bbox["schema"]["items"]["type"] == "number"
    assert (bbox["schema"]["minItems"], bbox["schema"]["maxItems"]) == (4, 4)
    assert parameters["f"]["schema"]["enum"] == ["json", "geojson", "html", "csv", "kml", "gpkg"]
    assert "datetime" in parameters


def test_every_parameter_is_typed(documents):
    """No parameter is a bare `anyOf [string, null]`: each says its type (or its values)."""
    for document in documents:
        for path, method, operation in _operations(document):
            for parameter in _parameters(document, operation):
                schema = parameter["schema"]
                assert "type" in schema or "enum" in schema or "allOf" in schema, (path, parameter["name"], schema)
                assert "anyOf" not in schema, (path, parameter["name"], schema)


@pytest.mark.parametrize("path, name, expected", [
    ("/sites", "f", ["geojson", "json", "csv", "kml", "gpkg"]),
    ("/", "f", ["json", "html"]),
    ("/collections/sites/schema", "f", ["json"]),
])
def test_formats_are_enumerated(documents, path, name, expected):
    api, _ = documents
    parameters = {p["name"]: p for p in _parameters(api, api["paths"][path]["get"])}
    assert parameters[name]["schema"]["enum"] == expected


def test_dates_and_codes_say_their_form(documents):
    api, _ = documents
    sites = {p["name"]: p["schema"] for p in _parameters(api, api["paths"]["/sites"]["get"])}
    assert sites["as_of"]["pattern"] == r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$" and sites["as_of"]["format"] == "date"
    assert sites["country"]["items"]["pattern"] == r"^[A-Z]{3}$"
    changes = {p["name"]: p["schema"] for p in _parameters(api, api["paths"]["/changes"]["get"])}
    assert changes["since"]["pattern"].startswith("^[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _secured(document: dict) -> set[tuple[str, str]]:
    return {(method, path) for path, method, operation in _operations(document) if operation.get("security")}


def test_bearer_security_only_on_the_writes_when_reads_are_open(documents):
    api, full = documents
    for document in (api, full):
        secured = _secured(document)
        assert secured and all(method != "get" for method, _ in secured), sorted(secured)
        writes = {(m, p) for p, m, _ in _operations(document) if m != "get"}
        assert secured == writes
        assert all("401" not in op["responses"] for p, m, op in _operations(document) if m == "get")


def test_bearer_security_on_the_reads_too_when_they_are_closed(gpkg_path):
    token = new_token()
    settings = Settings(gpkg=gpkg_path, _env_file=None, read_access="token",
                        tokens=[{"name": "r", "role": "reader", "sha256": hash_token(token)}])
    with TestClient(create_app(settings)) as closed:
        api = closed.get("/api", headers={"Authorization": f"Bearer {token}"}).json()
    secured = _secured(api)
    reads = {("get", p) for p, m, _ in _operations(api) if m == "get"}
    assert reads - {("get", "/health")} <= secured and ("get", "/health") not in secured


@pytest.mark.parametrize("query", ["f=html", "x=1", "f=json&f=json"])
def test_api_takes_only_f_json(client, query):
    response = client.get(f"/api?{query}")
    assert response.status_code == 400
    assert client.get("/api?f=json").status_code == 200
