"""Analysts' writes through the API: what is stored, what is derived, what history and as_of show."""

import datetime
import json
import os
import sqlite3
import subprocess
import sys
from contextlib import closing

import pytest
from fastapi.testclient import TestClient

from app import geodesy, store
from app.auth import hash_token
from app.main import create_app
from app.settings import GEODATA_DIR, REPO_ROOT, Settings
from tests.conftest import engine_rows, engine_settings

EDITOR = {"Authorization": "Bearer editor-token-for-tests"}
SOURCE = "csis-bp-hoejung-ni-2022"
NEW_SITE = {
    "name": "Test Base", "country": "PRK", "facility_type": "missile_base", "lon": 126.5, "lat": 39.0,
    "coord_confidence": "approximate", "coord_source_id": SOURCE, "source_ids": [SOURCE], "missile_types": ["hwasong-10"],
}


@pytest.fixture
def live(engine_live):
    """A fresh copy of the bundled catalogue on each engine: a live GeoPackage, then a PostGIS database."""
    return engine_live


@pytest.fixture
def gpkg_live(tmp_path):
    """A fresh live GeoPackage copy of the bundled catalogue (for what only the file has)."""
    return store.ensure_live(tmp_path / "live.gpkg", GEODATA_DIR / "catalogue.gpkg")


@pytest.fixture
def service(live):
    """A client of an app on the fresh catalogue with one editor token."""
    tokens = [{"name": "alice", "role": "editor", "sha256": hash_token(EDITOR["Authorization"].split()[1])}]
    app = create_app(engine_settings(live, tokens=tokens, write_burst=1000))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def _rows(live, sql: str) -> list[tuple]:
    """Rows of a query on either engine, through a separate connection."""
    return engine_rows(live, sql)


def test_create_stores_the_site_with_server_owned_fields_and_a_change(service, live):
    response = service.post("/sites", json=NEW_SITE, headers=EDITOR)
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["Location"] == "/sites/test-base" and body["record"]["id"] == "test-base"
    assert body["record"]["created_by"] == "alice" and body["record"]["missile_classes"] == ["IRBM"]
    assert body["change"]["diff"]["lon"] == [None, 126.5] and body["change"]["actor"] == "alice"
    assert _rows(live, "SELECT actor, action, entity_id FROM changes") == [("alice", "create", "test-base")]
    site = service.get("/sites/test-base").json()
    assert site["geometry"]["coordinates"] == [126.5, 39.0] and site["properties"]["border_distances"]


def test_a_second_site_with_the_same_name_gets_its_own_id(service):
    assert service.post("/sites", json=NEW_SITE, headers=EDITOR).json()["record"]["id"] == "test-base"
    assert service.post("/sites", json=NEW_SITE, headers=EDITOR).json()["record"]["id"] == "test-base-2"


@pytest.mark.parametrize("field", ["id", "created_at", "created_by", "updated_at", "retired_at", "current_status",
                                  "missile_classes", "is_admin"])
def test_server_owned_and_unknown_fields_are_refused(service, live, field):
    response = service.post("/sites", json={**NEW_SITE, field: "x"}, headers=EDITOR)
    assert response.status_code == 422 and response.json()["error"]["parameter"] == field
    assert _rows(live, "SELECT count(*) FROM changes") == [(0,)]


@pytest.mark.parametrize(("change", "parameter"), [
    ({"source_ids": ["no-such-source"]}, "source_ids"),
    ({"missile_types": ["no-such-missile"]}, "missile_types"),
    ({"coord_source_id": "38-north-iha-ri"}, "coord_source_id"),
    ({"coord_confidence": "unknown"}, "coord_confidence"),
    ({"country": "XXX"}, "country"),
    ({"lat": 91}, "lat"),
])
def test_bad_sites_answer_422_naming_the_field_and_store_nothing(service, live, change, parameter):
    response = service.post("/sites", json={**NEW_SITE, **change}, headers=EDITOR)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["parameter"] == parameter
    assert _rows(live, "SELECT count(*) FROM sites WHERE id LIKE 'test-base%'") == [(0,)]


def test_moving_a_site_measures_its_border_distances_again(service):
    before = service.get("/sites/sakkanmol").json()["properties"]["border_distances"]
    mdl_before = next(b["distance_km"] for b in before if b["border_id"] == "mdl")
    response = service.patch("/sites/sakkanmol", json={"lon": 126.0, "lat": 39.5}, headers=EDITOR)
    assert response.status_code == 200 and response.json()["change"]["diff"]["lat"][1] == 39.5
    after = service.get("/sites/sakkanmol").json()
    mdl = next(b for b in after["properties"]["border_distances"] if b["border_id"] == "mdl")
    lon, lat = mdl["nearest_point"]
    assert after["geometry"]["coordinates"] == [126.0, 39.5]
    assert mdl["distance_km"] != mdl_before
    assert mdl["distance_km"] == pytest.approx(float(geodesy.distance_m(126.0, 39.5, lon, lat)) / 1000, abs=0.002)
    listed = service.get("/sites?lat=39.5&lon=126.0&within_km=1").json()["features"]
    assert [f["id"] for f in listed] == ["sakkanmol"]
    assert listed[0]["properties"]["border_distances_km"]["mdl"] == pytest.approx(mdl["distance_km"], abs=0.001)


def test_patch_null_clears_and_required_fields_cannot_be_cleared(service):
    assert service.patch("/sites/sakkanmol", json={"province": None}, headers=EDITOR).json()["record"]["province"] is None
    response = service.patch("/sites/sakkanmol", json={"name": None}, headers=EDITOR)
    assert response.status_code == 422 and "cannot be cleared" in response.json()["error"]["message"]
    assert service.patch("/sites/sakkanmol", json={}, headers=EDITOR).status_code == 422


def test_an_unchanged_patch_records_no_change(service, live):
    name = service.get("/sites/sakkanmol").json()["properties"]["name"]
    response = service.patch("/sites/sakkanmol", json={"name": name}, headers=EDITOR)
    assert response.status_code == 200 and response.json()["change"] is None
    assert _rows(live, "SELECT count(*) FROM changes") == [(0,)]


def test_an_observation_sets_the_current_status(service):
    created = service.post("/sites", json=NEW_SITE, headers=EDITOR).json()["record"]
    assert created["current_status"] == "unknown"
    observation = {"observed_on": "2025-03", "kind": "imagery", "status_seen": "inactive", "source_id": SOURCE}
    response = service.post("/sites/test-base/observations", json=observation, headers=EDITOR)
    assert response.status_code == 201 and response.json()["record"]["recorded_by"] == "alice"
    site = service.get("/sites/test-base").json()["properties"]
    assert site["current_status"] == "inactive" and site["observations"][0]["observed_on"] == "2025-03"
    later = {**observation, "observed_on": "2026-01-02", "status_seen": "active"}
    service.post("/sites/test-base/observations", json=later, headers=EDITOR)
    assert service.get("/sites?status=active&lat=39&lon=126.5&within_km=1").json()["numberMatched"] == 1


def test_the_status_on_a_tie_is_the_highest_observation_id_on_writes_and_as_of(service):
    service.post("/sites", json=NEW_SITE, headers=EDITOR)
    seen = {"observed_on": "2025-03", "source_id": SOURCE}
    for kind, status in (("report", "active"), ("imagery", "inactive")):  # ids ...-report > ...-imagery
        service.post("/sites/test-base/observations", json={**seen, "kind": kind, "status_seen": status}, headers=EDITOR)
    service.post("/sites/test-base/observations", json={**seen, "observed_on": "2025-04", "kind": "event",
                                                        "status_seen": "unknown"}, headers=EDITOR)
    site = service.get("/sites/test-base").json()["properties"]
    assert (site["current_status"], site["status_observed_on"]) == ("active", "2025-03")
    today = datetime.datetime.now(datetime.timezone.utc).date()
    past = {f["id"]: f["properties"] for f in service.get(f"/sites?as_of={today}&limit=1000").json()["features"]}
    assert (past["test-base"]["current_status"], past["test-base"]["status_observed_on"]) == ("active", "2025-03")


def test_observations_in_the_future_or_of_unknown_sites_are_refused(service):
    tomorrow = (datetime.datetime.now(datetime.timezone.utc).date() + datetime.timedelta(days=2)).isoformat()
    body = {"observed_on": tomorrow, "kind": "imagery", "source_id": SOURCE}
    assert service.post("/sites/sakkanmol/observations", json=body, headers=EDITOR).status_code == 422
    body["observed_on"] = "2020-02-30"
    assert service.post("/sites/sakkanmol/observations", json=body, headers=EDITOR).status_code == 422
    body["observed_on"] = "2020"
    assert service.post("/sites/atlantis/observations", json=body, headers=EDITOR).status_code == 404


def test_retiring_keeps_the_row_and_history_and_answers_410(service, live):
    assert service.delete("/sites/sakkanmol", headers=EDITOR).status_code == 200
    assert service.get("/sites/sakkanmol").status_code == 410
    assert "sakkanmol" not in [f["id"] for f in service.get("/sites?limit=1000").json()["features"]]
    assert service.delete("/sites/sakkanmol", headers=EDITOR).status_code == 410
    assert service.patch("/sites/sakkanmol", json={"name": "x"}, headers=EDITOR).status_code == 410
    assert _rows(live, "SELECT count(*) FROM sites WHERE id = 'sakkanmol' AND retired_at IS NOT NULL") == [(1,)]
    today = datetime.datetime.now(datetime.timezone.utc).date()
    yesterday = service.get(f"/sites?as_of={today - datetime.timedelta(days=1)}&limit=1000").json()
    assert "sakkanmol" in [f["id"] for f in yesterday["features"]]


def test_as_of_shows_the_catalogue_as_it_was_known(service):
    today = datetime.datetime.now(datetime.timezone.utc).date()
    service.patch("/sites/sakkanmol", json={"lon": 126.0, "lat": 39.5}, headers=EDITOR)
    service.post("/sites", json=NEW_SITE, headers=EDITOR)
    yesterday = service.get(f"/sites?as_of={today - datetime.timedelta(days=1)}&limit=1000").json()
    now = service.get(f"/sites?as_of={today}&limit=1000").json()
    old = {f["id"]: f for f in yesterday["features"]}
    new = {f["id"]: f for f in now["features"]}
    assert "test-base" not in old and "test-base" in new
    assert old["sakkanmol"]["geometry"]["coordinates"] != [126.0, 39.5]
    assert new["sakkanmol"]["geometry"]["coordinates"] == [126.0, 39.5]
    assert yesterday["as_of"] == (today - datetime.timedelta(days=1)).isoformat()
    # Bundled sites count from their first dated report: Sakkanmol's is 2016-03, and no site is known in 1990.
    assert "sakkanmol" not in {f["id"] for f in service.get("/sites?as_of=2016-02-28").json()["features"]}
    assert "sakkanmol" in {f["id"] for f in service.get("/sites?as_of=2016-03-31").json()["features"]}
    early = service.get("/sites?as_of=1990-01-01").json()
    assert early["numberMatched"] == 0 and "sinpo-shipyard" in early["not_dated"]


def test_as_of_status_follows_the_observations_known_then(service):
    statuses = {}
    for day in ("2018-12-31", "2023-01-01"):
        features = service.get(f"/sites?as_of={day}&limit=1000").json()["features"]
        statuses[day] = {f["id"]: f["properties"]["current_status"] for f in features}
    assert statuses["2018-12-31"]["sino-ri"] == "active"  # seen active on 2018-12-27
    assert set(statuses["2018-12-31"]) <= set(statuses["2023-01-01"])


def test_as_of_on_ogc_items_and_map(service):
    items = service.get("/collections/sites/items?as_of=2016-03-31&limit=1000").json()
    assert "sakkanmol" in {f["id"] for f in items["features"]} and items["as_of"] == "2016-03-31"
    assert service.get("/collections/sites/items?as_of=2016-3-31").status_code == 400
    page = service.get("/map?as_of=1990-01-01")
    assert page.status_code == 200 and "Sakkanmol" not in page.text


def test_changes_lists_who_what_from_and_to(service):
    service.post("/sites", json=NEW_SITE, headers=EDITOR)
    service.patch("/sites/test-base", json={"name": "Renamed Base"}, headers=EDITOR)
    service.post("/sources", json={"title": "A report", "publisher": "CSIS"}, headers=EDITOR)
    log = service.get("/changes").json()
    assert [(c["action"], c["entity"]) for c in log["changes"]] == [("create", "site"), ("update", "site"),
                                                                   ("create", "source")]
    assert log["changes"][1]["diff"]["name"] == ["Test Base", "Renamed Base"]
    assert service.get("/changes?entity=source").json()["numberReturned"] == 1
    assert service.get("/changes?site_id=test-base&limit=1").json()["next"].endswith("after=1")
    assert service.get("/changes?after=2").json()["changes"][0]["id"] == 3
    assert service.get("/changes?since=2999-01-01").json()["changes"] == []
    assert service.get("/changes?since=yesterday").status_code == 422


def test_sources_can_be_added_changed_and_cited(service):
    created = service.post("/sources", json={"title": "New imagery", "publisher": "Planet", "url": "https://x.org/a"},
                           headers=EDITOR)
    source_id = created.json()["record"]["id"]
    assert created.status_code == 201 and source_id == "planet-new-imagery"
    assert service.patch(f"/sources/{source_id}", json={"published_on": "2026-01"}, headers=EDITOR).status_code == 200
    assert service.patch("/sources/nope", json={"notes": "x"}, headers=EDITOR).status_code == 404
    assert service.post("/sources", json={"title": "x", "publisher": "y", "url": "ftp://x"}, headers=EDITOR).status_code == 422
    response = service.post("/sites", json={**NEW_SITE, "source_ids": [source_id], "coord_source_id": source_id},
                            headers=EDITOR)
    assert response.status_code == 201
    cited = service.get("/sites/test-base").json()["properties"]["sources"]
    assert cited[0]["id"] == source_id and cited[0]["published_on"] == "2026-01"


def test_a_refreshed_snapshot_equals_a_fresh_load(gpkg_live):
    from pandas.testing import assert_frame_equal

    from app import edits
    from app.catalogue import Catalogue
    from app.models import SiteCreate, SiteUpdate

    old = Catalogue(gpkg_live)
    with closing(store.connect(gpkg_live)) as connection, store.transaction(connection):
        edits.create_site(connection, SiteCreate(**NEW_SITE), "alice")
        edits.update_site(connection, "sakkanmol", SiteUpdate(lon=126.0, lat=39.5), "alice")
        edits.retire_site(connection, "sino-ri", "alice")
    refreshed, fresh = old.refreshed(), Catalogue(gpkg_live)
    assert_frame_equal(refreshed.site_borders, fresh.site_borders)
    assert_frame_equal(refreshed.sites.drop(columns="geometry"), fresh.sites.drop(columns="geometry"))
    assert list(refreshed.site_index.within(126.0, 39.5, 1000)[0]) == list(fresh.site_index.within(126.0, 39.5, 1000)[0])
    assert "sino-ri" not in refreshed.sites.index and "test-base" in refreshed.sites.index


# --- storage that keeps what it was given ----------------------------------------------------------


def test_a_list_item_with_a_semicolon_round_trips(service, live):
    aliases = ["Foo; Bar", "Baz;", "[x]", " ; "]
    created = service.post("/sites", json={**NEW_SITE, "aliases": aliases}, headers=EDITOR)
    assert created.status_code == 201, created.text
    stripped = ["Foo; Bar", "Baz;", "[x]", ";"]  # the API strips each item's outer whitespace, nothing else
    assert created.json()["record"]["aliases"] == stripped
    assert service.get("/sites/test-base").json()["properties"]["aliases"] == stripped
    assert json.loads(_rows(live, "SELECT after FROM changes")[0][0])["aliases"] == stripped
    assert service.get("/changes").json()["changes"][0]["diff"]["aliases"] == [None, stripped]
    renamed = ["A;B", "C; D"]
    assert service.patch("/sites/test-base", json={"aliases": renamed}, headers=EDITOR).status_code == 200
    assert service.get("/sites/test-base").json()["properties"]["aliases"] == renamed
    assert service.get("/changes?site_id=test-base").json()["changes"][1]["diff"]["aliases"] == [stripped, renamed]
    assert _rows(live, "SELECT aliases FROM sites WHERE id = 'test-base'") == [('["A;B","C; D"]',)]
    today = datetime.datetime.now(datetime.timezone.utc).date()
    as_of = {f["id"]: f for f in service.get(f"/sites?as_of={today}&limit=1000").json()["features"]}
    assert as_of["test-base"]["properties"]["aliases"] == renamed
    listed = service.get("/sites?lat=39&lon=126.5&within_km=1").json()["features"]
    assert [f["properties"]["aliases"] for f in listed] == [renamed]


def test_two_sites_cannot_share_an_id(gpkg_live):
    with closing(store.connect(gpkg_live)) as connection:
        columns = [row[1] for row in connection.execute('PRAGMA table_info("sites")') if row[1] != "fid"]
        copy = f'INSERT INTO sites ({", ".join(columns)}) SELECT {", ".join(columns)} FROM sites WHERE id = ?'
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE constraint failed: sites.id"):
            connection.execute(copy, ("sakkanmol",))
        for table in ("observations", "sources", "missiles", "places", "borders"):
            with pytest.raises(sqlite3.IntegrityError, match=f"UNIQUE constraint failed: {table}.id"):
                connection.execute(f'INSERT INTO "{table}" (id) SELECT id FROM "{table}" LIMIT 1')
    assert _rows(gpkg_live, "SELECT count(*) FROM sites WHERE id = 'sakkanmol'") == [(1,)]


@pytest.mark.parametrize(("taken", "expected"), [
    ([], ["test-base", "test-base-2", "test-base-3"]),
    (["test-base"], ["test-base-2", "test-base-3", "test-base-4"]),
    (["test-base", "test-base-3", "test-base-x", "test-base-2-b"], ["test-base-2", "test-base-4", "test-base-5"]),
    (["test-base-2"], ["test-base", "test-base-3", "test-base-4"]),
])
def test_free_ids_are_the_lowest_free_suffixes(gpkg_live, taken, expected):
    from app import edits
    from app.models import SiteCreate

    with closing(store.connect(gpkg_live)) as connection, store.transaction(connection):
        for name in taken:
            edits.create_site(connection, SiteCreate(**{**NEW_SITE, "name": name}), "alice")
        assert [r[0] for r in connection.execute("SELECT id FROM sites WHERE id LIKE 'test-base%' ORDER BY id")] == \
            sorted(taken)
        assert edits.free_ids(connection, "sites", ["test-base"] * 3) == expected
        plan = " ".join(r[-1] for r in connection.execute("EXPLAIN QUERY PLAN SELECT 1 FROM sites WHERE id = ?", ("x",)))
        assert "sites_id_unique" in plan


def test_validate_works_on_an_edited_catalogue(gpkg_live):
    tokens = [{"name": "alice", "role": "editor", "sha256": hash_token(EDITOR["Authorization"].split()[1])}]
    unlocate = {"lon": None, "lat": None, "coord_confidence": "unknown", "coord_source_id": None,
                "coord_precision_m": None}
    with TestClient(create_app(Settings(gpkg=gpkg_live, tokens=tokens, _env_file=None))) as client:
        assert client.post("/sites", json=NEW_SITE, headers=EDITOR).status_code == 201
        assert client.patch("/sites/test-base", json=unlocate, headers=EDITOR).status_code == 200
        assert client.patch("/sites/sakkanmol", json=unlocate, headers=EDITOR).status_code == 200
        assert client.delete("/sites/kal-gol", headers=EDITOR).status_code == 200
    # A process of its own: GDAL's validate_gpkg reads the file, which no process holding SQLite connections may do.
    result = subprocess.run([sys.executable, "-m", "app.cli", "validate", "--gpkg", str(gpkg_live)], cwd=REPO_ROOT,
                            env={**os.environ, "COLUMNS": "250"}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "validate_gpkg: ok" in result.stdout
    lines = result.stdout.splitlines()
    assert sum("not checked: site retired" in line and "kal-gol" in line for line in lines) == 2
    assert sum("not checked: site has no coordinate" in line and "sakkanmol" in line for line in lines) == 2
    assert any("yusang-ni" in line and "yes" in line for line in lines)


def test_a_retired_site_is_410_gone_on_sites_and_ogc_items_alike(service):
    assert service.delete("/sites/sakkanmol", headers=EDITOR).status_code == 200
    sites, item = service.get("/sites/sakkanmol"), service.get("/collections/sites/items/sakkanmol")
    assert sites.status_code == item.status_code == 410
    assert sites.json()["error"]["code"] == item.json()["error"]["code"] == "gone"
    assert set(item.json()) == {"error"} and set(item.json()["error"]) == {"status", "code", "message", "parameter"}
    assert item.json()["error"]["parameter"] == "featureId" and "retired" in item.json()["error"]["message"]
    assert service.get("/collections/sites/items/atlantis").status_code == service.get("/sites/atlantis").status_code == 404
