"""Each site is measured against the lines that matter to it: its country's land borders, its coastline (derived
from the countries layer) and the named lines attached to its country; any line can still be asked for by name."""

from contextlib import closing

import numpy as np
import pytest
import shapely
from pyproj import Geod
from typer.testing import CliRunner

from app import geodesy, regions, store
from app.catalogue import Catalogue
from app.queries import BorderBand
from app.vocab import decode_list
from app.cli import cli
from app.settings import GEODATA_DIR
from tests.test_integrity import editor_app

GEOD = Geod(ellps="WGS84")
KOREAN_LINES = {"mdl", "dmz-north", "dmz-south"}


def test_a_coastline_is_the_boundary_no_land_border_shares():
    square = shapely.Polygon([(0, 0), (2, 0), (2, 1), (2, 2), (0, 2)])  # borders share vertices with the polygon
    shared = [shapely.LineString([(2, 2), (2, 1), (2, 0)]), shapely.LineString([(0, 2), (0, 0)])]
    coast = regions.coastline(square, shared)
    assert coast.length == pytest.approx(4.0)
    assert {tuple(c) for c in shapely.get_coordinates(coast)} == {(0, 0), (2, 0), (2, 2), (0, 2)}
    assert regions.coastline(square, [square.exterior]) is None  # landlocked
    assert regions.coastline(None, []) is None
    island = shapely.MultiPolygon([square, shapely.Polygon([(5, 5), (6, 5), (6, 6)])])
    assert regions.coastline(island, shared).length == pytest.approx(4.0 + 2 + 2 ** 0.5)


@pytest.mark.parametrize(("country", "coast"), [("PRK", True), ("KOR", True), ("IRN", True), ("AFG", False),
                                                ("CHE", False), ("MNG", False)])
def test_landlocked_countries_have_no_coastline(catalogue, country, coast):
    assert (catalogue.coastlines.get(country) is not None) is coast
    assert (regions.coastline_id(country) in catalogue.lines_for_country(country)) is coast


def _edges(line) -> set[frozenset]:
    """A line's edges, each as the set of its two end points (either direction)."""
    xy = [tuple(c) for c in shapely.get_coordinates(line)]
    return {frozenset(pair) for pair in zip(xy, xy[1:])}


@pytest.mark.parametrize("country", ["PRK", "KOR", "IRN"])
def test_a_coastline_shares_no_edge_with_a_land_border_and_lies_on_the_country(catalogue, country):
    coast = catalogue.coastlines.get(country)
    polygon = catalogue.countries.set_index("id").loc[country].geometry
    land = catalogue._land_borders_by_country[country]
    coast_keys = {k for part in shapely.get_parts(coast) for k in _edges(part)}
    land_keys = {k for line in land for part in shapely.get_parts(line) for k in _edges(part)}
    boundary_keys = {k for ring in shapely.get_rings(shapely.get_parts(polygon)) for k in _edges(ring)}
    assert coast_keys and not coast_keys & land_keys
    assert land_keys <= boundary_keys  # every land border edge is an edge of the polygon: the vertices are shared
    assert coast_keys | land_keys == boundary_keys


def test_sites_are_measured_against_their_own_lines_only(catalogue):
    table = catalogue.site_border_table("sakkanmol")
    assert set(table["border_id"]) == {"chn-prk", "kor-prk", "prk-rus", "coast-prk"} | KOREAN_LINES
    for site_id, distances in catalogue.site_border_distances(catalogue.sites.index).items():
        country = catalogue.sites.loc[site_id, "country"]
        if distances:
            assert set(distances) == set(catalogue.lines_for_country(country)), site_id
    assert table.set_index("border_id").loc["coast-prk", "name"] == "North Korea coastline"
    assert catalogue.attached_borders == {"KOR": ("dmz-north", "dmz-south", "mdl"),
                                          "PRK": ("dmz-north", "dmz-south", "mdl")}


def test_distance_to_the_coast_is_exact_on_wgs84(catalogue):
    coast = catalogue.coastlines.get("PRK")
    for site_id in ("sakkanmol", "sino-ri", "hoejung-ni"):
        point = catalogue.sites.loc[site_id].geometry
        row = catalogue.site_border_table(site_id).set_index("border_id").loc["coast-prk"]
        expected_m, (lon, lat) = geodesy.nearest_on_line(point.x, point.y, coast)
        assert row["distance_km"] == pytest.approx(expected_m / 1000, abs=0.001), site_id
        assert GEOD.inv(point.x, point.y, row["nearest_lon"], row["nearest_lat"])[2] / 1000 == \
            pytest.approx(row["distance_km"], abs=0.001)
        # no vertex of the coastline is nearer than the answer (a brute-force check of the minimum)
        xy = shapely.get_coordinates(coast)
        vertex_m = GEOD.inv(np.full(len(xy), point.x), np.full(len(xy), point.y), xy[:, 0], xy[:, 1])[2]
        assert vertex_m.min() >= row["distance_km"] * 1000 - 1


def test_any_line_can_be_asked_for_by_name_and_sorted_by(catalogue):
    page = catalogue.find_sites(band=BorderBand("mdl", 50, 90), sort="border")
    distances = list(page.sites["border_distance_km"])
    assert distances == sorted(distances) and page.sites.index[0] == "chiha-ri"
    other = catalogue.find_sites(band=BorderBand("coast-jpn", None, 2000), sort="border", limit=1000)
    assert other.number_matched > 0 and other.sites["border_distance_km"].is_monotonic_increasing
    assert "coast-jpn" not in catalogue.site_border_distances(["sakkanmol"])["sakkanmol"]


def test_sort_border_over_http(client):
    body = client.get("/sites", params={"border": "mdl", "border_max_km": 90, "sort": "border"}).json()
    distances = [f["properties"]["border_distance_km"] for f in body["features"]]
    assert distances == sorted(distances) and distances[0] < 60
    refused = client.get("/sites", params={"sort": "border"})
    assert refused.status_code == 422 and refused.json()["error"]["parameter"] == "sort"
    borders = client.get("/borders").json()
    assert "coast-prk" in {b["id"] for b in borders["borders"]} and borders["attached"]["PRK"] == sorted(KOREAN_LINES)
    assert client.get("/borders/distance", params={"near": "Tokyo", "border": "coast-jpn"}).json()["borders"][0][
        "distance_km"] < 20


def test_an_operator_attaches_and_detaches_lines_and_the_service_follows(tmp_path):
    live = store.ensure_live(tmp_path / "live.gpkg", GEODATA_DIR / "catalogue.gpkg")
    runner = CliRunner()
    with editor_app(live) as client:
        assert any(b["border_id"] == "mdl" for b in client.get("/sites/sakkanmol").json()["properties"]["border_distances"])
        result = runner.invoke(cli, ["attach-border", "mdl", "PRK", "--detach", "--gpkg", str(live), "--actor", "ops"])
        assert result.exit_code == 0 and "mdl detached from PRK" in result.stdout
        with closing(store.connect_readonly(live)) as connection:
            last = connection.execute("SELECT max(id), entity, action FROM changes").fetchone()
        assert last[1:] == ("attached_border", "detach")
        assert client.app.state.live.wait_for(last[0])
        measured = {b["border_id"] for b in client.get("/sites/sakkanmol").json()["properties"]["border_distances"]}
        assert "mdl" not in measured and {"dmz-north", "coast-prk"} <= measured
        band = client.get("/sites", params={"border": "mdl", "border_max_km": 90}).json()  # still asked by name
        assert "sakkanmol" in {f["id"] for f in band["features"]}
        again = runner.invoke(cli, ["attach-border", "mdl", "PRK", "--gpkg", str(live)])
        assert again.exit_code == 0 and "mdl attached to PRK" in again.stdout
        for bad in (["nope", "PRK"], ["mdl", "XXX"]):
            refused = runner.invoke(cli, ["attach-border", *bad, "--gpkg", str(live)])
            assert refused.exit_code == 2, bad
    fresh = Catalogue(live)
    assert fresh.attached_borders["PRK"] == ("dmz-north", "dmz-south", "mdl")


def test_a_map_legend_shows_only_the_lines_drawn(catalogue):
    from app.maps import catalogue_map, render_html

    korean = render_html(catalogue_map(catalogue, catalogue.find_sites(limit=5)))
    assert "Military Demarcation Line" in korean and "DMZ edges" in korean
    borders = catalogue.map_borders(["sakkanmol"])
    assert KOREAN_LINES <= set(borders.index) and "coast-prk" in borders.index
    assert set(catalogue.map_borders([]).kind) == {"land_border"}
    assert decode_list(borders.loc["mdl", "countries"]) == ["KOR", "PRK"]
