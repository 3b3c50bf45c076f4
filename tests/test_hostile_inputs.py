"""The hostile inputs schemathesis cannot generate: NaN, infinities, 1e400, -0, huge integers, coordinates just out
of range, empty and over-long strings, lists over the caps, wrong JSON types, repeated JSON keys, bodies that are not
JSON or not an object, nulls for required fields and server-owned fields.

Every one answers 4xx in the house shape naming the parameter at fault (never 500), and a write that fails leaves
the catalogue as it was: the live file's sites, sources, observations and change log are compared before and after,
read with the app's own SQLite (`app.store`), never through GDAL while the app's connections are open.
"""

from __future__ import annotations

import json
from contextlib import closing

import pytest
from fastapi.testclient import TestClient

from app.auth import hash_token, new_token
from app.main import create_app
from app.models import MAX_ITEMS, MAX_NAME, MAX_TEXT
from app.settings import GEODATA_DIR, Settings
from app.store import connect_readonly, ensure_live, read_layer

EDITOR_TOKEN = new_token()
EDITOR = {"Authorization": f"Bearer {EDITOR_TOKEN}", "Content-Type": "application/json"}
MAX_BODY = 64 * 1024
SITE, SOURCE, MISSILE = "kal-gol", "38-north-iha-ri", "hwasong-5"
HUGE = "9" * 400  # an integer literal far beyond any float
ENORMOUS = "9" * 5000  # beyond Python's 4300-digit int parsing limit


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """A client of an app on a throw-away live copy with an editor's token, and the live file's path."""
    live = ensure_live(tmp_path_factory.mktemp("hostile") / "live.gpkg", GEODATA_DIR / "catalogue.gpkg")
    settings = Settings(
        gpkg=live, seed_gpkg=GEODATA_DIR / "catalogue.gpkg", _env_file=None, max_body_bytes=MAX_BODY,
        tokens=[{"name": "hostile", "role": "editor", "sha256": hash_token(EDITOR_TOKEN)}],
        write_rate_per_minute=1e9, write_burst=1_000_000,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client, live


def catalogue_state(path) -> dict:
    """What a failed write must not change: every site row, and the row counts of the other edited tables."""
    with closing(connect_readonly(path)) as connection:
        sites = read_layer(connection, "sites")
        counts = {table: connection.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
                  for table in ("sources", "observations", "changes")}
    return {"sites": len(sites), "site_rows": sites.sort_values("id").to_json(), **counts}


def assert_house_error(response, parameter: str | None, *statuses: int) -> dict:
    """A 4xx (one of `statuses` when given) in the one error shape, naming `parameter` (None: names none)."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    if statuses:
        assert response.status_code in statuses, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers["content-type"]
    error = response.json()["error"]
    assert set(error) == {"status", "code", "message", "parameter"}, error
    assert error["status"] == response.status_code and error["message"], error
    assert error["parameter"] == parameter, error
    return error


# --- query parameters ------------------------------------------------------------------------------

QUERY_CASES = [
    # (path and raw query, the parameter at fault)
    ("/sites?lat=NaN&lon=0", "lat"),
    ("/sites?lat=nan&lon=0", "lat"),
    ("/sites?lat=Infinity&lon=0", "lat"),
    ("/sites?lat=0&lon=-Infinity", "lon"),
    ("/sites?lat=-inf&lon=0", "lat"),
    ("/sites?lat=1e400&lon=0", "lat"),
    ("/sites?lat=0&lon=-1e400", "lon"),
    (f"/sites?lat={HUGE}&lon=0", "lat"),
    ("/sites?lat=91&lon=0", "lat"),
    ("/sites?lat=-90.0000001&lon=0", "lat"),
    ("/sites?lat=0&lon=-180.0000001", "lon"),
    ("/sites?lat=0&lon=180.0000001", "lon"),
    ("/sites?lat=&lon=0", "lat"),
    ("/sites?lat=0x10&lon=0", "lat"),
    ("/sites?lat=0&lon=0&within_km=inf", "within_km"),
    ("/sites?lat=0&lon=0&within_km=NaN", "within_km"),
    ("/sites?lat=0&lon=0&within_km=-0", "within_km"),
    ("/sites?lat=0&lon=0&within_km=1e400", "within_km"),
    ("/sites?lat=0&lon=0&within_km=5e-324", "within_km"),
    ("/sites?lat=0&lon=0&within_km=20004", "within_km"),
    ("/sites?limit=1e400", "limit"),
    ("/sites?limit=NaN", "limit"),
    ("/sites?limit=-0", "limit"),
    ("/sites?limit=1.5", "limit"),
    (f"/sites?limit={HUGE}", "limit"),
    (f"/sites?offset={ENORMOUS}", "offset"),
    ("/sites?offset=-1", "offset"),
    ("/sites?near=", "near"),
    ("/sites?near=" + "x" * (MAX_NAME + 1), "near"),
    ("/sites?" + "&".join(["country=PRK"] * (MAX_ITEMS + 1)), "country"),
    ("/sites?status=", "status"),
    ("/sites?sort=NaN", "sort"),
    ("/sites?border=mdl&border_min_km=NaN", "border_min_km"),
    ("/sites?border=mdl&border_max_km=-Infinity", "border_max_km"),
    ("/sites?border=mdl&border_min_km=1e400", "border_min_km"),
    ("/sites?f=" + "x" * 10_000, "f"),
    ("/reach?lat=NaN&lon=0", "lat"),
    ("/reach?lat=0&lon=180.0000001", "lon"),
    ("/borders/distance?lat=91&lon=0", "lat"),
    ("/borders/distance?lat=0&lon=Infinity", "lon"),
    ("/map?lat=0&lon=0&within_km=1e400", "within_km"),
    ("/map?lat=0&lon=0&within_km=5e-324", "within_km"),
    ("/map?lat=-Infinity&lon=0", "lat"),
    (f"/sites/{SITE}/rings?km=NaN", "km"),
    (f"/sites/{SITE}/rings?km=inf", "km"),
    (f"/sites/{SITE}/rings?km=-0", "km"),
    (f"/sites/{SITE}/rings?km=5e-324", "km"),
    (f"/sites/{SITE}/rings?km=1e400", "km"),
    (f"/sites/{SITE}/rings?" + "&".join(["km=10"] * (MAX_ITEMS + 1)), "km"),
    ("/collections/sites/items?lat=NaN&lon=0&within_km=10", "lat"),
    ("/collections/sites/items?lat=0&lon=0&within_km=inf", "within_km"),
    ("/collections/sites/items?lat=0&lon=180.0000001&within_km=1", "lon"),
    ("/collections/sites/items?limit=1e400", "limit"),
    (f"/collections/sites/items?limit={ENORMOUS}", "limit"),
    ("/collections/sites/items?offset=-1", "offset"),
    ("/collections/sites/items?bbox=NaN,0,1,1", "bbox"),
    ("/collections/sites/items?bbox=-180.0000001,0,1,1", "bbox"),
    ("/collections/sites/items?bbox=0,0,1,Infinity", "bbox"),
    ("/collections/observations/items?datetime=NaN", "datetime"),
]


@pytest.mark.parametrize(("url", "parameter"), QUERY_CASES, ids=[url[:70] for url, _ in QUERY_CASES])
def test_hostile_query_parameters_answer_4xx_naming_the_parameter(service, url, parameter):
    client, _ = service
    assert_house_error(client.get(url), parameter, 400, 422)


@pytest.mark.parametrize("url", ["/sites?lat=-0&lon=-0", "/sites?lat=-0.0&lon=0&within_km=20003",
                                 "/borders/distance?lat=-0&lon=-0", "/reach?lat=-0&lon=-0", "/sites?offset=-0",
                                 f"/sites/{SITE}/rings?km=0.001", "/collections/sites/items?offset=-0&limit=1"])
def test_minus_zero_and_the_edges_of_the_ranges_are_answered(service, url):
    """-0 is zero, and the bounds themselves are inside: 200, never a 500."""
    client, _ = service
    assert client.get(url).status_code == 200, client.get(url).text


# --- path parameters -------------------------------------------------------------------------------

PATH_IDS = ["%00", "%00x", "x%00", "%01", "%0A", "%20", "%C2%A0", "%EF%BF%BF", "..", "%2E%2E"]
"""Appended to a real id: a NUL, control characters, a space, a no-break space, U+FFFF, dot segments."""
PATH_CASES = [
    # (path with {id} standing for the real id spoiled, the real id, the parameter at fault)
    ("/sites/{id}", SITE, "site_id"),
    ("/sites/{id}/rings", SITE, "site_id"),
    ("/collections/{id}", "sites", "collectionId"),
    ("/collections/{id}/items", "sites", "collectionId"),
    ("/collections/sites/items/{id}", SITE, "featureId"),
    ("/collections/places/items/{id}", "seoul", "featureId"),
    ("/collections/borders/items/{id}", "mdl", "featureId"),
    ("/collections/observations/items/{id}", "chiha-ri-1998-report", "featureId"),
]


@pytest.mark.parametrize("suffix", PATH_IDS)
@pytest.mark.parametrize(("path", "real", "parameter"), PATH_CASES)
def test_a_spoiled_id_in_the_path_is_404(service, path, real, parameter, suffix):
    """A real id with a NUL (or a control character, a space...) added names nothing: 404, as on /sites/{id}."""
    client, _ = service
    assert client.get(path.format(id=real)).status_code == 200, path
    response = client.get(path.format(id=real + suffix))
    final_newline = path.endswith("{id}") and suffix == "%0A"  # refused before routing
    assert_house_error(response, None if final_newline else parameter, 404)


@pytest.mark.parametrize("path", ["/health", "/sites", "/collections", "/collections/sites/items", "/api",
                                  "/openapi.json", "/conformance"])
def test_a_fixed_path_with_a_final_newline_is_404(service, path):
    """Route patterns end in `$`, which matched before a final newline: `/health%0A` answered as /health."""
    client, _ = service
    assert client.get(path).status_code == 200
    assert_house_error(client.get(path + "%0A"), None, 404)


# --- write bodies ----------------------------------------------------------------------------------

def site_body(**fields) -> dict:
    """A valid new site, changed by `fields` (a field given as ... is left out)."""
    body = {"name": "Hostile test site", "country": "PRK", "facility_type": "missile_operating_base",
            "source_ids": [SOURCE], "lon": 126.5, "lat": 39.5, "coord_confidence": "approximate",
            "coord_source_id": SOURCE, "missile_types": [MISSILE]}
    body.update(fields)
    return {key: value for key, value in body.items() if value is not ...}


def raw(body: dict, **literals: str) -> str:
    """The body as JSON text with some members' values replaced by raw literals json.dumps refuses (NaN, 1e400)."""
    text = json.dumps({**body, **{key: f"@@{key}@@" for key in literals}})
    for key, literal in literals.items():
        text = text.replace(f'"@@{key}@@"', literal)
    return text


OBSERVATION = {"observed_on": "2020-05-01", "kind": "imagery", "status_seen": "active", "source_id": SOURCE}
SOURCE_BODY = {"title": "A hostile report", "publisher": "Nobody"}

WRITE_CASES = [
    # (method, path, raw body, the parameter at fault)
    ("POST", "/sites", raw(site_body(), lat="NaN"), "lat"),
    ("POST", "/sites", raw(site_body(), lat="Infinity"), "lat"),
    ("POST", "/sites", raw(site_body(), lon="-Infinity"), "lon"),
    ("POST", "/sites", raw(site_body(), lat="1e400"), "lat"),
    ("POST", "/sites", raw(site_body(), lon="-1e400"), "lon"),
    ("POST", "/sites", raw(site_body(), lat=HUGE), "lat"),
    ("POST", "/sites", raw(site_body(), coord_precision_m="NaN"), "coord_precision_m"),
    ("POST", "/sites", raw(site_body(), coord_precision_m="1e400"), "coord_precision_m"),
    ("POST", "/sites", raw(site_body(), coord_precision_m=HUGE), "coord_precision_m"),
    ("POST", "/sites", json.dumps(site_body(lat=91)), "lat"),
    ("POST", "/sites", json.dumps(site_body(lat=-90.0000001)), "lat"),
    ("POST", "/sites", json.dumps(site_body(lon=-180.0000001)), "lon"),
    ("POST", "/sites", json.dumps(site_body(lon=180.0000001)), "lon"),
    ("POST", "/sites", json.dumps(site_body(lat=True)), "lat"),
    ("POST", "/sites", json.dumps(site_body(lat="north")), "lat"),
    ("POST", "/sites", json.dumps(site_body(lat=[39.5])), "lat"),
    ("POST", "/sites", json.dumps(site_body(name="")), "name"),
    ("POST", "/sites", json.dumps(site_body(name="   ")), "name"),
    ("POST", "/sites", json.dumps(site_body(name="x" * (MAX_NAME + 1))), "name"),
    ("POST", "/sites", json.dumps(site_body(name="nul\u0000name")), "name"),
    ("POST", "/sites", json.dumps(site_body(notes="x" * (MAX_TEXT + 1))), "notes"),
    ("POST", "/sites", json.dumps(site_body(notes="escape\u001b[31m")), "notes"),
    ("POST", "/sites", json.dumps(site_body(aliases=[f"a{i}" for i in range(MAX_ITEMS + 1)])), "aliases"),
    ("POST", "/sites", json.dumps(site_body(aliases=["same", "same"])), "aliases"),
    ("POST", "/sites", json.dumps(site_body(source_ids=[SOURCE] * (MAX_ITEMS + 1))), "source_ids"),
    ("POST", "/sites", json.dumps(site_body(source_ids=[])), "source_ids"),
    ("POST", "/sites", json.dumps(site_body(source_ids=SOURCE)), "source_ids"),
    ("POST", "/sites", json.dumps(site_body(source_ids=["no-such-source"])), "source_ids"),
    ("POST", "/sites", json.dumps(site_body(missile_types=["no-such-missile"])), "missile_types"),
    ("POST", "/sites", json.dumps(site_body(name=5)), "name"),
    ("POST", "/sites", json.dumps(site_body(country=["PRK"])), "country"),
    ("POST", "/sites", json.dumps(site_body(country="prk")), "country"),
    ("POST", "/sites", json.dumps(site_body(country="")), "country"),
    ("POST", "/sites", json.dumps(site_body(facility_type="")), "facility_type"),
    ("POST", "/sites", json.dumps(site_body(name=None)), "name"),
    ("POST", "/sites", json.dumps(site_body(country=None)), "country"),
    ("POST", "/sites", json.dumps(site_body(facility_type=None)), "facility_type"),
    ("POST", "/sites", json.dumps(site_body(source_ids=None)), "source_ids"),
    ("POST", "/sites", json.dumps(site_body(name=...)), "name"),
    ("POST", "/sites", json.dumps(site_body(lat=...)), None),  # lon without lat: the pair is at fault
    ("POST", "/sites", json.dumps(site_body(id="chosen-id")), "id"),
    ("POST", "/sites", json.dumps(site_body(created_at="2020-01-01T00:00:00Z")), "created_at"),
    ("POST", "/sites", json.dumps(site_body(created_by="mallory")), "created_by"),
    ("POST", "/sites", json.dumps(site_body(updated_by="mallory")), "updated_by"),
    ("POST", "/sites", json.dumps(site_body(retired_at="2020-01-01T00:00:00Z")), "retired_at"),
    ("POST", "/sites", json.dumps(site_body(current_status="active")), "current_status"),
    ("POST", "/sites", json.dumps(site_body()).replace('"name": ', '"name": "First", "name": ', 1), "name"),
    ("POST", "/sites", "not json", None),
    ("POST", "/sites", "{", None),
    ("POST", "/sites", "", None),
    ("POST", "/sites", "[]", None),
    ("POST", "/sites", json.dumps([site_body()]), None),
    ("POST", "/sites", "null", None),
    ("POST", "/sites", '"a site"', None),
    ("POST", "/sites", "[" * 100_000, None),
    ("POST", "/sites", raw(site_body(), lat=ENORMOUS), None),  # beyond Python's int parsing: the body is refused
    ("PATCH", f"/sites/{SITE}", raw({"lat": 0, "lon": 0}, lat="NaN"), "lat"),
    ("PATCH", f"/sites/{SITE}", raw({"lat": 0, "lon": 0}, lon="Infinity"), "lon"),
    ("PATCH", f"/sites/{SITE}", raw({"lat": 0, "lon": 0}, lat="1e400"), "lat"),
    ("PATCH", f"/sites/{SITE}", json.dumps({"lat": 91, "lon": 0}), "lat"),
    ("PATCH", f"/sites/{SITE}", json.dumps({"lat": 0, "lon": 180.0000001}), "lon"),
    ("PATCH", f"/sites/{SITE}", '{"lat": 1, "lon": 1, "lat": 2}', "lat"),
    ("PATCH", f"/sites/{SITE}", json.dumps({"name": None}), "name"),
    ("PATCH", f"/sites/{SITE}", json.dumps({"source_ids": []}), "source_ids"),
    ("PATCH", f"/sites/{SITE}", json.dumps({"country": None}), "country"),
    ("PATCH", f"/sites/{SITE}", json.dumps({"name": ""}), "name"),
    ("PATCH", f"/sites/{SITE}", json.dumps({"notes": "x" * (MAX_TEXT + 1)}), "notes"),
    ("PATCH", f"/sites/{SITE}", json.dumps({"id": "renamed"}), "id"),
    ("PATCH", f"/sites/{SITE}", json.dumps({"updated_at": "2020-01-01T00:00:00Z"}), "updated_at"),
    ("PATCH", f"/sites/{SITE}", json.dumps({"retired_by": "mallory"}), "retired_by"),
    ("PATCH", f"/sites/{SITE}", "{}", None),
    ("PATCH", f"/sites/{SITE}", "[]", None),
    ("PATCH", "/sites/no-such-site", json.dumps({"notes": "x"}), "site_id"),
    ("PATCH", "/sites/" + "x" * 201, json.dumps({"notes": "x"}), "site_id"),
    ("POST", f"/sites/{SITE}/observations", json.dumps({**OBSERVATION, "recorded_at": "2020-01-01T00:00:00Z"}),
     "recorded_at"),
    ("POST", f"/sites/{SITE}/observations", json.dumps({**OBSERVATION, "recorded_by": "mallory"}), "recorded_by"),
    ("POST", f"/sites/{SITE}/observations", json.dumps({**OBSERVATION, "id": "obs-1"}), "id"),
    ("POST", f"/sites/{SITE}/observations", raw(OBSERVATION, observed_on="NaN"), "observed_on"),
    ("POST", f"/sites/{SITE}/observations", raw(OBSERVATION, observed_on="2020"), "observed_on"),
    ("POST", f"/sites/{SITE}/observations", json.dumps({**OBSERVATION, "observed_on": ""}), "observed_on"),
    ("POST", f"/sites/{SITE}/observations", json.dumps({**OBSERVATION, "observed_on": "2020-02-30"}), "observed_on"),
    ("POST", f"/sites/{SITE}/observations", json.dumps({**OBSERVATION, "observed_on": "9999-01-01"}), "observed_on"),
    ("POST", f"/sites/{SITE}/observations", json.dumps({**OBSERVATION, "kind": None}), "kind"),
    ("POST", f"/sites/{SITE}/observations", json.dumps({**OBSERVATION, "source_id": None}), "source_id"),
    ("POST", f"/sites/{SITE}/observations", json.dumps({**OBSERVATION, "source_id": "nope"}), "source_id"),
    ("POST", f"/sites/{SITE}/observations", json.dumps({**OBSERVATION, "notes": "x" * (MAX_TEXT + 1)}), "notes"),
    ("POST", f"/sites/{SITE}/observations", json.dumps(OBSERVATION)[:-1] + ', "kind": "imagery"}', "kind"),
    ("POST", f"/sites/{SITE}/observations", json.dumps([OBSERVATION]), None),
    ("POST", "/sites/no-such-site/observations", json.dumps(OBSERVATION), "site_id"),
    ("POST", "/sources", json.dumps({**SOURCE_BODY, "title": ""}), "title"),
    ("POST", "/sources", json.dumps({**SOURCE_BODY, "title": None}), "title"),
    ("POST", "/sources", json.dumps({**SOURCE_BODY, "title": "x" * 1001}), "title"),
    ("POST", "/sources", json.dumps({**SOURCE_BODY, "publisher": None}), "publisher"),
    ("POST", "/sources", json.dumps({**SOURCE_BODY, "url": "javascript:alert(1)"}), "url"),
    ("POST", "/sources", json.dumps({**SOURCE_BODY, "url": "https://example.org/" + "x" * 2000}), "url"),
    ("POST", "/sources", json.dumps({**SOURCE_BODY, "published_on": "2020-13"}), "published_on"),
    ("POST", "/sources", raw(SOURCE_BODY, published_on="Infinity"), "published_on"),
    ("POST", "/sources", json.dumps({**SOURCE_BODY, "created_by": "mallory"}), "created_by"),
    ("POST", "/sources", json.dumps({**SOURCE_BODY, "id": "chosen"}), "id"),
    ("POST", "/sources", '{"title": "A", "publisher": "B", "title": "C"}', "title"),
    ("POST", "/sources", "title=A&publisher=B", None),
    ("PATCH", f"/sources/{SOURCE}", json.dumps({"title": None}), "title"),
    ("PATCH", f"/sources/{SOURCE}", json.dumps({"updated_by": "mallory"}), "updated_by"),
    ("PATCH", f"/sources/{SOURCE}", raw({"notes": ""}, notes="NaN"), "notes"),
    ("PATCH", "/sources/no-such-source", json.dumps({"notes": "x"}), "source_id"),
    ("POST", "/sites", json.dumps(site_body(notes="x" * MAX_BODY)), None),  # over the body cap: 413
]


@pytest.mark.parametrize(("method", "path", "body", "parameter"), WRITE_CASES,
                         ids=[f"{m} {p[:30]} {b[:50]}" for m, p, b, _ in WRITE_CASES])
def test_hostile_write_bodies_answer_4xx_and_change_nothing(service, method, path, body, parameter):
    client, live = service
    before = catalogue_state(live)
    response = client.request(method, path, content=body.encode("utf-8"), headers=EDITOR)
    assert_house_error(response, parameter)
    assert catalogue_state(live) == before


def test_the_valid_baseline_bodies_are_accepted(service):
    """The bodies the cases above spoil are themselves good, so each refusal is the spoiled field's doing."""
    client, live = service
    before = catalogue_state(live)
    created = client.post("/sites", content=json.dumps(site_body(lat=-0.0, lon=-0.0)), headers=EDITOR)
    assert created.status_code == 201, created.text
    assert created.json()["record"]["lat"] == 0 and created.json()["record"]["lon"] == 0
    site_id = created.json()["record"]["id"]
    observed = client.post(f"/sites/{site_id}/observations", content=json.dumps(OBSERVATION), headers=EDITOR)
    assert observed.status_code == 201, observed.text
    source = client.post("/sources", content=json.dumps(SOURCE_BODY), headers=EDITOR)
    assert source.status_code == 201, source.text
    after = catalogue_state(live)
    assert after["sites"] == before["sites"] + 1
    assert after["observations"] == before["observations"] + 1
    assert after["sources"] == before["sources"] + 1
    assert after["changes"] == before["changes"] + 3


def test_a_write_without_a_token_is_401_whatever_its_body(service):
    """Hostile bodies do not get past the token check first: 401 (or the 422 FastAPI gives unparsable JSON)."""
    client, live = service
    before = catalogue_state(live)
    for body in (raw(site_body(), lat="NaN"), '{"name": "a", "name": "b"}', json.dumps(site_body(id="x"))):
        response = client.post("/sites", content=body, headers={"Content-Type": "application/json"})
        assert_house_error(response, None, 401)
    assert catalogue_state(live) == before
