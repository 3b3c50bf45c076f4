"""OGC API - Features: the core assertions, and GDAL's OAPIF driver and OWSLib as real clients."""

import json
import math
import os
import socket
import subprocess
import sys
import time

import httpx
import pyogrio
import pytest

from app.routers.ogc import CONFORMANCE, parse_bbox, parse_datetime


@pytest.fixture(scope="module")
def server_url(gpkg_path):
    """A real uvicorn server on a free loopback port, in a background process (GDAL holds the GIL)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "MISSILE_SITES_GPKG": str(gpkg_path)}
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning"], env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        else:
            raise RuntimeError("uvicorn did not start")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _same(expected, got) -> bool:
    """A GeoJSON property equals what GDAL read (lists as arrays, objects as JSON text, NULL as None/NaN)."""
    if got is None or (isinstance(got, float) and math.isnan(got)):
        return expected is None or expected == [] or expected == {}
    if isinstance(expected, dict):
        return (json.loads(got) if isinstance(got, str) else got) == expected
    if isinstance(expected, list):
        return list(got) == expected
    if isinstance(expected, float):
        return math.isclose(float(got), expected, rel_tol=0, abs_tol=1e-9)
    return type(expected)(got) == expected


def assert_frame_matches_sites(frame, features, *, id_column="id", properties=None):
    """Every feature of /sites is in the frame with the same geometry and attributes, and nothing else is."""
    by_id = {str(row[id_column]): row for _, row in frame.iterrows()}
    assert sorted(by_id) == sorted(f["id"] for f in features)
    for item in features:
        row = by_id[item["id"]]
        geometry = item["geometry"]
        if geometry is None:
            assert row.geometry is None or row.geometry.is_empty, item["id"]
        else:
            assert row.geometry.x == pytest.approx(geometry["coordinates"][0], abs=1e-9), item["id"]
            assert row.geometry.y == pytest.approx(geometry["coordinates"][1], abs=1e-9), item["id"]
        for name in properties or item["properties"]:
            assert _same(item["properties"][name], row[name]), (item["id"], name, item["properties"][name], row[name])


# --- core assertions, in process ---------------------------------------------------------------


def test_landing_page_links(client):
    body = client.get("/").json()
    rels = {link["rel"]: link["href"] for link in body["links"]}
    assert {"self", "service-desc", "conformance", "data"} <= set(rels)
    assert rels["service-desc"].endswith("/openapi.json")
    assert rels["conformance"].endswith("/conformance") and rels["data"].endswith("/collections")
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/?f=html").headers["content-type"].startswith("text/html")


def test_conformance_classes(client):
    classes = client.get("/conformance").json()["conformsTo"]
    for name in ("core", "geojson", "html", "oas30"):
        assert f"http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/{name}" in classes
    assert classes == CONFORMANCE


def test_collections(client):
    body = client.get("/collections").json()
    assert [c["id"] for c in body["collections"]] == ["sites", "places", "borders", "observations"]
    sites = client.get("/collections/sites").json()
    assert any(link["rel"] == "items" and link["type"] == "application/geo+json" for link in sites["links"])
    west, south, east, north = sites["extent"]["spatial"]["bbox"][0]
    assert west < east and south < north


@pytest.mark.parametrize("limit, status, returned", [("0", 400, None), ("1", 200, 1), ("1000", 200, 23),
                                                      ("1001", 400, None), ("-1", 400, None), ("x", 400, None)])
def test_limit_edge_cases(client, limit, status, returned):
    response = client.get(f"/collections/sites/items?limit={limit}")
    assert response.status_code == status
    if status == 200:
        assert response.json()["numberReturned"] == returned
        assert response.headers["content-type"] == "application/geo+json"
    else:
        assert response.json()["error"]["parameter"] == "limit"


def test_paging_links_walk_every_item(client):
    first = client.get("/collections/sites/items?limit=5").json()
    assert first["numberMatched"] == 23 and first["numberReturned"] == 5 and "timeStamp" in first
    assert not any(link["rel"] == "prev" for link in first["links"])
    seen, page = [], first
    while True:
        seen += [f["id"] for f in page["features"]]
        following = [link["href"] for link in page["links"] if link["rel"] == "next"]
        if not following:
            break
        page = client.get(following[0].replace("http://testserver", "")).json()
    assert any(link["rel"] == "prev" for link in page["links"])
    assert seen == [f["id"] for f in client.get("/sites?limit=1000").json()["features"]]


def test_default_limit_is_100(client):
    body = client.get("/collections/borders/items").json()
    assert body["numberReturned"] == 100 and body["numberMatched"] > 100


@pytest.mark.parametrize("text, boxes", [
    ("120,30,130,40", [(120, 30, 130, 40)]),
    ("170,-20,-170,20", [(170, -20, 180, -20 + 40), (-180, -20, -170, 20)]),
])
def test_parse_bbox(text, boxes):
    assert parse_bbox(text) == [tuple(float(v) for v in box) for box in boxes]


def test_bbox_crossing_the_antimeridian(client):
    def place_ids(bbox):
        body = client.get(f"/collections/places/items?bbox={bbox}&limit=1000")
        assert body.status_code == 200, body.text
        return {f["id"] for f in body.json()["features"]}

    # west > east: from 140°E across 180° to 170°W, i.e. Tokyo, Misawa, Guam, but not Korea
    assert place_ids("140,10,-170,45") == {"andersen-afb", "hagatna", "misawa-air-base"}
    assert place_ids("140,10,-170,45") == place_ids("140,10,180,45") | place_ids("-180,10,-170,45")
    assert place_ids("150,-90,-100,90") == set()
    # the complement of 125°E-145°E: Pyongyang (125.75°E) and Seoul are out, nothing east of 145°E here either
    assert place_ids("145,-90,125,90") == set()
    assert "pyongyang" in place_ids("125.5,-90,125,90")
    assert client.get("/collections/sites/items?bbox=170,-10,-170,10").json()["numberMatched"] == 0
    assert client.get("/collections/sites/items?bbox=100,-90,99,90").json()["numberMatched"] == 21


def test_bbox_keeps_only_located_sites_inside(client):
    body = client.get("/collections/sites/items?bbox=124,37,129,39.5&limit=1000").json()
    assert body["numberMatched"] > 0
    for item in body["features"]:
        lon, lat = item["geometry"]["coordinates"]
        assert 124 <= lon <= 129 and 37 <= lat <= 39.5


@pytest.mark.parametrize("bbox", ["1,2,3", "1,2,3,4,5", "a,b,c,d", "1,2,3,nan", "0,10,1,5", "0,0,200,1", ""])
def test_bad_bbox_is_400(client, bbox):
    response = client.get(f"/collections/sites/items?bbox={bbox}")
    assert response.status_code == 400
    assert response.json()["error"] == {**response.json()["error"], "status": 400, "parameter": "bbox"}


@pytest.mark.parametrize("url, parameter", [
    ("/collections/sites/items?foo=1", "foo"),
    ("/collections/sites/items?datetime=2020", "datetime"),
    ("/collections/places/items?within_km=5", "within_km"),
    ("/collections?foo=1", "foo"),
    ("/?bar=2", "bar"),
    ("/conformance?x=1", "x"),
    ("/collections/sites/items/kal-gol?limit=2", "limit"),
    ("/collections/sites/items?f=xml", "f"),
    ("/collections/sites/items?lat=37&lon=127&within_km=-1", "within_km"),
    ("/collections/sites/items?within_km=10", "lat"),
])
def test_unknown_or_bad_parameter_is_400(client, url, parameter):
    response = client.get(url)
    assert response.status_code == 400
    assert response.json()["error"]["parameter"] == parameter
    assert set(response.json()) == {"error"}


@pytest.mark.parametrize("url", ["/collections/nope", "/collections/nope/items", "/collections/sites/items/nope",
                                 "/collections/observations/items/nope"])
def test_unknown_collection_or_feature_is_404(client, url):
    response = client.get(url)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_one_feature(client):
    item = client.get("/collections/sites/items/kal-gol").json()
    assert item["id"] == "kal-gol" and item["geometry"]["type"] == "Point"
    listed = next(f for f in client.get("/sites?limit=1000").json()["features"] if f["id"] == "kal-gol")
    assert item["properties"] == listed["properties"]
    place = client.get("/collections/places/items/seoul").json()
    assert place["properties"]["name"] == "Seoul"


def test_attribute_filters(client):
    active = client.get("/collections/sites/items?current_status=active&limit=1000").json()
    expected = client.get("/sites?status=active&limit=1000").json()
    assert [f["id"] for f in active["features"]] == [f["id"] for f in expected["features"]]
    icbm = client.get("/collections/sites/items?missile_classes=ICBM&limit=1000").json()
    assert icbm["numberMatched"] == client.get("/sites?missile_class=ICBM&limit=1000").json()["numberMatched"]
    assert client.get("/collections/places/items?name=Seoul").json()["numberMatched"] == 1


def test_observations_have_null_geometry_and_datetime(client):
    body = client.get("/collections/observations/items?limit=1000").json()
    assert body["numberMatched"] == 55 and all(f["geometry"] is None for f in body["features"])
    assert client.get("/collections/observations/items?bbox=0,0,1,1").status_code == 400
    dates = [f["properties"]["observed_on"] for f in body["features"]]

    def matched(value):
        return client.get(f"/collections/observations/items?limit=1000&datetime={value}").json()["features"]

    exact = matched("2003-04-01")
    assert exact and all(f["properties"]["observed_on"].startswith("2003") for f in exact)
    assert {f["properties"]["observed_on"] for f in matched("2003-04-01T12:00:00Z")} == {
        f["properties"]["observed_on"] for f in exact}
    after = matched("2018-01-01/..")
    assert after and all(f["properties"]["observed_on"][:4] >= "2018" for f in after)
    before = matched("../2000-12-31")
    assert all(f["properties"]["observed_on"][:4] <= "2000" for f in before)
    assert len(after) + len(before) <= len(dates)
    both = matched("2000-01-01/2010-12-31")
    assert all("2000" <= f["properties"]["observed_on"][:4] <= "2010" for f in both)
    for bad in ("yesterday", "2020/2010", "../..", "2020-13-01", "a/b/c"):
        assert client.get(f"/collections/observations/items?datetime={bad}").status_code == 400, bad


@pytest.mark.parametrize("text, start, end", [
    ("2018", "2018-01-01", "2018-12-31"), ("2018-02", "2018-02-01", "2018-02-28"),
    ("2020-12-31T23:00:00Z", "2020-12-31", "2020-12-31"), ("2019/2020-06", "2019-01-01", "2020-06-30"),
])
def test_parse_datetime(text, start, end):
    first, last = parse_datetime(text)
    assert (first.isoformat(), last.isoformat()) == (start, end)


def test_radius_extension_uses_the_geodesic_query(client):
    body = client.get("/collections/sites/items?lat=37.5665&lon=126.978&within_km=150&limit=1000").json()
    expected = client.get("/sites?lat=37.5665&lon=126.978&within_km=150&limit=1000").json()
    assert sorted(f["id"] for f in body["features"]) == sorted(f["id"] for f in expected["features"])
    assert all("distance_km" in f["properties"] for f in body["features"])


def test_items_html_lists_items_and_links_to_the_map(client):
    response = client.get("/collections/sites/items?f=html&limit=5")
    assert response.headers["content-type"].startswith("text/html")
    assert response.text.count("<li>") == 5 and "/map" in response.text
    by_accept = client.get("/collections/sites/items", headers={"Accept": "text/html"})
    assert by_accept.headers["content-type"].startswith("text/html")


def test_every_ogc_path_is_in_openapi(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/", "/conformance", "/collections", "/collections/{collectionId}",
                 "/collections/{collectionId}/items", "/collections/{collectionId}/items/{featureId}"):
        assert path in paths


# --- real clients over HTTP --------------------------------------------------------------------


def test_gdal_oapif_reads_every_site_as_sites_gives_it(server_url):
    frame = pyogrio.read_dataframe(f"OAPIF:{server_url}", layer="sites", open_options=["PAGE_SIZE=5"])
    features = httpx.get(f"{server_url}/sites?limit=1000").json()["features"]
    assert len(frame) == len(features) == 23
    assert_frame_matches_sites(frame, features)


def test_gdal_oapif_lists_the_collections(server_url):
    layers = [name for name, _ in pyogrio.list_layers(f"OAPIF:{server_url}")]
    assert layers == ["sites", "places", "borders", "observations"]
    observations = pyogrio.read_dataframe(f"OAPIF:{server_url}", layer="observations", read_geometry=False)
    assert len(observations) == 55


def test_owslib_lists_collections_and_reads_items(server_url):
    from owslib.ogcapi.features import Features

    api = Features(server_url)
    assert [c["id"] for c in api.collections()["collections"]] == ["sites", "places", "borders", "observations"]
    assert set(CONFORMANCE) <= set(api.conformance()["conformsTo"])
    items = api.collection_items("sites", limit=3)
    assert items["numberReturned"] == 3 and items["numberMatched"] == 23
    assert api.collection_item("sites", "kal-gol")["id"] == "kal-gol"
