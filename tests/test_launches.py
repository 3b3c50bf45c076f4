"""Launch history: the CNS database's 339 flight tests as dated events at their facilities, matched to sites."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys

import pytest

from app.queries import _period_end, launch_counts
from app.settings import REPO_ROOT

CNS = REPO_ROOT / "geodata" / "sources" / "cns-missile-tests"
PLACEHOLDER = (125.673256, 39.200159)


def test_all_339_tests_are_loaded_each_with_its_source(catalogue):
    launches = catalogue.launch_table.frame
    tests = [t for year in json.loads((CNS / "test.en.json").read_text(encoding="utf-8"))["timeBins"] for t in year["data"]]
    assert len(launches) == len(tests) == 339 and launches["id"].is_unique
    assert (launches["source_id"] == "cns-nk-missile-test-db-tests").all()
    assert (launches["launched_on"].min(), launches["launched_on"].max()) == ("1984-04-09", "2026-04-18")


def test_the_placeholder_facility_is_never_a_location(catalogue):
    launches = catalogue.launch_table.frame
    placeholder = launches[launches["cns_facility"] == "unknown"]
    assert len(placeholder) == 1 and placeholder.geometry.isna().all() and placeholder["site_id"].isna().all()
    assert launches.geometry.isna().sum() == 1  # no other launch lacks a point
    # the one launch is in no radius answer, however large, and no site's own launches
    everywhere = catalogue.site_launches("pyongyang-sunan-international-airport", within_km=20_000)
    assert "unknown" not in set(everywhere["cns_facility"]) and len(everywhere) == 338


def test_launches_are_matched_to_catalogue_sites_where_the_facility_is_one(catalogue):
    counts = catalogue.launch_table.frame["site_id"].value_counts().to_dict()
    assert counts == {"pyongyang-sunan-international-airport": 70, "kittaeryong-missile-base": 20,
                      "sohae-satellite-launching-station": 18, "tonghae-satellite-launching-ground": 17,
                      "sinpo-shipyard": 15, "hwangju-launch-area": 14, "baegun-launch-area": 2, "chiha-ri": 1,
                      "kusong-testing-ground": 1}


def test_known_answer_kittaeryong_by_year_and_missile(catalogue):
    rows = catalogue.site_launches("kittaeryong-missile-base")
    assert (len(rows), rows["launched_on"].min(), rows["launched_on"].max()) == (20, "2006-07-05", "2017-08-25")
    assert [(c["year"], c["missile"], c["launches"]) for c in launch_counts(rows)] == [
        ("2006", "hwasong-6", 2), ("2006", "hwasong-7", 4), ("2009", "hwasong-6", 5), ("2009", "hwasong-7", 2),
        ("2014", "hwasong-5", 4), ("2017", "cns:scud-b-marv", 3)]


def test_known_answer_launches_within_15_km_of_kal_gol(catalogue):
    rows = catalogue.site_launches("kal-gol", within_km=15)
    assert list(rows.index) == ["cns-1991-07-1", "cns-2022-11-03-1", "cns-2022-11-03-2", "cns-2022-11-03-3"]
    assert [round(d, 1) for d in rows["distance_km"]] == [7.3, 11.8, 11.8, 11.8]  # Chihari, Koksan
    assert catalogue.site_launches("kal-gol").empty  # none at the base itself


@pytest.mark.parametrize(("day", "count"), [("2009-12-31", 13), ("2006-07-04", 0), ("2014-03-26", 17), (None, 20)])
def test_as_of_sees_only_launches_that_had_happened(catalogue, day, count):
    when = None if day is None else datetime.date.fromisoformat(day)
    assert len(catalogue.site_launches("kittaeryong-missile-base", as_of=when)) == count
    if when is not None:
        assert (catalogue.as_of(when).launches["launched_on"].map(_period_end) <= when).all()


def test_a_partial_date_counts_from_the_end_of_its_period():
    assert _period_end("1991-07") == datetime.date(1991, 7, 31) and _period_end("2016") == datetime.date(2016, 12, 31)
    assert _period_end("1991-12") == datetime.date(1991, 12, 31) and _period_end("2022-11-03") == datetime.date(2022, 11, 3)


def test_get_site_launches_and_the_site_shows_its_own(client):
    body = client.get("/sites/kal-gol/launches?within_km=15").json()
    assert body["count"] == 4 and body["not_located"] == 1 and "CNS" in body["source"]
    assert body["launches"][1]["point"] == [126.67, 38.78] and body["launches"][1]["distance_km"] == 11.772
    site = client.get("/sites/kittaeryong-missile-base").json()["properties"]
    assert len(site["launches"]) == 20 and site["launches"][0]["launched_on"] == "2006-07-05"
    past = client.get("/sites/kittaeryong-missile-base/launches?as_of=2009-12-31").json()
    assert past["count"] == 13 and past["as_of"] == "2009-12-31"


@pytest.mark.parametrize(("url", "status", "parameter"), [
    ("/sites/nowhere/launches", 404, "site_id"),
    ("/sites/kal-gol/launches?within_km=-1", 422, "within_km"),
    ("/sites/yeongjeo-dong/launches?within_km=10", 422, "within_km"),
    ("/sites/kal-gol/launches?as_of=2999-01-01", 422, "as_of"),
    ("/sites/kal-gol/launches?as_of=yesterday", 422, "as_of"),
])
def test_bad_launch_queries_answer_4xx(client, url, status, parameter):
    response = client.get(url)
    assert response.status_code == status, response.text
    assert response.json()["error"]["parameter"] == parameter


def test_cli_prints_launches_by_year_and_missile():
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "COLUMNS": "140"}
    out = subprocess.run([sys.executable, "-m", "app.cli", "launches", "kal-gol", "--within-km", "15"], capture_output=True,
                         text=True, env=env, check=True).stdout
    assert "4 launches within 15 km of kal-gol" in out and "Koksan" in out and "Chihari Missile Base" in out


def test_a_file_built_before_the_launches_and_cities_layers_answers_503_and_null(tmp_path, gpkg_path):
    import shutil
    import sqlite3
    from contextlib import closing

    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.settings import Settings

    old = tmp_path / "old.gpkg"
    shutil.copy(gpkg_path, old)
    with closing(sqlite3.connect(old)) as connection:
        for table in ("launches", "cities"):
            connection.execute(f'DROP TABLE "{table}"')
            connection.execute("DELETE FROM gpkg_contents WHERE table_name = ?", (table,))
            connection.execute("DELETE FROM gpkg_geometry_columns WHERE table_name = ?", (table,))
        connection.commit()
    app = create_app(Settings(gpkg=tmp_path / "live.gpkg", seed_gpkg=old, _env_file=None))
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/sites/kal-gol").json()["properties"]["launches"] is None
        for url in ("/sites/kal-gol/launches", "/cities?near=Seoul&within_km=10", "/sites/sakkanmol/cities"):
            response = client.get(url)
            assert response.status_code == 503 and response.json()["error"]["code"] == "storage_unavailable", url
