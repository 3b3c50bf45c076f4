"""Map builders: self-contained HTML, escaped text, geodesic rings and radius, the /map route."""

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import folium
import numpy as np
import pytest
from typer.testing import CliRunner
import shapely
from folium.plugins import MiniMap

from app import geodesy, maps, store
from app.queries import SitePage
from app.cli import cli
from app.maps import (
    DATA_SCRIPT, VENDOR_DIR, VENDORED_CSS, VENDORED_JS, catalogue_map, class_colours, decode_geometry, expand_sites, http_url,
    make_self_contained, read_map_data, render_html, ring_outline, script_json, site_class, site_map,
    split_at_antimeridian,
)
from app.settings import GEODATA_DIR, REPO_ROOT
from tests.mapdata import BENIGN, GENERATED_AT, HOSTILE, HOSTILE_QUERY, HOSTILE_URL, hostile_map
from tests.service import free_port

CDN_HOSTS = ("cdn.jsdelivr", "cdnjs", "code.jquery", "netdna", "unpkg.com", "bootstrapcdn")


@pytest.fixture(scope="module")
def seoul_page(catalogue):
    """Sites within 300 km of Seoul."""
    return catalogue.find_sites(centre=catalogue.place("Seoul"), within_km=300, sort="distance")


@pytest.fixture(scope="module")
def seoul_html(catalogue, seoul_page):
    """The Seoul 300 km map with rings, rendered."""
    return render_html(catalogue_map(catalogue, seoul_page, rings=True, radius_km=300,
                                     query="near=Seoul&within_km=300&rings=true", generated_at=GENERATED_AT))


@pytest.fixture(scope="module")
def hostile_html(catalogue):
    """A map whose every data-derived text is hostile, rendered."""
    return render_html(hostile_map(catalogue))


@pytest.fixture(scope="module")
def hostile_data(hostile_html):
    """The hostile map's data document, parsed."""
    return read_map_data(hostile_html)


def _strings(value) -> list[str]:
    """Every string anywhere in a JSON value."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _strings(v)]
    if isinstance(value, list):
        return [t for v in value for t in _strings(v)]
    return []


def _without_data(html: str) -> str:
    """The page less its data document, with folium's random element ids made equal."""
    return re.sub(r"[0-9a-f]{32}", "ID", DATA_SCRIPT.sub("DATA", html))


# --- data never becomes code ------------------------------------------------------------------

@pytest.mark.parametrize("text", [*HOSTILE, "</SCRIPT >", "<!--", "a\u2028b\u2029c", "&amp;", "Sakkanmol", ""])
def test_script_json_cannot_end_its_script_and_reads_back_exactly(text):
    encoded = script_json({"text": text, "items": [text]})
    assert not set("<>&\u2028\u2029") & set(encoded)
    assert json.loads(encoded) == {"text": text, "items": [text]}


@pytest.mark.parametrize(("url", "expected"), [
    ("https://example.org/a?b=1&c=2", "https://example.org/a?b=1&c=2"),
    (" http://example.org/`${x}` ", "http://example.org/`${x}`"),
    ("javascript:alert(1)", None),
    (" JaVaScRiPt:alert(1)", None),
    ("data:text/html,<script>alert(1)</script>", None),
    ("", None),
    (None, None),
])
def test_http_url(url, expected):
    assert http_url(url) == expected


def test_data_changes_nothing_outside_the_data_document(catalogue, hostile_html):
    # The same map with plain names, an http URL and a plain query: only the data document differs.
    benign_html = render_html(hostile_map(catalogue, BENIGN, url="https://example.org/", query="near=x"))
    assert _without_data(hostile_html) == _without_data(benign_html)
    assert hostile_html.count('type="application/json"') == 1


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_is_only_in_the_data_document_and_exact_there(hostile_html, hostile_data, text):
    if len(text) > 1:
        assert text not in DATA_SCRIPT.sub("", hostile_html)
    assert any(text in value for value in _strings(hostile_data))


def test_every_hostile_field_reaches_the_document_as_given(hostile_data):
    names = [site["name"] for site in expand_sites(hostile_data)]
    assert sorted(names) == sorted(t.strip() for t in HOSTILE)
    rows = {label: value for site in expand_sites(hostile_data) for label, value in site["popup"]["rows"]}
    assert rows["also known as"] == f"{HOSTILE[0]}, {HOSTILE[2]}"
    labels = [shape["geojson"]["properties"].get("label", "") for o in hostile_data["overlays"] for shape in o["shapes"]
              if shape["geojson"]["type"] == "Feature"]
    assert any(HOSTILE[4] in label for label in labels)  # ring labels: the defect of issue 10
    assert any(o["name"] == f"Range: {HOSTILE[4]} (SRBM, 300 km)" for o in hostile_data["overlays"])
    assert hostile_data["footer"]["query"] == HOSTILE_QUERY and hostile_data["footer"]["data_version"] == HOSTILE[3]
    assert hostile_data["title"] == f"missile-sites map: {HOSTILE_QUERY}"
    assert hostile_data["sources"]["evil-source"] == {"title": HOSTILE[1], "publisher": HOSTILE[2],
                                                      "published_on": "2019-01-21", "url": None}  # javascript: dropped
    assert hostile_data["sources"]["good-source"]["url"] == "https://example.org/report?a=1&b=2"


def test_the_page_has_no_live_markup_from_data(hostile_html):
    assert "<img" not in hostile_html and "<script>alert" not in hostile_html  # no tag from the data, anywhere
    assert HOSTILE_URL not in hostile_html and "href=\"javascript:" not in hostile_html
    assert "<title>missile-sites map</title>" in hostile_html  # the full title is set from the data


# --- self-contained ----------------------------------------------------------------------------

def test_map_links_nothing_outside(seoul_html):
    assert not re.search(r"<script[^>]+src=", seoul_html)
    assert not re.search(r"<link[^>]+stylesheet", seoul_html)
    assert not re.search(r"""url\((?!["']?(?:data:|#))""", seoul_html)
    for host in CDN_HOSTS:
        assert host not in seoul_html, host


def test_every_vendored_asset_is_inlined(seoul_html):
    assert seoul_html.count("Leaflet 1.9.4") == 1  # leaflet.js's own banner, once
    assert "jQuery" not in seoul_html  # nothing the maps draw calls it
    for name in ("L.Control.Measure", "leaflet.Control.FullScreen", "L.control.fullscreen", "L.control.scale",
                 "L.Control.Layers.extend", "missileSitesDraw"):
        assert name in seoul_html, name


def test_vendored_files_exist_with_licences():
    for relative in [*VENDORED_JS.values(), *VENDORED_CSS.values()]:
        assert (VENDOR_DIR / relative).is_file(), relative
    readme = (VENDOR_DIR / "README.md").read_text(encoding="utf-8")
    for package in {Path(r).parts[0] for r in [*VENDORED_JS.values(), *VENDORED_CSS.values()]}:
        assert list((VENDOR_DIR / package).glob("*LICEN*")), package
        assert f"`{package}`" in readme, package


def test_app_names_no_cdn():
    app_dir = VENDOR_DIR.parent
    for path in app_dir.rglob("*"):
        if path.is_file() and path.suffix in (".py", ".js", ".css", ".md", ".txt", ".sh", ""):
            text = path.read_text(encoding="utf-8", errors="replace")
            for host in CDN_HOSTS[:4]:
                assert host not in text, (path, host)


def test_a_resource_with_no_vendored_copy_is_refused(catalogue):
    m = site_map(catalogue.sites.head(2), borders=catalogue.borders, countries=catalogue.countries)
    MiniMap().add_to(m)
    with pytest.raises(ValueError, match="no vendored copy"):
        make_self_contained(m)


def test_rendering_twice_inlines_each_library_once(catalogue):
    m = site_map(catalogue.sites.head(3), borders=catalogue.borders, countries=catalogue.countries)
    render_html(m)
    assert render_html(m).count("Leaflet 1.9.4") == 1


# --- content -----------------------------------------------------------------------------------

def test_map_shows_the_query_sites_and_footer(catalogue, seoul_page, seoul_html):
    located = seoul_page.sites[~seoul_page.sites.geometry.isna()]
    assert len(located) >= 2
    data = read_map_data(seoul_html)
    assert sorted(site["name"] for site in expand_sites(data)) == sorted(located["name"])
    assert data["footer"]["data_version"] == catalogue.version
    assert data["footer"]["generated_at"] == "2024-05-01T12:00:00+00:00"
    assert data["footer"]["query"] == "near=Seoul&within_km=300&rings=true"
    assert "Military Demarcation Line" in [b["name"] for b in data["legend"]["borders"]]


def test_popup_has_border_distances_observations_and_sources(catalogue):
    site_id = "sakkanmol"
    page = catalogue.find_sites(centre=catalogue.place("Seoul"), within_km=150)
    assert site_id in page.sites.index
    data = read_map_data(render_html(catalogue_map(catalogue, page)))
    popup = next(site["popup"] for site in expand_sites(data) if site["id"] == site_id)
    distance_km = page.border_distances[site_id]["mdl"]
    assert ["Military Demarcation Line", f"{distance_km:,.1f} km"] in popup["borders"]
    observed = catalogue.site_observations(site_id)["observed_on"].dropna()
    assert len(observed) and sorted(o["text"].split(":")[0] for o in popup["observations"]) == sorted(map(str, observed))
    cited = catalogue.sources_for(catalogue.site_source_ids(catalogue.site_row(site_id)))
    assert set(popup["source_ids"]) == set(cited.index) <= set(data["sources"])
    urls = [data["sources"][i]["url"] for i in popup["source_ids"] if data["sources"][i]["url"]]
    assert urls and all(u.startswith(("http://", "https://")) for u in urls)


def test_rings_are_geodesic_polygons_not_circles(seoul_html):
    assert "L.circle(" not in seoul_html
    assert "range-ring" in seoul_html and "query-radius" in seoul_html


def _geojson_features(html: str) -> list[dict]:
    """Every GeoJSON feature of the map's overlays (borders, rings, radius), from its data document."""
    features = []
    for overlay in read_map_data(html)["overlays"]:
        for shape in overlay["shapes"]:
            features += shape["geojson"].get("features", [shape["geojson"]])
    return [{**f, "geometry": decode_geometry(f["geometry"])} for f in features]


def _ring_parts(catalogue, site_id: str) -> dict[tuple[str, str], shapely.Geometry]:
    """The drawn range areas and outlines of one site's map, keyed by (missile id, part)."""
    page = SitePage(catalogue.sites.loc[[site_id]], 1, None, catalogue.site_border_distances([site_id]))
    features = _geojson_features(render_html(catalogue_map(catalogue, page, rings=True)))
    return {(f["properties"]["missile_id"], f["properties"]["part"]): shapely.geometry.shape(f["geometry"])
            for f in features if f["properties"].get("site_id") == site_id}


def test_icbm_ring_is_cut_at_the_antimeridian_and_closed_over_the_pole(catalogue):
    site_id = next(s for s in catalogue.sites.index if any(r.get("class") == "ICBM" for r in _rings(catalogue, s)))
    site = catalogue.sites.loc[site_id].geometry
    parts = _ring_parts(catalogue, site_id)
    for ring in (r for r in catalogue.site_rings(site_id) if r["class"] == "ICBM"):
        area, outline = parts[(ring["missile_id"], "area")], parts[(ring["missile_id"], "outline")]
        west, south, east, north = area.bounds
        assert (west, east) == (pytest.approx(-180), pytest.approx(180))  # 10,000+ km from Korea crosses ±180°
        assert north == pytest.approx(90)  # and encloses the North Pole
        assert area.contains(site) and area.is_valid
        coords = shapely.get_coordinates(outline)
        distances_km = geodesy.distance_m(site.x, site.y, coords[:, 0], coords[:, 1]) / 1000
        assert np.allclose(distances_km, ring["range_max_km"], atol=0.01)  # the stroke has no cut edges


def test_min_range_hole_is_drawn(catalogue):
    site = catalogue.sites[~catalogue.sites.geometry.isna()].head(1)
    point = site.geometry.iloc[0]
    ring = {"site_id": site.index[0], "site_name": "x", "missile_id": "hwasong-11da-4-5", "name": "Hwasong-11Da-4.5",
            "class": "SRBM", "range_min_km": 90.0, "range_max_km": 500.0, "range_kind": "maximum",
            "geometry": geodesy.annulus(point.x, point.y, 90_000, 500_000)}
    html = render_html(site_map(site, borders=catalogue.borders, countries=catalogue.countries, rings=[ring]))
    drawn = {f["properties"]["part"]: shapely.geometry.shape(f["geometry"])
             for f in _geojson_features(html) if f["properties"].get("missile_id") == "hwasong-11da-4-5"}
    assert not drawn["area"].contains(point) and len(drawn["area"].interiors) == 1  # the min-range hole
    coords = shapely.get_coordinates(drawn["outline"])
    distances_km = geodesy.distance_m(point.x, point.y, coords[:, 0], coords[:, 1]) / 1000
    assert set(np.round(distances_km, 1)) == {90.0, 500.0}
    assert "Range: Hwasong-11Da-4.5 (SRBM, 90–500 km)" in [o["name"] for o in read_map_data(html)["overlays"]]


def _rings(catalogue, site_id):
    """A site's rings, or none when it has no coordinate."""
    site = catalogue.sites.loc[site_id]
    return [] if site.geometry is None else catalogue.site_rings(site_id)


def test_query_radius_vertices_are_at_the_radius(seoul_html):
    radius = next(f for f in _geojson_features(seoul_html) if "km (geodesic)" in f["properties"].get("label", ""))
    coords = shapely.get_coordinates(shapely.geometry.shape(radius["geometry"]))
    distances_km = geodesy.distance_m(126.978, 37.5665, coords[:, 0], coords[:, 1]) / 1000
    assert distances_km.min() == pytest.approx(300, abs=0.5) and distances_km.max() == pytest.approx(300, abs=0.5)


@pytest.mark.parametrize(("classes", "expected"), [
    ("SRBM;ICBM", "ICBM"), ("MRBM;SRBM", "MRBM"), ("SRBM", "SRBM"), ("", "no class reported"), (None, "no class reported"),
])
def test_sites_are_coloured_by_their_longest_range_class(classes, expected):
    assert site_class({"missile_classes": classes}) == expected


def test_class_colours_are_distinct():
    colours = class_colours(["ICBM", "IRBM", "MRBM", "SRBM", "XYZ", "ABC", "no class reported"])
    assert len(set(colours.values())) == len(colours)


@pytest.mark.parametrize(("count", "clustered"), [(3, False), (60, True)])
def test_many_sites_are_clustered(catalogue, count, clustered):
    located = catalogue.sites[~catalogue.sites.geometry.isna()]
    sites = located.iloc[[i % len(located) for i in range(count)]].copy()
    sites.index = [f"site-{i}" for i in range(count)]
    html = render_html(site_map(sites, borders=catalogue.borders, countries=catalogue.countries))
    data = read_map_data(html)
    assert data["sites"]["cluster"] is clustered and len(expand_sites(data)) == count
    assert ("Leaflet.markercluster" in html) is clustered  # the plugin is inlined only when it is used


def test_site_without_coordinate_is_listed_not_drawn(catalogue):
    sites = catalogue.sites.head(2).copy()
    sites.loc[sites.index[0], "geometry"] = None
    html = render_html(site_map(sites, borders=catalogue.borders, countries=catalogue.countries))
    data = read_map_data(html)
    assert [site["id"] for site in expand_sites(data)] == [sites.index[1]]
    assert data["footer"]["unlocated"] == [sites.iloc[0]["name"]]


# --- the route ---------------------------------------------------------------------------------

def test_map_route_returns_html(client, catalogue):
    response = client.get("/map", params={"near": "Seoul", "within_km": 150, "rings": "true"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    data = read_map_data(response.text)
    assert "Sakkanmol" in [site["name"] for site in expand_sites(data)]
    assert data["footer"]["data_version"] == catalogue.version
    assert data["footer"]["query"] == "GET /map?near=Seoul&within_km=150&rings=true"
    assert any(o["name"].startswith("Range: ") for o in data["overlays"])


@pytest.mark.parametrize(("params", "parameter"), [
    ({"within_km": 100}, "within_km"),
    ({"near": "Atlantis"}, "near"),
    ({"lat": 91, "lon": 0}, "lat"),
    ({"status": "exploded"}, "status"),
    ({"rings": "maybe"}, "rings"),
])
def test_map_route_errors_are_the_one_json_shape(client, params, parameter):
    response = client.get("/map", params=params)
    assert response.status_code == 422
    assert response.json()["error"]["parameter"].split(".")[0] == parameter


@pytest.mark.parametrize(("path", "limit", "status"), [
    ("/map", 100_000, 200), ("/map", 100_001, 422), ("/sites", 1000, 200), ("/sites", 1001, 422),
])
def test_a_map_takes_the_whole_catalogue_and_sites_keep_their_page_limit(client, path, limit, status):
    response = client.get(path, params={"limit": limit})
    assert response.status_code == status
    if status == 422:
        assert response.json()["error"]["parameter"] == "limit"


def test_the_site_array_holds_every_site_once_and_each_text_once(catalogue):
    located = catalogue.sites[~catalogue.sites.geometry.isna()]
    sites = located.iloc[[i % len(located) for i in range(500)]].copy()
    sites.index = sites["id"] = [f"site-{i}" for i in range(len(sites))]
    data = read_map_data(render_html(site_map(sites, borders=catalogue.borders, countries=catalogue.countries)))
    strings = data["sites"]["strings"]
    assert len(strings) == len(set(strings))  # the string table: every text once
    assert len(data["sites"]["rows"]) == len(data["sites"]["popups"]) == 500
    drawn = {site["id"]: site for site in expand_sites(data)}
    assert list(drawn) == list(sites.index)
    for site_id, site in sites.iterrows():
        assert drawn[site_id]["name"] == site["name"]
        assert (drawn[site_id]["lon"], drawn[site_id]["lat"]) == pytest.approx((site.geometry.x, site.geometry.y), abs=1e-5)
        assert dict(drawn[site_id]["popup"]["rows"])["country"] == site["country"]


def test_popups_are_made_once_per_snapshot(catalogue):
    page = catalogue.find_sites(limit=1000)
    first = maps.catalogue_popups(catalogue, page.sites, page.border_distances)
    again = maps.catalogue_popups(catalogue, page.sites, page.border_distances)
    assert all(again[site_id] is first[site_id] for site_id in page.sites.index)  # kept, not made again
    assert set(first) == set(page.sites.index)


def test_rings_are_computed_once_per_point_and_range(catalogue):
    site_id = next(s for s in catalogue.sites.index if _rings(catalogue, s))
    assert [r["geometry"] for r in catalogue.site_rings(site_id)] == [r["geometry"] for r in catalogue.site_rings(site_id)]
    assert all(a["geometry"] is b["geometry"] for a, b in zip(catalogue.site_rings(site_id), catalogue.site_rings(site_id)))


@pytest.mark.parametrize(("accept", "zipped"), [
    ("gzip, deflate", True), ("identity", False), ("gzip;q=0", False), ("br, GZIP;q=0.5", True), ("", False),
])
def test_the_map_is_gzipped_when_the_client_takes_it(client, accept, zipped):
    response = client.get("/map", params={"near": "Seoul", "within_km": 150}, headers={"Accept-Encoding": accept})
    assert response.status_code == 200 and "Accept-Encoding" in response.headers["vary"]
    assert (response.headers.get("content-encoding") == "gzip") is zipped
    assert "Sakkanmol" in [site["name"] for site in expand_sites(read_map_data(response.text))]  # decoded by httpx


def test_folium_circle_is_not_used_for_rings():
    source = (VENDOR_DIR.parent / "maps.py").read_text(encoding="utf-8")
    assert "folium.Circle(" not in source and "Circle(" not in source.replace("CircleMarker(", "")
    assert isinstance(folium.Map(tiles=None), folium.Map)


# --- cities in range and launches ---------------------------------------------------------------

def _map_cities(data) -> dict[str, dict]:
    """The cities of a map's data document by GeoNames id: population, name, country, nearest pairs, pair count."""
    cities = data["cities"]
    s = cities["strings"]
    return {s[row[7]]: {"population": row[2], "name": s[row[3]], "country": s[row[4]], "pairs": row[6],
                        "nearest": [(s[p[0]], s[p[1]], p[2]) for p in row[5]]} for row in cities["rows"]}


def _in_range(client, params) -> list[dict]:
    """Every city GET /cities/in-range answers for a query (paged through)."""
    features, offset = [], 0
    while True:
        body = client.get("/cities/in-range", params={**params, "limit": 1000, "offset": offset}).json()
        features += body["features"]
        offset += 1000
        if offset >= body["numberMatched"]:
            return features


@pytest.mark.parametrize("params", [
    {"near": "Seoul", "within_km": 150},
    {"missile_class": "SRBM"},
    {"near": "Pyongyang", "within_km": 60, "missile_type": "hwasong-6"},
])
def test_the_map_carries_the_cities_in_range_the_catalogue_answers(client, catalogue, params):
    response = client.get("/map", params={**params, "cities": "true"})
    assert response.status_code == 200
    data = read_map_data(response.text)
    drawn = _map_cities(data)
    expected = _in_range(client, params)
    assert expected and set(drawn) == {f["id"] for f in expected}
    for feature in expected:
        city, props = drawn[feature["id"]], feature["properties"]
        assert (city["population"], city["name"], city["country"]) == (props["population"], props["name"], props["country"])
        assert city["pairs"] == len(props["reached_by"])
        nearest = props["reached_by"][0]
        site_name = catalogue.sites.loc[nearest["site_id"], "name"]
        assert city["nearest"][0][0] == site_name and city["nearest"][0][1].startswith(
            catalogue.missiles.loc[nearest["missile_id"], "name"])
        assert city["nearest"][0][2] == pytest.approx(nearest["distance_km"], abs=0.051)
    populations = [city["population"] for city in drawn.values()]
    assert populations == sorted(populations, reverse=True)  # largest first: small circles drawn over large ones
    assert data["cities"]["name"] == f"Cities in range ({len(drawn):,}; {sum(populations):,} people)"
    assert "geonames-cities15000" in data["sources"]
    assert [layer["kind"] for layer in data["legend"]["layers"]] == ["cities"]


def test_cities_and_launches_are_drawn_only_when_asked(client):
    data = read_map_data(client.get("/map", params={"near": "Seoul", "within_km": 150}).text)
    assert data["cities"] is None and data["launches"] is None and data["legend"]["layers"] == []
    assert "geonames-cities15000" not in data["sources"]


def _map_launches(data) -> list[dict]:
    """The launches of a map's data document, in order."""
    launches = data["launches"]
    s = launches["strings"]
    return [{"lon": row[0], "lat": row[1], "year": row[2], "date": s[row[3]], "missile": s[row[4]],
             "facility": s[row[5]], "source_id": s[row[7]], "id": s[row[8]]} for row in launches["rows"]]


@pytest.mark.parametrize("params", [{}, {"as_of": "2010-06-30"}, {"near": "Pyongyang", "within_km": 60}])
def test_the_map_carries_the_launches_the_endpoint_lists_at_its_sites(client, catalogue, params):
    data = read_map_data(client.get("/map", params={**params, "launches": "true"}).text)
    drawn = _map_launches(data)
    sites = [site["id"] for site in expand_sites(data)]
    as_of = {"as_of": params["as_of"]} if "as_of" in params else {}
    listed = [launch for site_id in sites
              for launch in client.get(f"/sites/{site_id}/launches", params=as_of).json()["launches"]]
    assert listed and len(drawn) == len(listed)
    assert sorted(launch["id"] for launch in drawn) == sorted(launch["id"] for launch in listed)
    by_id = {launch["id"]: launch for launch in listed}
    for launch in drawn:
        expected = by_id[launch["id"]]
        assert [launch["lon"], launch["lat"]] == pytest.approx(expected["point"], abs=1e-5)
        assert launch["date"] == expected["launched_on"] and launch["year"] == int(expected["launched_on"][:4])
        assert launch["source_id"] == expected["source_id"] and launch["source_id"] in data["sources"]
        assert launch["facility"] == expected["facility_name"]
    placeholder = set(catalogue.launch_table.frame.index[catalogue.launch_table.frame["cns_facility"] == "unknown"])
    assert placeholder and not placeholder & {launch["id"] for launch in drawn}
    assert [launch["date"] for launch in drawn] == sorted(launch["date"] for launch in drawn)
    assert data["launches"]["years"] == [drawn[0]["year"], drawn[-1]["year"]]
    if "as_of" in params:
        assert drawn[-1]["date"] <= params["as_of"]
    assert [layer["kind"] for layer in data["legend"]["layers"]] == ["launches"]


def test_the_cli_map_draws_cities_and_launches(tmp_path):
    out = tmp_path / "srbm.html"
    result = CliRunner().invoke(cli, ["map", "--missile-class", "SRBM", "--cities", "--launches",
                                      "--as-of", "2016-12-31", "-o", str(out)])
    assert result.exit_code == 0, result.output
    data = read_map_data(out.read_text(encoding="utf-8"))
    assert data["cities"]["rows"] and data["launches"]["rows"]
    assert max(launch["date"] for launch in _map_launches(data)) <= "2016-12-31"
    assert "--cities --launches --as-of 2016-12-31" in data["footer"]["query"]


@pytest.mark.parametrize(("params", "parameter"), [({"cities": "maybe"}, "cities"), ({"launches": "2"}, "launches")])
def test_map_layer_switches_refuse_other_values(client, params, parameter):
    response = client.get("/map", params=params)
    assert response.status_code == 422 and response.json()["error"]["parameter"] == parameter


# --- the command line --------------------------------------------------------------------------

def test_cli_map_writes_one_self_contained_file(tmp_path, catalogue):
    out = tmp_path / "seoul.html"
    result = CliRunner().invoke(cli, ["map", "--near", "Seoul", "--within-km", "150", "--rings", "-o", str(out)])
    assert result.exit_code == 0, result.output
    html = out.read_text(encoding="utf-8")
    assert "Sakkanmol" in html and catalogue.version in html and "range-ring" in html
    assert "missile-sites map --near Seoul --within-km 150 --rings" in html
    assert not re.search(r"<script[^>]+src=", html) and not any(host in html for host in CDN_HOSTS)
    assert f"wrote {out}" in result.output


@pytest.mark.parametrize(("args", "option"), [
    (["--within-km", "100"], "--within-km"),
    (["--near", "Atlantis"], "--near"),
    (["--lat", "91", "--lon", "0"], "--lat"),
    (["--status", "exploded"], "--status"),
])
def test_cli_map_errors_name_the_option(tmp_path, args, option):
    result = CliRunner().invoke(cli, ["map", *args, "-o", str(tmp_path / "x.html")])
    assert result.exit_code == 2
    assert option in result.output
    assert not (tmp_path / "x.html").exists()


# --- drawing helpers ---------------------------------------------------------------------------

@pytest.mark.parametrize(("polygon", "expected_parts", "expected_bounds"), [
    (shapely.Polygon([(179, 0), (-179, 0), (-179, 1), (179, 1)]), 2, (-180, 0, 180, 1)),  # jumps: split
    (shapely.Polygon([(170, 0), (175, 0), (175, 1), (170, 1)]), 1, (170, 0, 175, 1)),  # no jump: as it is
    (shapely.Polygon([(-180, -80), (180, -80), (180, -60), (-180, -60)]), 1, (-180, -80, 180, -60)),  # spans all
])
def test_split_at_antimeridian(polygon, expected_parts, expected_bounds):
    split = split_at_antimeridian(polygon)
    assert len(shapely.get_parts(split)) == expected_parts
    assert split.bounds == pytest.approx(expected_bounds)


@pytest.mark.parametrize(("area", "expected_length"), [
    (shapely.box(170, 0, 180, 10), 30),  # the edge on +180° is a cut, not a range
    (shapely.box(-180, 80, 180, 90), 360),  # edges on ±180° and over the pole are cuts
    (shapely.box(0, 0, 10, 10), 40),  # nothing cut: the whole ring
    (shapely.box(0, 0, 10, 10).difference(shapely.box(2, 2, 4, 4)), 48),  # hole kept
])
def test_ring_outline_drops_cut_edges(area, expected_length):
    assert ring_outline(area).length == pytest.approx(expected_length)


def test_map_query_text_is_not_run_as_a_template(client):
    """Free text cannot reach the map's footer: an unknown parameter is refused (400), its text never evaluated."""
    response = client.get("/map", params={"near": "Seoul", "within_km": "50", "x": "{{ 7*191 }}zz{{ range.__name__ }}"})
    assert response.status_code == 400 and response.json()["error"]["parameter"] == "x"
    assert "1337" not in response.text and "zzrange" not in response.text


# --- memory: a burst of maps is given back ---------------------------------------------------------

BURST_CLIENTS, BURST_ROUNDS, RSS_ALLOWANCE_MB = 15, 3, 150


def _rss_mb(pid: int) -> tuple[int, int]:
    """A process's resident set and its peak, MB (from /proc/PID/status)."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) // 1024, int(fields["VmHWM"].split()[0]) // 1024


@pytest.fixture
def worker(tmp_path):
    """A real uvicorn worker on a temp live copy; yields (pid, base URL)."""
    live = store.ensure_live(tmp_path / "live.gpkg", GEODATA_DIR / "catalogue.gpkg")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "MISSILE_SITES_GPKG": str(live)}
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port",
                                str(port)], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                _fetch(base + "/health")
                break
            except OSError:
                assert process.poll() is None, process.stderr.read().decode()
                time.sleep(0.1)
        yield process.pid, base
    finally:
        process.terminate()
        process.wait(timeout=30)


def _fetch(url: str) -> int:
    """GET a URL and read it all; its status."""
    with urllib.request.urlopen(url, timeout=600) as response:
        response.read()
        return response.status


@pytest.mark.slow
def test_a_burst_of_maps_gives_its_memory_back(worker):
    # Issue 10, item 6: 15 concurrent /map clients took a worker from 337 MB to 1.7 GB, never given back.
    pid, base = worker
    url = base + "/map?rings=true"
    started = _rss_mb(pid)[0]
    assert _fetch(url) == 200  # the first map fills the lasting caches (the land drawing, inlined libraries)
    baseline = _rss_mb(pid)[0]
    figures = []
    for _ in range(BURST_ROUNDS):
        began = time.perf_counter()
        with ThreadPoolExecutor(BURST_CLIENTS) as pool:
            statuses = list(pool.map(_fetch, [url] * BURST_CLIENTS))
        assert statuses == [200] * BURST_CLIENTS
        time.sleep(1)
        figures.append((time.perf_counter() - began, *_rss_mb(pid)))
    print(f"\nworker RSS: {started} MB started, {baseline} MB after one map (baseline)")
    for round_, (seconds, rss, peak) in enumerate(figures, 1):
        print(f"  after burst {round_} of {BURST_CLIENTS} concurrent /map?rings=true ({seconds:.1f} s): "
              f"RSS {rss} MB (+{rss - baseline}), peak {peak} MB")
    assert figures[-1][1] <= baseline + RSS_ALLOWANCE_MB
