"""Any desk, not only Korea's: a catalogue built from the bundled geography alone, its source, missile system, place
and two Iranian sites written through the API from a hand-written fixture (tests/data/iran_desk, TEST DATA), then
asked for rings, reach with intervals, borders and a map. No Korean line is measured or drawn for it."""

import json
import csv
import io
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import shapely
from fastapi.testclient import TestClient
from pyproj import Geod
from typer.testing import CliRunner

from app import geodesy, store
from app.auth import hash_token
from app.build_data import CITIES_FILE, CITIES_SOURCE_ID, CNS_DIR, CNS_TESTS_SOURCE_ID, LSIB_FILE, LSIB_SOURCE_ID, NE_FILE, NE_SOURCE_ID, SCHEMAS, SOURCES_DIR, build
from app.cli import cli
from app.main import create_app
from app.settings import Settings

DESK = Path(__file__).parent / "data" / "iran_desk" / "desk.json"
EDITOR = {"Authorization": "Bearer desk-editor-token"}
GEOD = Geod(ellps="WGS84")
RANGE_KM = 1300.0
KOREAN_LINES = ("mdl", "dmz-north", "dmz-south")
IRAN_LAND_BORDERS = {"afg-irn", "arm-irn", "aze-irn", "irn-irq", "irn-pak", "irn-tkm", "irn-tur"}


def geography_only(folder: Path) -> Path:
    """Build sources with the bundled geography (and its two sources) and no sites, missiles, places or reports."""
    for name in (LSIB_FILE, NE_FILE, CITIES_FILE):
        shutil.copy(SOURCES_DIR / name, folder / name)
    shutil.copytree(SOURCES_DIR / CNS_DIR, folder / CNS_DIR)
    for name, schema in SCHEMAS.items():
        if name == CITIES_FILE:
            continue
        lines = [",".join(schema)]
        if name in ("cns_facilities.csv", "cns_missiles.csv"):  # every CNS id, none matched to a catalogue row
            reference = "site_id" if name == "cns_facilities.csv" else "missile_id"
            with (SOURCES_DIR / name).open(encoding="utf-8", newline="") as handle:
                rows = list(csv.DictReader(handle))
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=list(schema), lineterminator="\n")
            writer.writeheader()
            writer.writerows({**row, reference: "", "notes": ""} for row in rows)
            (folder / name).write_text(buffer.getvalue(), encoding="utf-8")
            continue
        if name == "sources.csv":
            lines += [line for line in (SOURCES_DIR / name).read_text(encoding="utf-8").splitlines()[1:]
                      if line.split(",", 1)[0] in (LSIB_SOURCE_ID, NE_SOURCE_ID, CITIES_SOURCE_ID, CNS_TESTS_SOURCE_ID)]
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def desk(tmp_path_factory):
    """A client of a service on the desk's catalogue, the fixture written through the API, and the site ids."""
    folder = tmp_path_factory.mktemp("desk")
    (folder / "sources").mkdir()
    seed = build(geography_only(folder / "sources"), folder / "base.gpkg")
    live = store.ensure_live(folder / "live.gpkg", seed)
    tokens = [{"name": "desk", "role": "editor", "sha256": hash_token(EDITOR["Authorization"].split()[1])}]
    app = create_app(Settings(gpkg=live, tokens=tokens, write_burst=1000, _env_file=None))
    fixture = json.loads(DESK.read_text(encoding="utf-8"))
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/health").json()["sites"] == 0
        created = client.post("/sources", json=fixture["source"], headers=EDITOR)
        assert created.status_code == 201, created.text
        source = created.json()["record"]["id"]
        ids = {}
        for kind in ("missiles", "places", "sites"):
            for body in fixture[kind]:
                body = json.loads(json.dumps(body).replace("{source}", source))
                response = client.post(f"/{kind}", json=body, headers=EDITOR)
                assert response.status_code == 201, response.text
                ids[body["name"]] = response.json()["record"]["id"]
        yield client, ids, live


def test_the_desk_is_written_through_the_api_and_logged(desk):
    client, ids, _ = desk
    assert ids == {"Test MRBM": "test-mrbm", "Riyadh": "riyadh", "Test Site West": "test-site-west",
                   "Test Site North": "test-site-north"}
    log = client.get("/changes").json()["changes"]
    assert [(c["entity"], c["action"]) for c in log] == [("source", "create"), ("missile", "create"),
                                                         ("place", "create"), ("site", "create"), ("site", "create")]
    sites = client.get("/sites", params={"country": "IRN"}).json()
    assert sites["numberMatched"] == 2 and {f["properties"]["missile_classes"][0] for f in sites["features"]} == {"MRBM"}
    assert all("TEST DATA" in f["properties"]["notes"] for f in sites["features"])


def test_rings_are_geodesic_at_the_missiles_range(desk):
    client, _, _ = desk
    site = client.get("/sites/test-site-west").json()
    lon, lat = site["geometry"]["coordinates"]
    rings = client.get("/sites/test-site-west/rings").json()["features"]
    assert [(r["properties"]["missile_id"], r["properties"]["range_max_km"]) for r in rings] == [("test-mrbm", RANGE_KM)]
    ring = shapely.geometry.shape(rings[0]["geometry"])
    xy = shapely.get_coordinates(ring)
    distances = GEOD.inv(np.full(len(xy), lon), np.full(len(xy), lat), xy[:, 0], xy[:, 1])[2] / 1000
    assert np.allclose(distances, RANGE_KM, atol=0.001) and ring.contains(shapely.Point(lon, lat))


def test_reach_for_a_city_by_its_alias_with_intervals(desk):
    client, _, _ = desk
    body = client.get("/reach", params={"near": "Ar Riyad"}).json()
    assert body["target"]["place_id"] == "riyadh"
    expected = {}
    for site_id, precision_km in (("test-site-west", 2.0), ("test-site-north", 5.0)):
        lon, lat = client.get(f"/sites/{site_id}").json()["geometry"]["coordinates"]
        margin = RANGE_KM - GEOD.inv(lon, lat, 46.72185, 24.68773)[2] / 1000
        expected[site_id] = (margin, [margin - precision_km, margin + precision_km])
    west, = body["verdicts"]["reaches"]
    north, = body["verdicts"]["reaches_only_if_coordinate_errs"]
    assert (west["site_id"], north["site_id"]) == ("test-site-west", "test-site-north")
    for pair in (west, north):
        margin, interval = expected[pair["site_id"]]
        assert pair["margin_km"] == pytest.approx(margin, abs=0.001)
        assert pair["margin_interval_km"] == pytest.approx(interval, abs=0.001)
    assert north["margin_km"] == pytest.approx(-3.0, abs=0.05) and north["coord_precision_m"] == 5000
    assert body["not_assessed"] == []
    printed = CliRunner().invoke(cli, ["reach", "--near", "Riyadh", "--gpkg", str(desk[2])], env={"COLUMNS": "80"})
    assert printed.exit_code == 0, printed.stdout
    assert "reaches_only_if_coordinate_errs" in printed.stdout and "-3.0 ± 5.0" in printed.stdout  # margin ± precision
    printed = CliRunner().invoke(cli, ["reach", "--near", "Riyadh", "--gpkg", str(desk[2]), "--wide"])
    assert printed.exit_code == 0 and "-8.0 … +2.0" in printed.stdout  # --wide: the interval in its own column
    print(printed.stdout)  # the answer as the CLI prints it (pytest -s shows it)


@pytest.mark.parametrize(("beyond_km", "short_km", "verdict"), [
    (-6.0, None, "reaches"),  # margin +6 ± 5: reaches whichever way the coordinate errs
    (-5.0, None, "reaches"),  # margin +5 ± 5: the far end of the interval just touches the range
    (-4.0, None, "reaches_unless_coordinate_errs"),  # +4 ± 5
    (-0.001, None, "reaches_unless_coordinate_errs"),
    (0.001, None, "reaches_only_if_coordinate_errs"),  # -0.001 ± 5
    (4.0, None, "reaches_only_if_coordinate_errs"),
    (6.0, None, None),  # -6 ± 5: cannot reach, and short_km not asked
    (6.0, 10.0, "falls_short"),
    (6.0, 5.0, None),  # falls short by more than short_km
    (12.0, 10.0, None),
])
def test_reach_intervals_around_the_range_boundary(desk, beyond_km, short_km, verdict):
    """Targets due south of Test Site North (precision 5 km) at the missile's range plus `beyond_km` (pyproj.Geod)."""
    client, _, _ = desk
    lon, lat = client.get("/sites/test-site-north").json()["geometry"]["coordinates"]
    target_lon, target_lat, _ = GEOD.fwd(lon, lat, 180.0, (RANGE_KM + beyond_km) * 1000)
    params = {"lat": target_lat, "lon": target_lon, **({"short_km": short_km} if short_km is not None else {})}
    body = client.get("/reach", params=params).json()
    found = {p["verdict"]: p for pairs in body["verdicts"].values() for p in pairs if p["site_id"] == "test-site-north"}
    assert list(found) == ([verdict] if verdict else [])
    if verdict:
        margin = RANGE_KM - GEOD.inv(lon, lat, target_lon, target_lat)[2] / 1000
        assert found[verdict]["margin_km"] == pytest.approx(-beyond_km, abs=0.001)
        assert found[verdict]["margin_km"] == pytest.approx(margin, abs=0.001)
        assert found[verdict]["margin_interval_km"] == pytest.approx([margin - 5, margin + 5], abs=0.001)


def test_sites_are_measured_against_iran_s_lines_and_never_the_korean_ones(desk):
    client, _, _ = desk
    site = client.get("/sites/test-site-west").json()
    measured = {b["border_id"]: b for b in site["properties"]["border_distances"]}
    assert set(measured) == IRAN_LAND_BORDERS | {"coast-irn"}
    lon, lat = site["geometry"]["coordinates"]
    borders = {b["id"]: b for b in client.get("/borders").json()["borders"]}
    assert set(KOREAN_LINES) <= set(borders)  # the lines exist in this catalogue, attached to the Koreas only
    assert client.get("/borders").json()["attached"] == {c: sorted(KOREAN_LINES) for c in ("KOR", "PRK")}
    from app.catalogue import Catalogue
    iraq = Catalogue(desk[2]).border_row("irn-irq").geometry
    expected_m, _ = geodesy.nearest_on_line(lon, lat, iraq)
    assert measured["irn-irq"]["distance_km"] == pytest.approx(expected_m / 1000, abs=0.001)
    assert measured["irn-irq"]["distance_km"] < measured["coast-irn"]["distance_km"]
    listed = client.get("/sites", params={"country": "IRN"}).json()["features"]
    assert all(set(f["properties"]["border_distances_km"]) == IRAN_LAND_BORDERS | {"coast-irn"} for f in listed)
    csv_text = client.get("/sites", params={"f": "csv"}).text
    header = csv_text.splitlines()[0].split(",")
    assert "border_km_coast-irn" in header and "border_km_mdl" not in header
    assert not any("dmz" in column for column in header)
    # a query may still name any line, and sort by it
    far = client.get("/sites", params={"border": "mdl", "sort": "border"}).json()["features"]
    assert [f["id"] for f in far] == ["test-site-north", "test-site-west"]  # the one farther east is nearer Korea
    assert 5000 < far[0]["properties"]["border_distance_km"] < far[1]["properties"]["border_distance_km"] < 7000
    coast = client.get("/sites", params={"border": "coast-irn", "border_max_km": 500, "sort": "border"}).json()
    assert [f["properties"]["border_distance_km"] for f in coast["features"]] == \
        sorted(f["properties"]["border_distance_km"] for f in coast["features"])


def test_the_map_shows_no_korean_line(desk):
    client, _, _ = desk
    page = client.get("/map", params={"rings": "true"})
    assert page.status_code == 200
    html = page.text
    for korean in ("Military Demarcation Line", "DMZ edges", "DMZ northern boundary", "DMZ southern boundary"):
        assert korean not in html, korean
    for line in ("mdl", "dmz-north", "dmz-south"):
        assert re.search(rf'"border_id":\s*"{line}"', html) is None, line
    assert "Land borders" in html and "Test MRBM" in html and "Test Site North" in html
    assert re.search(r'"border_id":\s*"irn-irq"', html)
