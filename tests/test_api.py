"""The HTTP API through an in-process client: answers, and errors for every bad input."""


import pytest
from pyproj import Geod

GEOD = Geod(ellps="WGS84")
SEOUL = (126.9784, 37.566)
pytestmark = pytest.mark.contract


def ids(collection: dict) -> list[str]:
    """The feature ids of a FeatureCollection, in order."""
    return [f["id"] for f in collection["features"]]


def by_id(collection: dict) -> dict:
    """A FeatureCollection's features keyed by id."""
    return {f["id"]: f for f in collection["features"]}


def assert_error(response, status: int, parameter: str | None) -> None:
    """The one error shape, with its status and the parameter it names."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"status", "code", "message", "parameter"}
    assert body["error"]["status"] == status
    assert body["error"]["message"]
    if parameter is not None:
        assert body["error"]["parameter"] == parameter


def test_near_seoul_within_150_km(client):
    response = client.get("/sites", params={"near": "Seoul", "within_km": 150})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/geo+json")
    body = response.json()
    sites = by_id(body)
    assert {"sakkanmol", "kal-gol"} <= set(sites)
    assert "sino-ri" not in sites
    assert sites["sakkanmol"]["properties"]["distance_km"] == pytest.approx(136, abs=2)
    assert sites["kal-gol"]["properties"]["distance_km"] == pytest.approx(126, abs=2)
    assert sites["sakkanmol"]["properties"]["border_distances_km"]["mdl"] == pytest.approx(85, abs=3)
    assert {"chn-prk", "prk-rus", "dmz-north"} <= set(sites["sakkanmol"]["properties"]["border_distances_km"])
    assert body["numberMatched"] == len(sites)
    assert body["centre"]["place_id"]


def test_distances_are_geodesic_and_sorted(client):
    body = client.get("/sites", params={"lat": SEOUL[1], "lon": SEOUL[0]}).json()
    distances = [f["properties"]["distance_km"] for f in body["features"]]
    assert distances == sorted(distances)
    for item in body["features"]:
        lon, lat = item["geometry"]["coordinates"]
        expected_km = GEOD.inv(SEOUL[0], SEOUL[1], lon, lat)[2] / 1000
        assert item["properties"]["distance_km"] == pytest.approx(expected_km, abs=0.001)


def test_radius_keeps_exactly_the_sites_inside(client):
    everything = client.get("/sites", params={"near": "Seoul", "limit": 1000}).json()
    inside = client.get("/sites", params={"near": "Seoul", "within_km": 200, "limit": 1000}).json()
    expected = [f["id"] for f in everything["features"] if f["properties"]["distance_km"] <= 200]
    assert ids(inside) == expected


def test_sites_without_coordinates_are_listed_as_unknown(client):
    body = client.get("/sites", params={"limit": 1000}).json()
    unlocated = [f for f in body["features"] if f["geometry"] is None]
    assert unlocated, "sites without a sourced coordinate must still be listed"
    for item in unlocated:
        assert item["properties"]["coord_confidence"] == "unknown"
        assert item["properties"]["border_distances_km"] == {}


def test_first_belt_by_distance_to_the_mdl(client):
    body = client.get("/sites", params={"border": "mdl", "border_min_km": 50, "border_max_km": 90}).json()
    assert {"sakkanmol", "kal-gol", "kumchon-ni"} <= set(ids(body))
    assert "sino-ri" not in ids(body)
    for item in body["features"]:
        assert 50 <= item["properties"]["border_distance_km"] <= 90


@pytest.mark.parametrize(
    ("params", "expected_in", "expected_out"),
    [
        ({"missile_class": "ICBM"}, {"sinpung-dong"}, {"sakkanmol"}),
        ({"missile_type": "hwasong-5"}, {"sakkanmol", "kal-gol"}, {"sino-ri"}),
        ({"declared": "acknowledged"}, {"sohae-satellite-launching-station"}, {"sakkanmol"}),
        ({"facility_type": "missile_operating_base"}, {"sakkanmol"}, {"punggye-ri-nuclear-test-site"}),
        ({"status": "active"}, {"sakkanmol"}, set()),
        ({"country": "PRK"}, {"sakkanmol"}, set()),
    ],
)
def test_filters(client, params, expected_in, expected_out):
    found = set(ids(client.get("/sites", params={**params, "limit": 1000}).json()))
    assert expected_in <= found
    assert not expected_out & found


def test_paging_is_stable_and_complete(client):
    whole = ids(client.get("/sites", params={"limit": 1000}).json())
    pages = [ids(client.get("/sites", params={"limit": 5, "offset": o}).json()) for o in range(0, len(whole), 5)]
    assert [i for page in pages for i in page] == whole


@pytest.mark.parametrize(
    ("params", "status", "parameter"),
    [
        ({"lat": "nan", "lon": 126}, 422, "lat"),
        ({"lat": 38, "lon": "inf"}, 422, "lon"),
        ({"lat": "-Infinity", "lon": 126}, 422, "lat"),
        ({"lat": 90.0001, "lon": 126}, 422, "lat"),
        ({"lat": 38, "lon": -180.5}, 422, "lon"),
        ({"lat": "north", "lon": 126}, 422, "lat"),
        ({"lat": 38}, 422, "lon"),
        ({"lat": 38, "lon": 126, "near": "Seoul"}, 422, "near"),
        ({"near": "Seoul", "within_km": 0}, 422, "within_km"),
        ({"near": "Seoul", "within_km": -5}, 422, "within_km"),
        ({"near": "Seoul", "within_km": 20004}, 422, "within_km"),
        ({"near": "Seoul", "within_km": "nan"}, 422, "within_km"),
        ({"within_km": 100}, 422, "within_km"),
        ({"near": "Atlantis"}, 422, "near"),
        ({"near": ""}, 422, "near"),
        ({"status": "sleeping"}, 422, "status"),
        ({"declared": "maybe"}, 422, "declared"),
        ({"missile_class": "XRBM"}, 422, "missile_class"),
        ({"missile_type": "hwasong-99"}, 422, "missile_type"),
        ({"facility_type": "castle"}, 422, "facility_type"),
        ({"country": "ATL"}, 422, "country"),
        ({"limit": 100000}, 422, "limit"),
        ({"limit": 0}, 422, "limit"),
        ({"offset": -1}, 422, "offset"),
        ({"sort": "distance"}, 422, "sort"),
        ({"sort": "size"}, 422, "sort"),
        ({"border": "atlantis-wall"}, 422, "border"),
        ({"border_min_km": 50}, 422, "border"),
        ({"border": "mdl", "border_min_km": 90, "border_max_km": 50}, 422, "border_min_km"),
        ({"border": "mdl", "border_max_km": "nan"}, 422, "border_max_km"),
    ],
)
def test_bad_site_queries(client, params, status, parameter):
    assert_error(client.get("/sites", params=params), status, parameter)


def test_one_site_in_full(client):
    response = client.get("/sites/sakkanmol")
    assert response.status_code == 200
    site = response.json()
    properties = site["properties"]
    assert site["geometry"]["type"] == "Point"
    assert properties["name"] == "Sakkanmol"
    assert properties["observations"], "Sakkanmol has dated observations"
    assert all(o["source_id"] for o in properties["observations"])
    assert {m["id"] for m in properties["missiles"]} >= {"hwasong-5", "hwasong-6"}
    source_ids = {s["id"] for s in properties["sources"]}
    assert set(properties["source_ids"]) <= source_ids
    mdl = next(b for b in properties["border_distances"] if b["border_id"] == "mdl")
    assert mdl["distance_km"] == pytest.approx(85, abs=3)
    lon, lat = site["geometry"]["coordinates"]
    assert GEOD.inv(lon, lat, *mdl["nearest_point"])[2] / 1000 == pytest.approx(mdl["distance_km"], abs=0.01)


@pytest.mark.parametrize("path", ["/sites/atlantis", "/sites/atlantis/rings", "/nowhere"])
def test_unknown_paths_are_404(client, path):
    assert_error(client.get(path), 404, None)


def test_rings_follow_the_missiles(client):
    body = client.get("/sites/sakkanmol/rings").json()
    assert {f["properties"]["missile_id"] for f in body["features"]} >= {"hwasong-5", "hwasong-6"}
    for item in body["features"]:
        assert item["geometry"]["type"] in ("Polygon", "MultiPolygon")
        radius_m = item["properties"]["range_max_km"] * 1000
        ring = item["geometry"]["coordinates"][0] if item["geometry"]["type"] == "Polygon" else None
        if ring:
            for lon, lat in ring[::37]:
                assert GEOD.inv(126.107945, 38.584698, lon, lat)[2] == pytest.approx(radius_m, abs=2)


def test_rings_by_km_cross_the_antimeridian(client):
    body = client.get("/sites/sinpung-dong/rings", params={"km": [300, 15000]}).json()
    assert [f["properties"]["radius_km"] for f in body["features"]] == [300, 15000]
    big = body["features"][1]["geometry"]
    flat = [c for polygon in (big["coordinates"] if big["type"] == "MultiPolygon" else [big["coordinates"]])
            for ring in polygon for c in ring]
    assert all(-180 <= lon <= 180 and -90 <= lat <= 90 for lon, lat in flat)


@pytest.mark.parametrize(
    ("path", "params", "status", "parameter"),
    [
        ("/sites/sakkanmol/rings", {"km": "nan"}, 422, "km"),
        ("/sites/sakkanmol/rings", {"km": 0}, 422, "km"),
        ("/sites/sakkanmol/rings", {"km": 25000}, 422, "km"),
        ("/sites/yeongjeo-dong/rings", {}, 422, "site_id"),
        ("/reach", {}, 422, "lat"),
        ("/reach", {"near": "Atlantis"}, 422, "near"),
        ("/reach", {"lat": 91, "lon": 0}, 422, "lat"),
        ("/borders/distance", {}, 422, "lat"),
        ("/borders/distance", {"near": "Seoul", "border": "nope"}, 422, "border"),
        ("/borders/distance", {"lat": "nan", "lon": 3}, 422, "lat"),
    ],
)
def test_bad_inputs_elsewhere(client, path, params, status, parameter):
    assert_error(client.get(path, params=params), status, parameter)


def test_reach_tokyo(client):
    body = client.get("/reach", params={"near": "Tokyo"}).json()
    assert body["features"], "MRBM and longer-range sites reach Tokyo"
    for item in body["features"]:
        lon, lat = item["geometry"]["coordinates"]
        distance_km = GEOD.inv(lon, lat, 139.69171, 35.6895)[2] / 1000
        assert item["properties"]["distance_km"] == pytest.approx(distance_km, abs=0.001)
        for missile in item["properties"]["missiles"]:
            assert missile["verdict"] != "falls_short"  # listed only with short_km
            assert missile["margin_km"] == pytest.approx(missile["range_max_km"] - distance_km, abs=0.001)
            precision_km = (missile["coord_precision_m"] or 0) / 1000
            assert missile["range_max_km"] >= distance_km - precision_km
            if missile["margin_interval_km"] is not None:
                assert missile["margin_interval_km"] == pytest.approx(
                    [missile["margin_km"] - precision_km, missile["margin_km"] + precision_km], abs=0.002)
    reaching = {m["missile_id"] for f in body["features"] for m in f["properties"]["missiles"]}
    assert not {"hwasong-5", "hwasong-6"} & reaching, "Scud ranges (300/500 km) do not reach Tokyo"
    assert "yeongjeo-dong" in body["not_assessed"]
    listed = [(p["site_id"], p["missile_id"]) for pairs in body["verdicts"].values() for p in pairs]
    assert sorted(listed) == sorted((f["id"], m["missile_id"]) for f in body["features"] for m in f["properties"]["missiles"])
    assert body["verdicts"]["falls_short"] == [] and ("sino-ri", "hwasong-7") not in listed


def test_reach_lists_what_falls_short_by_at_most_short_km(client):
    body = client.get("/reach", params={"near": "Tokyo", "short_km": 50}).json()
    short = {(p["site_id"], p["missile_id"]): p for p in body["verdicts"]["falls_short"]}
    sino_ri = short[("sino-ri", "hwasong-7")]  # Sino-ri's Hwasong-7 falls ~37 km short of Tokyo
    assert -38 < sino_ri["margin_km"] < -36 and sino_ri["verdict"] == "falls_short" and body["short_km"] == 50
    assert all(-50 <= p["margin_km"] < 0 for p in short.values())
    assert ("sino-ri", "hwasong-7") not in {(p["site_id"], p["missile_id"]) for p in
                                             client.get("/reach", params={"near": "Tokyo", "short_km": 30}).json()[
                                                 "verdicts"]["falls_short"]}
    assert client.get("/reach", params={"near": "Tokyo", "short_km": -1}).status_code == 422


def test_border_distance_from_seoul(client):
    body = client.get("/borders/distance", params={"near": "Seoul"}).json()
    distances = {b["border_id"]: b["distance_km"] for b in body["borders"]}
    assert {"mdl", "dmz-south", "chn-prk"} <= set(distances)
    assert 30 < distances["dmz-south"] < distances["mdl"] < distances["dmz-north"] < 70
    assert [b["distance_km"] for b in body["borders"]] == sorted(distances.values())


def test_reference_endpoints(client):
    missiles = {m["id"]: m for m in client.get("/missiles").json()["missiles"]}
    assert missiles["hwasong-16b"]["range_max_km"] is None
    assert missiles["hwasong-5"]["range_max_km"] == 300
    assert all(m["source_ids"] for m in missiles.values())
    places = by_id(client.get("/places").json())
    assert places and all(p["properties"]["source_id"] for p in places.values())
    health = client.get("/health").json()
    assert health["status"] == "ok" and len(health["data_version"]) == 64


def test_every_numeric_parameter_declares_its_bounds(client):
    spec = client.get("/openapi.json").json()
    shared = spec["components"]["parameters"]
    numeric = 0
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                parameter = shared[parameter["$ref"].rsplit("/", 1)[1]] if "$ref" in parameter else parameter
                schemas = [parameter["schema"], *parameter["schema"].get("anyOf", [])]
                schemas += [s["items"] for s in schemas if s.get("type") == "array"]
                for schema in schemas:
                    if schema.get("type") in ("number", "integer"):
                        numeric += 1
                        has_low = "minimum" in schema or "exclusiveMinimum" in schema
                        has_high = "maximum" in schema or "exclusiveMaximum" in schema
                        assert has_low and has_high, (path, parameter["name"])
    assert numeric >= 8


@pytest.mark.parametrize("day", ["0", "1e3", "2020-1-1", "20200101", "2020-01-01T00:00:00", "2020-02-30", "2020-W01",
                                 " 2020-01-01", "2020-01-01Z"])
@pytest.mark.parametrize("path", ["/sites", "/map", "/collections/sites/items"])
def test_as_of_takes_only_a_calendar_day(client, path, day):
    """`as_of=0` was read as 1970-01-01 (a Unix time); only YYYY-MM-DD is a day (4xx naming as_of otherwise)."""
    response = client.get(path, params={"as_of": day})
    assert response.status_code in (400, 422), (response.status_code, response.text[:200])
    assert response.json()["error"]["parameter"] == "as_of"


def test_as_of_a_calendar_day_is_answered(client):
    assert client.get("/sites", params={"as_of": "2020-01-01"}).json()["as_of"] == "2020-01-01"
