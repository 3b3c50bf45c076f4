"""HTTP methods: HEAD on every GET route answers as GET without a body; a 405 lists every method the path takes."""

import re

import pytest

from app.http_methods import PROBED

REAL_IDS = {"site_id": "kal-gol", "collectionId": "sites", "source_id": "38-north-iha-ri", "missile_id": "hwasong-5",
            "place_id": "seoul", "city_id": "1835848"}
FEATURE_IDS = {"sites": "kal-gol", "places": "seoul", "borders": "mdl", "observations": "chiha-ri-1998-report",
               "missiles": "hwasong-5"}
EXTRA_GET_PATHS = ["/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/docs/assets/swagger-ui-bundle.js",
                   "/docs/assets/redoc.standalone.js"]
REQUIRED_QUERY = {"/reach": "?near=seoul", "/borders/distance": "?near=seoul"}


def _url(path: str) -> str:
    """A path template with real ids in it."""
    ids = {**REAL_IDS, "featureId": FEATURE_IDS.get(path.split("/")[2] if path.startswith("/collections/") else "")}
    return re.sub(r"\{([^}]+)\}", lambda m: ids[m.group(1)], path) + REQUIRED_QUERY.get(path, "")


@pytest.fixture(scope="module")
def paths(client) -> dict[str, set[str]]:
    """Each path of the OpenAPI with its methods, upper case."""
    return {path: {m.upper() for m in item if m.upper() in PROBED}
            for path, item in client.get("/openapi.json").json()["paths"].items()}


IDENTITY = {"Accept-Encoding": "identity"}


def test_head_on_every_get_route_is_the_get_without_a_body(client, paths):
    urls = [_url(p) for p, methods in paths.items() if "GET" in methods] + EXTRA_GET_PATHS
    assert len(urls) > 15
    for url in urls:  # unencoded: a gzipped map's length follows its generation time, which differs between the two
        got, head = client.get(url, headers=IDENTITY), client.head(url, headers=IDENTITY)
        assert head.status_code == got.status_code == 200, (url, head.status_code, got.status_code)
        assert head.headers["content-type"] == got.headers["content-type"], url
        assert head.content == b"", url
        if "timeStamp" not in got.text:  # the OGC items' time stamp may change the length between the two
            assert head.headers.get("content-length") == got.headers.get("content-length"), url


def test_head_keeps_the_errors_of_get(client):
    assert client.head("/sites/no-such-site").status_code == 404
    assert client.head("/sites?lat=100&lon=0").status_code == 422
    assert client.head("/collections/sites/items?foo=1").status_code == 400


def test_a_405_lists_every_method_of_the_path(client, paths):
    for path, methods in paths.items():
        allowed = sorted(methods | ({"HEAD"} if "GET" in methods else set()))
        for method in sorted(set(PROBED) - methods):
            response = client.request(method, _url(path))
            assert response.status_code == 405, (method, path, response.status_code)
            assert response.headers["Allow"] == ", ".join(allowed), (method, path)
            error = response.json()["error"]
            assert (error["status"], error["code"]) == (405, "method_not_allowed")


def test_head_on_a_path_without_get_is_405(client):
    response = client.head("/sources")
    assert response.status_code == 405 and response.headers["Allow"] == "POST"
