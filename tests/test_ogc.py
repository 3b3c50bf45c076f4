"""OGC API - Features: the core assertions, and GDAL's OAPIF driver and OWSLib as real clients."""

import json
import math
import os
import subprocess
import sys
import time

import httpx
import pyogrio
import pytest

from app.routers.ogc import CONFORMANCE, parse_bbox, parse_datetime
from tests.conftest import engine_env
from tests.service import free_port

pytestmark = pytest.mark.contract


@pytest.fixture(scope="module")
def server_url(client_live):
    """A real uvicorn server on a free loopback port on the engine, in a background process (GDAL holds the GIL)."""
    port = free_port()
    env = {**os.environ, **engine_env(client_live)}
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
    assert rels["service-desc"].endswith("/api")
    desc = next(link for link in body["links"] if link["rel"] == "service-desc")
    assert desc["type"] == "application/vnd.oai.openapi+json;version=3.0"
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
    assert [c["id"] for c in body["collections"]] == ["sites", "places", "borders", "observations", "missiles"]
    sites = client.get("/collections/sites").json()
    assert any(link["rel"] == "items" and link["type"] == "application/geo+json" for link in sites["links"])
    west, south, east, north = sites["extent"]["spatial"]["bbox"][0]
    assert west < east and south < north


@pytest.mark.parametrize("limit, status, returned", [("0", 400, None), ("1", 200, 1), ("1000", 200, 23),
                                                      ("1001", 200, 23), ("10" + "0" * 25, 200, 23),
                                                      ("-1", 400, None), ("x", 400, None), ("%2B5", 200, 5),
                                                      ("٥", 400, None), (" 5", 400, None), ("5.0", 400, None)])
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
    ("/collections/places/items?lat=1", "lat"),
    ("/collections/sites/items?bbox=1,2,3,4&bbox=1,2,3,4", "bbox"),
    ("/collections/places/items?within_km=5", "within_km"),
    ("/collections?foo=1", "foo"),
    ("/?bar=2", "bar"),
    ("/conformance?x=1", "x"),
    ("/collections/sites/items/kal-gol?limit=2", "limit"),
    ("/collections/sites/items?f=xml", "f"),
    ("/collections/sites/items?lat=37&lon=127&within_km=-1", "within_km"),
    ("/collections/sites/items?within_km=10", "within_km"),
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
    assert client.get("/collections/observations/items?bbox=-180,-90,180,90").json()["numberMatched"] == 0
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
    assert {"/", "/conformance", "/collections"} <= set(paths)
    for collection in ("sites", "places", "borders", "observations"):
        for tail in ("", "/items", "/items/{featureId}", "/schema", "/queryables", "/feature-schema"):
            assert f"/collections/{collection}{tail}" in paths


# --- real clients over HTTP --------------------------------------------------------------------


def _gdal_sites(server_url: str, page_size: int, *, dates_as_text: bool):
    """The sites as GDAL's OAPIF driver reads them at a page size (dates_as_text: GeoJSON dates kept as text)."""
    pyogrio.set_gdal_config_options({"OGR_GEOJSON_DATE_AS_STRING": "YES" if dates_as_text else None})
    try:
        return pyogrio.read_dataframe(f"OAPIF:{server_url}", layer="sites", PAGE_SIZE=page_size)
    finally:
        pyogrio.set_gdal_config_options({"OGR_GEOJSON_DATE_AS_STRING": None})


def _cells(frame) -> dict:
    """Every attribute cell of a GDAL frame, by site id and column, lists as tuples and NaN as None."""
    def cell(value):
        if hasattr(value, "tolist"):
            return tuple(value.tolist())
        return None if isinstance(value, float) and math.isnan(value) else value
    return {(row["id"], column): cell(row[column]) for _, row in frame.iterrows()
            for column in frame.columns if column != "geometry"}


def test_gdal_oapif_page_sizes_5_and_1000_read_identical_values(server_url, capsys):
    """With the collection's schema GDAL types every field once, whatever the page: lists stay lists."""
    features = httpx.get(f"{server_url}/sites?limit=1000").json()["features"]
    small, large = (_gdal_sites(server_url, size, dates_as_text=True) for size in (5, 1000))
    assert _cells(small) == _cells(large)
    assert_frame_matches_sites(small, features)
    info = pyogrio.read_info(f"OAPIF:{server_url}", layer="sites", PAGE_SIZE=5)
    types = dict(zip(info["fields"], info["dtypes"]))
    for name in ("aliases", "missile_types", "missile_classes", "source_ids"):
        assert types[name] == "list(str)", (name, types[name])
    assert types["coord_precision_m"] == "float64" and types["status_observed_on"] == "object"
    with capsys.disabled():
        print(f"\nGDAL {pyogrio.__gdal_version_string__} OAPIF: 23 sites at page sizes 5 and 1000, identical; "
              f"list fields {types['missile_types']}")


def test_gdal_guesses_dates_per_page_unless_told_to_keep_them_as_text(server_url):
    """GDAL's GeoJSON reader turns a page whose values are all full dates into a Date field (2003/04/01) whatever
    the schema says; the only difference between page sizes is that spelling (OGR_GEOJSON_DATE_AS_STRING=YES
    keeps the text, as the README says)."""
    small, large = (_cells(_gdal_sites(server_url, size, dates_as_text=False)) for size in (5, 1000))
    differing = {key for key in small if small[key] != large[key]}
    assert {column for _, column in differing} <= {"status_observed_on"}
    assert all(small[key].replace("/", "-") == large[key] for key in differing)


def test_gdal_oapif_reads_every_site_as_sites_gives_it(server_url):
    frame = _gdal_sites(server_url, 1000, dates_as_text=True)
    features = httpx.get(f"{server_url}/sites?limit=1000").json()["features"]
    assert len(frame) == len(features) == 23
    assert_frame_matches_sites(frame, features)


def test_debian_gdal_36_reads_the_schema_and_pages_alike(server_url, capsys):
    """GDAL 3.6.2 from Debian (what QGIS 3.22 ships with): the `describedBy` schema types the lists; page sizes 5
    and 1000 give the same features."""
    version = subprocess.run(["ogrinfo", "--version"], capture_output=True, text=True, check=True).stdout.strip()
    info = subprocess.run(["ogrinfo", "-ro", "-so", f"OAPIF:{server_url}", "sites"], capture_output=True,
                          text=True, check=True).stdout
    assert "missile_types: StringList" in info and "coord_precision_m: Real" in info, info

    def read(page_size):
        out = subprocess.run(["ogr2ogr", "-f", "GeoJSON", "/vsistdout/", f"OAPIF:{server_url}", "sites",
                              "-oo", f"PAGE_SIZE={page_size}", "--config", "OGR_GEOJSON_DATE_AS_STRING", "YES"],
                             capture_output=True, text=True, check=True).stdout
        return {f["properties"]["id"]: f for f in json.loads(out)["features"]}

    small, large = read(5), read(1000)
    assert len(small) == 23 and small == large
    assert small["kal-gol"]["properties"]["missile_classes"] == ["MRBM", "SRBM"]
    with capsys.disabled():
        print(f"\n{version}: OAPIF sites at page sizes 5 and 1000, identical; missile_types StringList")


def test_gdal_oapif_lists_the_collections(server_url):
    layers = [name for name, _ in pyogrio.list_layers(f"OAPIF:{server_url}")]
    assert layers == ["sites", "places", "borders", "observations", "missiles"]
    observations = pyogrio.read_dataframe(f"OAPIF:{server_url}", layer="observations", read_geometry=False)
    assert len(observations) == 55


def test_owslib_lists_collections_and_reads_items(server_url):
    from owslib.ogcapi.features import Features

    api = Features(server_url)
    assert [c["id"] for c in api.collections()["collections"]] == ["sites", "places", "borders", "observations", "missiles"]
    assert set(CONFORMANCE) <= set(api.conformance()["conformsTo"])
    items = api.collection_items("sites", limit=3)
    assert items["numberReturned"] == 3 and items["numberMatched"] == 23
    assert api.collection_item("sites", "kal-gol")["id"] == "kal-gol"


# --- filters that leave nothing: 200 and an empty collection in every format ----------------------

EMPTY_FORMATS = ("json", "geojson", "html", "csv", "kml")
EMPTY_QUERIES = {  # collection -> queries whose filters leave no row (each also with a filter after the emptying one)
    "sites": ["country=USA&current_status=active", "current_status=active&country=USA",
              "missile_classes=ICBM&country=IRN", "bbox=170,-10,-170,10&current_status=active",
              "lat=0&lon=0&within_km=1&bbox=0,0,1,1", "lat=0&lon=0&within_km=1&country=PRK",
              "id=nope&name=Sakkanmol&aliases=Satkatmol"],
    "places": ["country=USA&kind=city", "bbox=0,0,1,1&name=Seoul"],
    "borders": ["kind=nope&id=mdl", "bbox=0,0,1,1&kind=mdl"],
    "observations": ["datetime=1066&site_id=sakkanmol", "site_id=nope&kind=report", "status_seen=nope&datetime=2020"],
}


def _assert_empty(response, fmt: str) -> None:
    """A 200 holding no feature, in the asked format."""
    assert response.status_code == 200, (response.status_code, response.text[:300])
    if fmt in ("json", "geojson"):
        body = response.json()
        assert (body["features"], body["numberMatched"], body["numberReturned"]) == ([], 0, 0)
    elif fmt == "html":
        assert response.headers["content-type"].startswith("text/html") and "<li>" not in response.text
    elif fmt == "csv":
        assert response.text.count("\n") == 1 and response.text.startswith("lon,lat,wkt")
    else:
        assert "<kml" in response.text and "Placemark" not in response.text


@pytest.mark.parametrize("fmt", EMPTY_FORMATS)
@pytest.mark.parametrize("collection, query", [(c, q) for c, queries in EMPTY_QUERIES.items() for q in queries])
def test_filters_matching_nothing_answer_an_empty_collection(client, collection, query, fmt):
    _assert_empty(client.get(f"/collections/{collection}/items?{query}&f={fmt}"), fmt)


@pytest.mark.parametrize("collection", list(EMPTY_QUERIES))
def test_every_property_filter_matching_nothing_then_another_is_empty(client, collection):
    """Sweep: each property filtered to a value no row has, then by a value some row has, in every format."""
    item = client.get(f"/collections/{collection}/items?limit=1").json()["features"][0]
    names = [name for name in item["properties"] if name not in ("distance_km", "border_distances_km")]
    for name in names:
        then = next(other for other in ("id", "name", "site_id") if other != name and other in item["properties"])
        for fmt in EMPTY_FORMATS:
            query = {name: "no such value", then: item["properties"][then], "f": fmt}
            _assert_empty(client.get(f"/collections/{collection}/items", params=query), fmt)


def test_gpkg_of_an_empty_selection_is_the_file(client):
    response = client.get("/collections/sites/items?country=USA&current_status=active&f=gpkg")
    assert response.status_code == 200 and response.content.startswith(b"SQLite format 3\x00")


def test_collection_with_no_located_row_has_no_spatial_extent(catalogue):
    """A layer left empty (every site retired, say) describes itself without a bbox instead of failing."""
    from types import SimpleNamespace

    from app.routers.ogc import COLLECTIONS, _collection_body

    empty = SimpleNamespace(sites=catalogue.sites.iloc[:0], observations=catalogue.observations.iloc[:0])
    body = _collection_body(empty, COLLECTIONS["sites"], "http://x")
    assert body["id"] == "sites" and "spatial" not in body["extent"]


def test_head_over_a_real_socket_sends_no_body(server_url):
    """uvicorn answers HEAD with the GET's headers and no body, so the next request on the connection reads right."""
    import http.client
    from urllib.parse import urlsplit

    connection = http.client.HTTPConnection(urlsplit(server_url).netloc, timeout=10)
    try:
        for path in ("/collections/sites/items", "/sites"):
            connection.request("HEAD", path)
            head = connection.getresponse()
            assert head.status == 200 and head.read() == b"" and int(head.getheader("Content-Length")) > 0
            assert head.getheader("X-Content-Type-Options") == "nosniff"
        connection.request("GET", "/health")
        assert json.loads(connection.getresponse().read())["status"] == "ok"
    finally:
        connection.close()


@pytest.mark.parametrize("text", ["2020-1", "20201", "2020-12-31T25:00:00Z", " 2020", "2020-01-01T00:00:00+00:00:30",
                                  "2020-01-01 00:00:00", "2020-W01", "2020-01-01T00:00Z", "2020/2020-1"])
def test_datetime_takes_only_the_documented_forms(client, text):
    response = client.get("/collections/observations/items", params={"datetime": text})
    assert response.status_code == 400 and response.json()["error"]["parameter"] == "datetime", response.text


def test_datetime_instants_count_in_utc(client):
    def ids(value):
        return [f["id"] for f in client.get("/collections/observations/items",
                                            params={"datetime": value, "limit": 1000}).json()["features"]]

    assert ids("2003-03-31T23:00:00-05:00") == ids("2003-04-01") == ids("2003-04-01T04:00:00Z")
    assert ids("2003-04-01T08:59:59+09:00") == ids("2003-03-31") != ids("2003-04-01")


# --- schemas, queryables, alternates, time ---------------------------------------------------------------------

COLLECTION_IDS = ("sites", "places", "borders", "observations")
SCHEMA_REL = "http://www.opengis.net/def/rel/ogc/1.0/schema"
QUERYABLES_REL = "http://www.opengis.net/def/rel/ogc/1.0/queryables"


def _rels(body: dict) -> dict[str, list[dict]]:
    rels: dict[str, list[dict]] = {}
    for link in body["links"]:
        rels.setdefault(link["rel"], []).append(link)
    return rels


@pytest.mark.parametrize("collection", COLLECTION_IDS)
def test_each_collection_links_its_schema_queryables_and_alternates(client, collection):
    rels = _rels(client.get(f"/collections/{collection}").json())
    assert rels[SCHEMA_REL][0]["href"].endswith(f"/collections/{collection}/schema")
    assert rels[QUERYABLES_REL][0]["href"].endswith(f"/collections/{collection}/queryables")
    assert {link["type"] for link in rels[SCHEMA_REL] + rels[QUERYABLES_REL]} == {"application/schema+json"}
    assert rels["alternate"][0]["type"] == "text/html"
    assert {link["type"] for link in rels["items"]} >= {"application/geo+json", "text/html", "text/csv"}
    for link in rels[SCHEMA_REL] + rels[QUERYABLES_REL] + rels["describedBy"]:
        response = client.get(link["href"].replace("http://testserver", ""))
        assert response.status_code == 200 and response.headers["content-type"] == "application/schema+json"


def test_collections_and_features_link_their_alternates(client):
    assert {link["type"] for link in _rels(client.get("/collections").json())["alternate"]} == {"text/html"}
    item = client.get("/collections/sites/items/kal-gol").json()
    alternate = _rels(item)["alternate"][0]
    assert alternate["type"] == "text/html"
    html_page = client.get(alternate["href"].replace("http://testserver", ""))
    assert html_page.headers["content-type"].startswith("text/html") and "Kal-gol" in html_page.text
    page = client.get("/collections/sites/items?limit=2").json()
    assert {link["type"] for link in _rels(page)["alternate"]} >= {"text/html", "text/csv",
                                                                   "application/vnd.google-earth.kml+xml"}


@pytest.mark.parametrize("collection", COLLECTION_IDS)
def test_the_schema_types_every_property_served(client, collection):
    """Part 5: every property a feature carries is in the schema, each value valid against it; lists are arrays of
    strings, the id and the geometry carry their roles."""
    import jsonschema

    schema = client.get(f"/collections/{collection}/schema").json()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema" and schema["type"] == "object"
    properties = schema["properties"]
    assert properties["id"]["x-ogc-role"] == "id"
    if collection != "observations":
        assert properties["geometry"]["x-ogc-role"] == "primary-geometry"
    features = client.get(f"/collections/{collection}/items?limit=1000").json()["features"]
    served = {name for item in features for name in item["properties"]}
    assert served <= set(properties), served - set(properties)
    validator = jsonschema.Draft202012Validator({**schema, "properties": {
        k: v for k, v in properties.items() if k != "geometry"}})
    for item in features:
        errors = [e.message for e in validator.iter_errors(item["properties"])]
        assert errors == [], (item["id"], errors)


def test_list_fields_are_arrays_of_strings_in_schema_and_queryables(client):
    schema = client.get("/collections/sites/schema").json()["properties"]
    queryables = client.get("/collections/sites/queryables").json()
    assert queryables["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert queryables["additionalProperties"] is False
    for name in ("aliases", "missile_types", "missile_classes", "source_ids"):
        assert schema[name]["type"] == ["array", "null"] and schema[name]["items"] == {"type": "string"}
        assert queryables["properties"][name]["type"] == "array"
        assert queryables["properties"][name]["items"] == {"type": "string"}
    assert schema["coord_precision_m"]["type"] == ["number", "null"]


@pytest.mark.parametrize("collection", COLLECTION_IDS)
def test_every_queryable_filters_items_and_nothing_else_does(client, collection):
    """Part 3, queryables as query parameters: each queryable is a parameter of the items, the only ones besides
    the standard and extension parameters."""
    queryables = set(client.get(f"/collections/{collection}/queryables").json()["properties"])
    spec = client.get("/openapi.json").json()
    shared = spec["components"]["parameters"]
    operation = spec["paths"][f"/collections/{collection}/items"]["get"]
    names = {(shared[p["$ref"].rsplit("/", 1)[1]] if "$ref" in p else p)["name"] for p in operation["parameters"]}
    standard = {"f", "bbox", "datetime", "limit", "offset", "as_of"} | (
        {"lat", "lon", "within_km"} if collection == "sites" else set())
    assert names - standard == queryables
    first = client.get(f"/collections/{collection}/items?limit=1").json()["features"][0]
    for name in queryables:
        value = first["properties"][name]
        if value in (None, []):
            continue
        value = value[0] if isinstance(value, list) else value
        ids = [f["id"] for f in client.get(f"/collections/{collection}/items",
                                           params={name: value, "limit": 1000}).json()["features"]]
        assert first["id"] in ids, (name, value)


def test_datetime_on_sites_keeps_those_observed_then(client):
    observations = client.get("/collections/observations/items?limit=1000&datetime=2024").json()["features"]
    expected = {f["properties"]["site_id"] for f in observations}
    sites = client.get("/collections/sites/items?limit=1000&datetime=2024").json()["features"]
    assert expected and {f["id"] for f in sites} == expected
    assert client.get("/collections/sites/items?datetime=1066").json()["numberMatched"] == 0


@pytest.mark.parametrize("collection, total", [("places", 15), ("borders", 338)])
def test_datetime_on_undated_collections_keeps_every_feature(client, collection, total):
    assert client.get(f"/collections/{collection}/items?datetime=1066").json()["numberMatched"] == total


@pytest.mark.parametrize("collection", ["sites", "observations"])
def test_temporal_extents_are_rfc_3339(client, collection):
    import re as regex

    temporal = client.get(f"/collections/{collection}").json()["extent"]["temporal"]
    start, end = temporal["interval"][0]
    pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$"
    assert regex.match(pattern, start) and regex.match(pattern, end)
    assert start == "1991-01-01T00:00:00Z" and end == "2025-08-20T23:59:59Z"


def test_limit_above_the_maximum_is_served_at_the_maximum(client):
    response = client.get("/collections/borders/items?limit=5000&offset=10")
    assert response.status_code == 200
    body = response.json()
    assert body["numberReturned"] == 328 and not [link for link in body["links"] if link["rel"] == "next"]
    previous = next(link["href"] for link in body["links"] if link["rel"] == "prev")
    assert "limit=1000" in previous and "offset=0" in previous
