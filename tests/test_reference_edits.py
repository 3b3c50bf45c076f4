"""Missile systems and places are data analysts edit: written through the API and the importer, checked, logged,
seen by reads at once and by as_of; places answer to their aliases."""

import datetime
import json
import sqlite3
from contextlib import closing, contextmanager

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from app.auth import hash_token
from app.cli import cli
from app.main import create_app
from app.storage import open_store
from tests.conftest import engine_env, engine_rows, engine_settings, new_live

EDITOR = {"Authorization": "Bearer editor-token-for-tests"}
SOURCE = "38-north-iha-ri"
MISSILE = {"name": "Test Missile", "class": "MRBM", "range_max_km": 1300, "range_kind": "maximum",
           "confidence": "normal", "source_ids": [SOURCE]}
PLACE = {"name": "Riyadh", "aliases": ["Ar Riyad", "الرياض"], "kind": "capital", "country": "SAU", "lon": 46.72185,
         "lat": 24.68773, "source_id": SOURCE}
TODAY = datetime.datetime.now(datetime.timezone.utc).date()
YESTERDAY = TODAY - datetime.timedelta(days=1)


@pytest.fixture
def live(engine_live):
    """A fresh copy of the bundled catalogue on each engine: a live GeoPackage, then a PostGIS database."""
    return engine_live


TOKENS = [{"name": "alice", "role": "editor", "sha256": hash_token(EDITOR["Authorization"].split()[1])}]


@pytest.fixture
def service(live):
    """A client of an app on the live copy with one editor token."""
    with TestClient(create_app(engine_settings(live, tokens=TOKENS, write_burst=1000)),
                    raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def refusing(request, engine, tmp_path_factory):
    """(client, catalogue) of one app per engine for the tests whose every write is refused: they share it, as
    nothing they send may be stored (each checks the change log is still empty)."""
    live = new_live(request, engine, tmp_path_factory.mktemp("refusing"))
    with TestClient(create_app(engine_settings(live, tokens=TOKENS, write_burst=1000)),
                    raise_server_exceptions=False) as client:
        yield client, live


def _rows(live, sql: str, *args) -> list[tuple]:
    """Rows of a query on either engine, through a separate connection."""
    return engine_rows(live, sql, args)


@contextmanager
def _store(live):
    """The store of the catalogue `live` names, closed after the block."""
    opened = open_store(engine_settings(live))
    try:
        yield opened
    finally:
        opened.close()


# --- missiles --------------------------------------------------------------------------------------


def test_a_missile_is_stored_logged_and_read_back(service, live):
    response = service.post("/missiles", json=MISSILE, headers=EDITOR)
    assert response.status_code == 201, response.text
    record = response.json()["record"]
    assert response.headers["Location"] == "/missiles/test-missile" and record["class"] == "MRBM"
    assert record["created_by"] == "alice" and record["source_ids"] == [SOURCE] and record["aliases"] == []
    assert _rows(live, "SELECT entity, action, entity_id FROM changes") == [("missile", "create", "test-missile")]
    assert _rows(live, "SELECT class, range_max_km, source_ids FROM missiles WHERE id = 'test-missile'") == \
        [("MRBM", 1300.0, f'["{SOURCE}"]')]
    listed = {m["id"]: m for m in service.get("/missiles").json()["missiles"]}
    assert listed["test-missile"]["range_max_km"] == 1300 and listed["test-missile"]["class"] == "MRBM"
    assert service.get("/missiles/test-missile").json()["created_by"] == "alice"
    assert service.get("/missiles/nope").status_code == 404
    assert service.get("/changes", params={"entity": "missile"}).json()["numberReturned"] == 1
    # a site may now hold it, and gets its class and its rings
    site = {"name": "Holder", "country": "PRK", "facility_type": "missile_base", "lon": 126.5, "lat": 39.0,
            "coord_confidence": "approximate", "coord_source_id": SOURCE, "source_ids": [SOURCE],
            "missile_types": ["test-missile"]}
    assert service.post("/sites", json=site, headers=EDITOR).json()["record"]["missile_classes"] == ["MRBM"]
    rings = service.get("/sites/holder/rings").json()["features"]
    assert [(r["properties"]["missile_id"], r["properties"]["range_max_km"]) for r in rings] == [("test-missile", 1300)]


@pytest.mark.parametrize(("change", "parameter"), [
    ({"source_ids": []}, "source_ids"),  # a range without a source
    ({"source_ids": ["no-such-source"]}, "source_ids"),
    ({"range_kind": None}, "range_kind"),  # a range needs its kind
    ({"confidence": None}, "confidence"),
    ({"range_min_km": 1400}, "range_min_km"),  # above the maximum
    ({"range_max_km": None, "range_kind": None, "confidence": None, "range_min_km": 90}, "range_min_km"),
    ({"range_max_km": None}, "range_kind"),  # a kind without a range
    ({"range_max_km": -1}, "range_max_km"),
    ({"range_max_km": 30_000}, "range_max_km"),
    ({"range_max_km": True}, "range_max_km"),
    ({"class": "BOMB"}, "class"),
    ({"missile_class": "SRBM"}, "missile_class"),  # the field is called class
    ({"id": "x"}, "id"),
    ({"created_by": "x"}, "created_by"),
])
@pytest.mark.contract
def test_bad_missiles_answer_422_naming_the_field_and_store_nothing(refusing, change, parameter):
    service, live = refusing
    body = {k: v for k, v in {**MISSILE, **change}.items() if v is not None}
    response = service.post("/missiles", json=body, headers=EDITOR)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["parameter"] == parameter
    assert _rows(live, "SELECT count(*) FROM changes") == [(0,)]
    assert _rows(live, "SELECT count(*) FROM missiles WHERE id LIKE 'test-missile%'") == [(0,)]


def test_a_missile_patch_checks_the_whole_record(service):
    assert service.post("/missiles", json=MISSILE, headers=EDITOR).status_code == 201
    for body, parameter in (({"range_kind": None}, "range_kind"), ({"class": None}, "class"),
                            ({"source_ids": []}, "source_ids"), ({"range_min_km": 2000}, "range_min_km"), ({}, None)):
        response = service.patch("/missiles/test-missile", json=body, headers=EDITOR)
        assert response.status_code == 422 and response.json()["error"]["parameter"] == parameter, body
    assert service.patch("/missiles/nope", json={"notes": "x"}, headers=EDITOR).status_code == 404
    cleared = service.patch("/missiles/test-missile", json={"range_max_km": None, "range_kind": None,
                                                           "confidence": None}, headers=EDITOR)
    assert cleared.status_code == 200 and cleared.json()["record"]["range_max_km"] is None
    same = service.patch("/missiles/test-missile", json={"name": "Test Missile"}, headers=EDITOR)
    assert same.status_code == 200 and same.json()["change"] is None


def test_a_new_missile_class_rederives_its_sites_classes_and_logs_them(service, live):
    holders = [f["id"] for f in service.get("/sites", params={"missile_type": "hwasong-10", "limit": 1000}).json()["features"]]
    assert holders and all("IRBM" in service.get(f"/sites/{s}").json()["properties"]["missile_classes"] for s in holders)
    response = service.patch("/missiles/hwasong-10", json={"class": "MRBM"}, headers=EDITOR)
    assert response.status_code == 200 and response.json()["change"]["diff"]["class"] == ["IRBM", "MRBM"]
    for site_id in holders:  # the answer comes once this worker's snapshot has the sites' new classes
        classes = service.get(f"/sites/{site_id}").json()["properties"]["missile_classes"]
        types = service.get(f"/sites/{site_id}").json()["properties"]["missile_types"]
        assert "MRBM" in classes and ("IRBM" not in classes or len(types) > 1), site_id
    logged = service.get("/changes", params={"entity": "site"}).json()["changes"]
    assert sorted(c["entity_id"] for c in logged) == sorted(holders)
    assert all(c["actor"] == "alice" and "missile_classes" in c["diff"] for c in logged)
    assert {f["id"] for f in service.get("/sites", params={"missile_class": "MRBM", "limit": 1000}).json()["features"]} \
        >= set(holders)
    # as_of yesterday: the missile and its sites as they were
    old = {f["id"]: f for f in service.get("/sites", params={"as_of": YESTERDAY, "limit": 1000}).json()["features"]}
    assert all("IRBM" in old[s]["properties"]["missile_classes"] for s in holders if s in old)


def test_missiles_as_of_and_in_the_ogc_collection(service):
    service.post("/missiles", json=MISSILE, headers=EDITOR)
    assert service.get("/sites", params={"missile_type": "test-missile"}).status_code == 200
    before = service.get("/sites", params={"missile_type": "test-missile", "as_of": YESTERDAY})
    assert before.status_code == 422 and before.json()["error"]["parameter"] == "missile_type"
    items = service.get("/collections/missiles/items", params={"limit": 1000}).json()
    assert "test-missile" in {f["id"] for f in items["features"]}
    csv_text = service.get("/collections/missiles/items", params={"f": "csv", "id": "test-missile"}).text
    assert "test-missile,Test Missile" in csv_text and "1300.0" in csv_text


# --- places ----------------------------------------------------------------------------------------


def test_a_place_is_stored_logged_and_answers_to_its_aliases(service, live):
    response = service.post("/places", json=PLACE, headers=EDITOR)
    assert response.status_code == 201, response.text
    assert response.headers["Location"] == "/places/riyadh" and response.json()["record"]["aliases"] == PLACE["aliases"]
    assert _rows(live, "SELECT entity, entity_id FROM changes") == [("place", "riyadh")]
    assert json.loads(_rows(live, "SELECT aliases FROM places WHERE id = 'riyadh'")[0][0]) == PLACE["aliases"]
    for name in ("riyadh", "Riyadh", "ar riyad", "AR RIYAD", "الرياض"):
        body = service.get("/sites", params={"near": name, "within_km": 2000}).json()
        assert body["centre"] == {"lon": 46.72185, "lat": 24.68773, "place_id": "riyadh"}, name
    assert service.get("/places/riyadh").json()["properties"]["aliases"] == PLACE["aliases"]
    assert "riyadh" in {f["id"] for f in service.get("/collections/places/items").json()["features"]}
    moved = service.patch("/places/riyadh", json={"lon": 46.7, "lat": 24.7, "aliases": ["Riad"]}, headers=EDITOR)
    assert moved.status_code == 200 and moved.json()["change"]["diff"]["aliases"] == [PLACE["aliases"], ["Riad"]]
    assert service.get("/reach", params={"near": "Riad"}).json()["target"]["lon"] == 46.7
    assert service.get("/reach", params={"near": "Ar Riyad"}).status_code == 422


def test_near_guam_finds_hagatna_by_its_alias(client):
    body = client.get("/reach", params={"near": "Guam"}).json()
    assert body["target"]["place_id"] == "hagatna"
    assert client.get("/places/hagatna").json()["properties"]["aliases"] == ["Guam", "Hagatna", "Agana"]
    assert client.get("/borders/distance", params={"near": "agana"}).json()["point"]["place_id"] == "hagatna"


@pytest.mark.parametrize(("change", "parameter"), [
    ({"name": "Seoul"}, "name"),  # another place's name
    ({"aliases": ["seoul"]}, "aliases"),  # another place's id, whatever the case
    ({"aliases": ["Guam"]}, "aliases"),  # another place's alias
    ({"aliases": ["Riad", "RIAD"]}, "aliases"),  # twice
    ({"aliases": ["riyadh"]}, "aliases"),  # its own name again
    ({"source_id": "no-such-source"}, "source_id"),
    ({"kind": "volcano"}, "kind"),
    ({"country": "XX"}, "country"),
    ({"lon": None}, "lon"),
    ({"lat": 91}, "lat"),
])
@pytest.mark.contract
def test_bad_places_answer_422_naming_the_field_and_store_nothing(refusing, change, parameter):
    service, live = refusing
    body = {k: v for k, v in {**PLACE, **change}.items() if v is not None}
    response = service.post("/places", json=body, headers=EDITOR)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["parameter"] == parameter
    assert _rows(live, "SELECT count(*) FROM changes") == [(0,)]


def test_places_as_of_and_a_place_patch_keeps_its_required_fields(service):
    service.post("/places", json=PLACE, headers=EDITOR)
    assert service.get("/sites", params={"near": "Riyadh", "as_of": TODAY}).status_code == 200
    before = service.get("/sites", params={"near": "Riyadh", "as_of": YESTERDAY})
    assert before.status_code == 422 and before.json()["error"]["parameter"] == "near"
    for body in ({"name": None}, {"lon": 1}, {"source_id": None}, {"kind": None}):
        assert service.patch("/places/riyadh", json=body, headers=EDITOR).status_code == 422, body
    assert service.patch("/places/nope", json={"notes": "x"}, headers=EDITOR).status_code == 404
    assert service.patch("/places/seoul", json={"aliases": ["서울"]}, headers=EDITOR).status_code == 200
    assert service.get("/sites", params={"near": "서울", "within_km": 200}).json()["centre"]["place_id"] == "seoul"


def test_an_advanced_snapshot_equals_a_fresh_load_after_missile_and_place_writes(live):
    from pandas.testing import assert_frame_equal

    from app import edits
    from app.catalogue import Catalogue
    from app.models import MissileCreate, MissileUpdate, PlaceCreate, PlaceUpdate

    def write(connection):
        edits.create_missile(connection, MissileCreate(**MISSILE), "alice")
        edits.update_missile(connection, "hwasong-12", MissileUpdate(**{"class": "ICBM"}), "alice")
        edits.create_place(connection, PlaceCreate(**PLACE), "alice")
        edits.update_place(connection, "tokyo", PlaceUpdate(aliases=["Edo"]), "alice")

    with _store(live) as opened:
        old = Catalogue(opened)
        opened.write(write)
        with opened.reading() as connection:
            assert old._changed_ids(connection) is not None  # the incremental path, not a whole read
        advanced, fresh = old.advanced(), Catalogue(opened)
    for name in ("missiles", "places"):
        assert_frame_equal(getattr(advanced, name), getattr(fresh, name), check_like=True)
    assert_frame_equal(advanced.sites.drop(columns="geometry"), fresh.sites.drop(columns="geometry"))
    assert advanced.place("Edo") == fresh.place("Edo") and advanced.place("ar riyad").place_id == "riyadh"
    assert "test-missile" in advanced.vocabularies["missile_type"]


# --- import ----------------------------------------------------------------------------------------


def _run(live, *args):
    """The command line on the catalogue `live` names (the GeoPackage by --gpkg, the database by its URL)."""
    where = ["--gpkg", live] if not isinstance(live, str) else []
    return CliRunner().invoke(cli, [str(a) for a in [*args, *where]], env={"COLUMNS": "250", **engine_env(live)})


def test_import_missiles_checks_every_row_then_writes_all(live, tmp_path):
    good = tmp_path / "missiles.csv"
    good.write_text("name,class,range_max_km,range_kind,confidence,source_ids,aliases\n"
                    f"Alpha,SRBM,300,maximum,normal,{SOURCE},A-1; Alpha One\n"
                    f"Beta,MRBM,1500,estimate,low,{SOURCE},\n", encoding="utf-8")
    bad = tmp_path / "bad.csv"
    bad.write_text(good.read_text(encoding="utf-8") + "Gamma,MRBM,1500,,normal,no-such-source,\n", encoding="utf-8")
    refused = _run(live, "import", bad, "--kind", "missiles")
    assert refused.exit_code == 1 and "nothing written" in refused.stdout
    assert "Gamma" in refused.stderr and "source_ids: unknown source id 'no-such-source'" in refused.stderr
    assert _rows(live, "SELECT count(*) FROM missiles WHERE id IN ('alpha', 'beta', 'gamma')") == [(0,)]
    dry = _run(live, "import", good, "--kind", "missiles", "--dry-run")
    assert dry.exit_code == 0 and "would add 2 missile(s)" in dry.stdout and "alpha" in dry.stdout
    done = _run(live, "import", good, "--kind", "missiles", "--actor", "bob")
    assert done.exit_code == 0, done.stdout + done.stderr
    assert "added 2 missile(s)" in done.stdout
    assert _rows(live, "SELECT id, class, aliases FROM missiles WHERE id IN ('alpha', 'beta') ORDER BY id") == \
        [("alpha", "SRBM", '["A-1","Alpha One"]'), ("beta", "MRBM", None)]
    assert _rows(live, "SELECT actor, entity, entity_id FROM changes ORDER BY id") == \
        [("bob", "missile", "alpha"), ("bob", "missile", "beta")]


def test_import_places_from_geojson_checks_names_across_the_file(live, tmp_path):
    def feature(name, lon, lat, **extra):
        return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]},
                "properties": {"name": name, "kind": "city", "source_id": SOURCE, **extra}}

    path = tmp_path / "places.geojson"
    features = [feature("Tehran", 51.389, 35.6892, aliases="Teheran"), feature("Tabriz", 46.2919, 38.08)]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}), encoding="utf-8")
    clash = tmp_path / "clash.geojson"
    clash.write_text(json.dumps({"type": "FeatureCollection", "features": [
        *features, feature("Teheran", 51.0, 35.0), {"type": "Feature", "geometry": None,
                                                    "properties": {"name": "Nowhere", "kind": "city",
                                                                   "source_id": SOURCE}}]}), encoding="utf-8")
    refused = _run(live, "import", clash, "--kind", "places")
    assert refused.exit_code == 1
    assert "'Teheran' already names the place 'tehran'" in refused.stderr and "lon" in refused.stderr
    done = _run(live, "import", path, "--kind", "places")
    assert done.exit_code == 0, done.stdout + done.stderr
    assert _rows(live, "SELECT id, aliases FROM places WHERE id IN ('tehran', 'tabriz') ORDER BY id") == \
        [("tabriz", None), ("tehran", '["Teheran"]')]
    from app.catalogue import Catalogue
    with _store(live) as opened:
        assert Catalogue(opened).place("teheran").place_id == "tehran"
    if isinstance(live, str):
        return  # PostGIS keeps its GiST index itself; a GeoPackage's R-tree is kept by the file's triggers
    with closing(sqlite3.connect(live)) as connection:  # the R-tree of the places layer holds the new points
        hits = connection.execute("SELECT count(*) FROM rtree_places_geom WHERE minx BETWEEN 46 AND 52").fetchone()
    assert hits == (2,)
