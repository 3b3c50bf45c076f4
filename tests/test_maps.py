"""Map builders: self-contained HTML, escaped text, geodesic rings and radius, the /map route."""

import json
import re
from pathlib import Path

import folium
import numpy as np
import pytest
from jinja2.utils import htmlsafe_json_dumps
from typer.testing import CliRunner
import shapely
from folium.plugins import MiniMap

from app import geodesy
from app.catalogue import SitePage
from app.cli import cli
from app.maps import (
    VENDOR_DIR, VENDORED_CSS, VENDORED_JS, catalogue_map, class_colours, inert, make_self_contained, render_html,
    ring_outline, safe_url, site_class, site_map, split_at_antimeridian, vendored_css, vendored_js,
)
from tests.mapdata import BENIGN, GENERATED_AT, HOSTILE, HOSTILE_QUERY, HOSTILE_URL, hostile_map

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
    """A map whose every data-derived text is hostile, rendered, without the inlined libraries."""
    html = render_html(hostile_map(catalogue))
    for relative in VENDORED_JS.values():
        html = html.replace(vendored_js(relative), "")
    for relative in VENDORED_CSS.values():
        html = html.replace(vendored_css(relative), "")
    assert "jQuery" not in html and len(html) > 10_000
    return html


# --- escaping ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("<img src=x onerror=alert(1)>", "&lt;img src=x onerror=alert(1)&gt;"),
    ("</script>", "&lt;/script&gt;"),
    ("${document.title=7*7}", "&#36;&#123;document.title=7*7&#125;"),
    ("{{ 7*191 }}{% if 1 %}", "&#123;&#123; 7*191 &#125;&#125;&#123;% if 1 %&#125;"),
    ("`", "&#96;"),
    ("a\\u0041", "a&#92;u0041"),
    ("\"'&", "&quot;&#x27;&amp;"),
    ("Sakkanmol", "Sakkanmol"),
    (None, ""),
    (float("nan"), ""),
])
def test_inert_text(text, expected):
    assert inert(text) == expected


@pytest.mark.parametrize(("url", "expected"), [
    ("https://example.org/a?b=1&c=2", "https://example.org/a?b=1&amp;c=2"),
    ("http://example.org/`${x}`", "http://example.org/&#96;&#36;&#123;x&#125;&#96;"),
    ("javascript:alert(1)", None),
    (" JaVaScRiPt:alert(1)", None),
    ("data:text/html,<script>alert(1)</script>", None),
    ("", None),
    (None, None),
])
def test_safe_url(url, expected):
    assert safe_url(url) == expected


def _without_geojson_data(html: str) -> str:
    """The page less the GeoJSON payloads (JSON literals, whose labels are shown through textContent)."""
    return re.sub(r"_add\(\{.*?\}\);", "_add(DATA);", html, flags=re.DOTALL)


def _own_text(html: str) -> str:
    """The page less its inlined libraries and GeoJSON payloads: the markup and script folium wrote."""
    for relative in VENDORED_JS.values():
        html = html.replace(vendored_js(relative), "")
    return _without_geojson_data(html)


@pytest.mark.parametrize("text", [t for t in HOSTILE if len(t) > 1])
def test_hostile_text_never_reaches_the_page_raw(hostile_html, text):
    assert text not in _without_geojson_data(hostile_html)
    assert inert(text) in hostile_html


@pytest.mark.parametrize("token", ["`", "${", "<script", "</script", "<img", "<title", 'href="javascript'])
def test_hostile_text_adds_no_live_token(catalogue, hostile_html, token):
    # Same map with plain names: any extra backtick, `${`, tag or backslash would come from the data.
    benign_html = _own_text(render_html(hostile_map(catalogue, BENIGN, url="https://example.org/", query="near=x")))
    assert _without_geojson_data(hostile_html).count(token) == benign_html.count(token)


def test_hostile_labels_stay_plain_text_inside_geojson(hostile_html):
    labels = [f["properties"].get("label", "") for f in _geojson_features(hostile_html)]
    assert any(HOSTILE[4] in label for label in labels)  # shown with textContent, so kept verbatim
    assert "textContent = feature.properties.label" in hostile_html
    assert "GeoJsonTooltip" not in hostile_html and "bindTooltip(feature" not in hostile_html


def test_hostile_page_has_no_live_markup(hostile_html):
    assert "onerror=alert" not in hostile_html.replace("&lt;img src=x onerror=alert(1)&gt;", "")
    assert "<script>alert" not in hostile_html
    assert HOSTILE_URL not in hostile_html
    assert HOSTILE_QUERY not in hostile_html
    assert "href=\"javascript:" not in hostile_html
    assert "https://example.org/report?a=1&amp;b=2" in hostile_html


def test_layer_names_are_escaped(hostile_html):
    # Leaflet's layer control writes layer names as HTML, so a missile's name is escaped there too.
    assert htmlsafe_json_dumps(f"Range: {inert(HOSTILE[4])} (SRBM, 300 km)")[:40] in hostile_html


# --- self-contained ----------------------------------------------------------------------------

def test_map_links_nothing_outside(seoul_html):
    assert not re.search(r"<script[^>]+src=", seoul_html)
    assert not re.search(r"<link[^>]+stylesheet", seoul_html)
    assert not re.search(r"""url\((?!["']?(?:data:|#))""", seoul_html)
    for host in CDN_HOSTS:
        assert host not in seoul_html, host


def test_every_vendored_asset_is_inlined(seoul_html):
    assert seoul_html.count("Leaflet 1.9.4") == 1  # leaflet.js's own banner, once
    assert "jQuery v3.7.1" in seoul_html
    for name in ("L.Control.Measure", "leaflet.Control.FullScreen", "L.control.fullscreen", "L.control.scale", "L.control.layers"):
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
    assert seoul_html.count('class=\\"site-marker\\"') == len(located)
    for name in located["name"]:
        assert inert(name) in seoul_html
    assert catalogue.version in seoul_html
    assert "2024-05-01T12:00:00+00:00" in seoul_html
    assert "near=Seoul&amp;within_km=300&amp;rings=true" in seoul_html
    assert "Military Demarcation Line" in seoul_html


def test_popup_has_border_distances_observations_and_sources(catalogue):
    site_id = "sakkanmol"
    page = catalogue.find_sites(centre=catalogue.place("Seoul"), within_km=150)
    assert site_id in page.sites.index
    html = render_html(catalogue_map(catalogue, page))
    distance_km = page.border_distances[site_id]["mdl"]
    assert f"{distance_km:,.1f} km" in html
    observed = catalogue.site_observations(site_id)["observed_on"].dropna()
    assert len(observed) and all(inert(str(day)) in html for day in observed)
    urls = catalogue.sources_for(catalogue.site_source_ids(catalogue.site_row(site_id)))["url"].dropna()
    assert any(f'href=\\"{safe_url(u)}\\"' in html for u in urls if safe_url(u))


def test_rings_are_geodesic_polygons_not_circles(seoul_html):
    assert "L.circle(" not in seoul_html
    assert "range-ring" in seoul_html and "query-radius" in seoul_html


def _geojson_features(html: str) -> list[dict]:
    """Every GeoJSON feature folium embedded with addData(...)."""
    features = []
    for blob in re.findall(r"_add\((\{.*?\})\);", html, flags=re.DOTALL):
        data = json.loads(blob)
        features += data.get("features", [data])
    return features


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
    assert htmlsafe_json_dumps("Range: Hwasong-11Da-4.5 (SRBM, 90–500 km)") in html  # the layer's name


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
    assert ("L.markerClusterGroup(" in html) is clustered
    assert html.count('class=\\"site-marker\\"') == count


def test_site_without_coordinate_is_listed_not_drawn(catalogue):
    sites = catalogue.sites.head(2).copy()
    sites.loc[sites.index[0], "geometry"] = None
    html = render_html(site_map(sites, borders=catalogue.borders, countries=catalogue.countries))
    assert html.count('class=\\"site-marker\\"') == 1
    assert "Not drawn (no sourced coordinate): " + inert(sites.iloc[0]["name"]) in html


# --- the route ---------------------------------------------------------------------------------

def test_map_route_returns_html(client, catalogue):
    response = client.get("/map", params={"near": "Seoul", "within_km": 150, "rings": "true"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "Sakkanmol" in response.text and catalogue.version in response.text
    assert "GET /map?near=Seoul&amp;within_km=150&amp;rings=true" in response.text
    assert "range-ring" in response.text


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


def test_folium_circle_is_not_used_for_rings():
    source = (VENDOR_DIR.parent / "maps.py").read_text(encoding="utf-8")
    assert "folium.Circle(" not in source and "Circle(" not in source.replace("CircleMarker(", "")
    assert isinstance(folium.Map(tiles=None), folium.Map)


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
