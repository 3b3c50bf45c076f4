"""Generated maps in a real browser: Debian's Chromium, headless, with the network cut off.

Fails on any console error, uncaught page error, dialog (alert) or request that is not file:/data:.
Screenshots are written to build/screenshots/ and their paths printed.
"""

import re
from pathlib import Path

import pytest
from pyproj import Geod

from app.queries import SitePage
from app.maps import catalogue_map, read_map_data, render_html
from app.settings import REPO_ROOT
from app.snapshot import map_png, offline_page, open_map
from tests.mapdata import HOSTILE, HOSTILE_QUERY, hostile_map

pytestmark = pytest.mark.slow  # a real browser, client or fuzzer

SCREENSHOTS = REPO_ROOT / "build" / "screenshots"
COUNT_JS = """() => ({
    markers: document.querySelectorAll('.site-marker:not(.world-copy)').length,
    clusters: document.querySelectorAll('.marker-cluster').length,
    in_clusters: [...document.querySelectorAll('.marker-cluster span')].reduce((n, e) => n + Number(e.textContent), 0),
    rings: document.querySelectorAll('path.range-ring:not(.world-copy)').length,
    areas: document.querySelectorAll('path.range-area:not(.world-copy)').length,
    radius: document.querySelectorAll('path.query-radius:not(.world-copy)').length,
    mdl: document.querySelectorAll('path.border-mdl:not(.world-copy)').length,
    dmz: document.querySelectorAll('path.border-dmz_edge:not(.world-copy)').length,
    land_borders: document.querySelectorAll('path.border-land_border:not(.world-copy)').length,
    land: document.querySelectorAll('.leaflet-basemap-pane path').length,
    images: document.querySelectorAll('img').length,
    footer: (document.querySelector('.map-box.footer') || {}).textContent || '',
    legend: (document.querySelector('.map-box.legend') || {}).textContent || '',
})"""
DRAWN_JS = """() => {
    const box = (selector) => [...document.querySelectorAll(selector)].filter((e) => {
        const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0;
    }).length;
    const one = ':not(.world-copy)';  // the world itself (a view across ±180° also draws its copies east and west)
    return {markers: box(`.site-marker${one} svg`), rings: box(`path.range-ring${one}`), mdl: box(`path.border-mdl${one}`),
            copies: box('.world-copy')};
}"""


def _screenshot(page, name: str) -> Path:
    """Write a screenshot under build/screenshots and print where."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    print(f"\nscreenshot: {path}")
    return path


def _load(tmp_path: Path, html: str, name: str):
    """Write a map and open it offline; yields the page and its log."""
    path = tmp_path / f"{name}.html"
    path.write_text(html, encoding="utf-8")
    return path


def _whole_page(catalogue) -> SitePage:
    """Every site of the catalogue as one page."""
    return SitePage(catalogue.sites, len(catalogue.sites), None, catalogue.site_border_distances(catalogue.sites.index))


def test_whole_catalogue_with_rings_renders_offline(catalogue, tmp_path):
    page_data = _whole_page(catalogue)
    html = render_html(catalogue_map(catalogue, page_data, rings=True, query="the whole catalogue, with rings"))
    path = _load(tmp_path, html, "catalogue-rings")
    located = int((~catalogue.sites.geometry.isna()).sum())
    ring_count = sum(len(catalogue.site_rings(s)) for s in catalogue.sites.index[~catalogue.sites.geometry.isna()])
    with offline_page() as (page, log):
        open_map(page, path)
        counts = page.evaluate(COUNT_JS)
        drawn = page.evaluate(DRAWN_JS)
        shot = _screenshot(page, "catalogue-rings")
        measured = _measure(page)
        page.evaluate("() => Object.values(window).find((v) => v instanceof L.Map).setView([35, 170], 1, {animate: false})")
        page.wait_for_timeout(400)
        world = page.evaluate(DRAWN_JS)
        _screenshot(page, "catalogue-rings-world")
    assert log.problems == []
    assert counts["markers"] + counts["in_clusters"] == located > 0
    assert counts["rings"] == counts["areas"] == ring_count > 0
    assert counts["mdl"] == 1 and counts["dmz"] == 2 and counts["land_borders"] >= 1
    assert counts["land"] >= 1
    assert drawn["markers"] > 0 and drawn["rings"] > 0 and drawn["mdl"] == 1
    assert world["rings"] == ring_count  # zoomed out over the Pacific, every ring has a drawn outline
    assert catalogue.version in counts["footer"] and "the whole catalogue" in counts["footer"]
    assert "ICBM" in counts["legend"]
    assert shot.stat().st_size > 20_000
    assert "Kilometers" in measured[0]  # the measure tool works offline (its images are inlined)
    (lat1, lon1), (lat2, lon2) = measured[1]
    expected_km = Geod(ellps="WGS84").inv(lon1, lat1, lon2, lat2)[2] / 1000
    shown_km = float(re.search(r"([\d.,]+) Kilometers", measured[0]).group(1).replace(",", ""))
    assert shown_km == pytest.approx(expected_km, abs=0.01)  # the ruler measures on WGS84, not on a sphere


def _measure(page) -> tuple[str, list]:
    """Measure a line with the measure tool; the result popup's text and the clicked points (lat, lon)."""
    page.locator(".leaflet-control-measure").hover()
    page.click(".leaflet-control-measure .js-start")
    page.mouse.click(500, 400)
    page.mouse.click(700, 450)
    page.click(".leaflet-control-measure .js-finish")
    points = page.evaluate(
        "() => { const m = Object.values(window).find((v) => v instanceof L.Map);"
        " const box = m.getContainer().getBoundingClientRect();"
        " return [[500, 400], [700, 450]].map(([x, y]) => m.containerPointToLatLng([x - box.left, y - box.top]))"
        ".map((p) => [p.lat, p.lng]); }"
    )
    return page.locator(".leaflet-measure-resultpopup").inner_text(timeout=5_000), points


def test_seoul_radius_map_from_the_route_renders_offline(client, tmp_path):
    response = client.get("/map", params={"near": "Seoul", "within_km": 300, "rings": "true"})
    assert response.status_code == 200
    path = _load(tmp_path, response.text, "seoul-300km")
    with offline_page() as (page, log):
        open_map(page, path)
        counts = page.evaluate(COUNT_JS)
        page.locator(".site-marker").first.click()
        popup = page.locator(".leaflet-popup-content").inner_text(timeout=5_000)
        page.wait_for_timeout(500)  # let the popup finish fading in before the screenshot
        _screenshot(page, "seoul-300km-rings")
    assert log.problems == []
    assert counts["radius"] == 1 and counts["markers"] >= 2 and counts["rings"] >= 2
    assert "Distance to borders" in popup and "Sources" in popup and "km" in popup


def test_hostile_names_stay_inert_in_the_browser(catalogue, tmp_path):
    path = _load(tmp_path, render_html(hostile_map(catalogue)), "hostile")
    with offline_page() as (page, log):
        open_map(page, path)
        shown = page.evaluate(SHOW_TEXT_JS)
        page.wait_for_timeout(300)
        title = page.title()
        after = page.evaluate(COUNT_JS)
        injected = page.evaluate("() => document.querySelectorAll('.leaflet-popup-content img, "
                                 ".leaflet-popup-content script, .leaflet-tooltip img, .map-box img, "
                                 ".leaflet-control-layers img, .leaflet-control-layers script').length")
        layers = page.locator(".leaflet-control-layers").text_content()
        _screenshot(page, "hostile-names")
    assert log.problems == []  # no alert() dialog, no error, no request
    assert title == f"missile-sites map: {HOSTILE_QUERY}"  # `${document.title=7*7}` did not run
    assert len(shown) == len(HOSTILE)
    assert sorted(s["tooltip"] for s in shown) == sorted(t.strip() for t in HOSTILE)
    assert sorted(s["title"] for s in shown) == sorted(t.strip() for t in HOSTILE)
    assert all("javascript:" not in s["links"] for s in shown)
    assert injected == 0 and after["images"] == 0
    assert HOSTILE_QUERY in after["footer"]
    assert f"Range: {HOSTILE[4]} (SRBM, 300 km)" in layers  # layer names are text too
    assert f"Query radius: 300 km of {HOSTILE[1]}" in layers


# Each site marker's tooltip text and popup title, shown through Leaflet (clicks could hit an overlapping marker).
SHOW_TEXT_JS = """() => {
    const shown = [];
    for (const layer of window.missileSitesMaps[0].markers) {
        layer.openTooltip();
        layer.openPopup();
        const popup = layer.getPopup().getElement();
        shown.push({
            tooltip: layer.getTooltip().getElement().innerText.trim(),
            title: popup.querySelector('h4').innerText,
            links: [...popup.querySelectorAll('a')].map((a) => a.getAttribute('href')).join(' '),
        });
    }
    return shown;
}"""


def test_png_of_a_map(catalogue):
    html = render_html(catalogue_map(catalogue, _whole_page(catalogue), query="png"))
    png = map_png(html, width=900, height=600)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_a_page_that_asks_the_network_is_caught(tmp_path):
    path = tmp_path / "leaky.html"
    path.write_text('<html><body><div class="leaflet-container"><div class="leaflet-map-pane"></div></div>'
                    '<img src="https://tile.openstreetmap.org/1/1/1.png"><script>console.error("boom")</script>'
                    "</body></html>", encoding="utf-8")
    with offline_page() as (page, log):
        open_map(page, path, settle_ms=300)
    assert any("tile.openstreetmap.org" in url for url in log.blocked_requests)
    assert log.console_errors and any("boom" in e for e in log.console_errors)


@pytest.fixture(autouse=True)
def _chromium_is_installed():
    """These tests need Debian's chromium; the README's test command installs it."""
    from app.snapshot import chromium_path

    assert Path(chromium_path()).exists()


def test_cli_png(tmp_path):
    from typer.testing import CliRunner

    from app.cli import cli

    out = tmp_path / "seoul.png"
    result = CliRunner().invoke(cli, ["map", "--near", "Seoul", "--within-km", "150", "--rings", "--png", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "map.html").exists()


def test_a_clustered_map_renders_every_site_offline(catalogue, tmp_path):
    import geopandas as gpd
    import numpy as np

    real = catalogue.sites[~catalogue.sites.geometry.isna()]
    rng = np.random.default_rng(5)
    sites = real.iloc[rng.integers(0, len(real), 300)].copy()
    sites = sites.set_geometry(gpd.points_from_xy(rng.uniform(124, 131, 300), rng.uniform(33, 43, 300), crs=sites.crs))
    sites.index = sites["id"] = [f"many-{i:03d}" for i in range(300)]
    page_data = SitePage(sites, len(sites), None, {site_id: {} for site_id in sites.index})
    path = _load(tmp_path, render_html(catalogue_map(catalogue, page_data, query="300 sites, clustered")), "clustered")
    with offline_page() as (page, log):
        open_map(page, path)
        counts = page.evaluate(COUNT_JS)
        _screenshot(page, "clustered")
    assert log.problems == []  # before maxZoom was set, Leaflet.markercluster threw and drew no marker
    assert counts["clusters"] > 0 and counts["markers"] + counts["in_clusters"] == 300


# Where an ICBM's range areas and its site are drawn (Leaflet's clipped rings, _parts, in layer pixels) in the view,
# west and east of the ±180° line nearest the centre.
SIDES_JS = """(siteId) => {
    const drawn = window.missileSitesMaps[0], map = drawn.map, box = map.getContainer().getBoundingClientRect();
    const line = map.latLngToLayerPoint([0, map.getCenter().lng < 0 ? -180 : 180]).x;
    const left = map.containerPointToLayerPoint([0, 0]).x, right = map.containerPointToLayerPoint(map.getSize()).x;
    const spans = [];  // [west, east] of each drawn part, in layer pixels
    const walk = (layer) => {
        if (layer._parts) {
            layer._parts.forEach((part) => spans.push([Math.min(...part.map((p) => p.x)), Math.max(...part.map((p) => p.x))]));
        }
        if (layer.eachLayer) { layer.eachLayer(walk); }
    };
    Object.keys(drawn.overlays).filter((name) => name.includes('ICBM')).forEach((name) => walk(drawn.overlays[name]));
    const markers = [...document.querySelectorAll(`.site-marker[data-site-id="${siteId}"]`)]
        .map((e) => e.getBoundingClientRect()).filter((r) => r.width > 0 && r.left >= box.left && r.right <= box.right)
        .map((r) => map.containerPointToLayerPoint([r.left + r.width / 2 - box.left, 0]).x);
    return {west: spans.some(([w, e]) => Math.max(w, left) < Math.min(e, line) - 1),
            east: spans.some(([w, e]) => Math.max(w, line) + 1 < Math.min(e, right)),
            sites_west: markers.filter((x) => x < line).length, sites_east: markers.filter((x) => x > line).length};
}"""


def test_a_pacific_view_shows_rings_and_sites_on_both_sides_of_the_antimeridian(catalogue, tmp_path):
    """Centred on 170°W (then 170°E), an ICBM's rings are drawn west and east of ±180° and its site shows west of it:
    Leaflet draws each layer in one world only, so the map draws the next world's copy once the view reaches it."""
    site_id = "sinpung-dong"
    sites = catalogue.sites.loc[[site_id]]
    assert "ICBM" in sites.iloc[0]["missile_classes"]
    page_data = SitePage(sites, 1, None, catalogue.site_border_distances(sites.index))
    path = _load(tmp_path, render_html(catalogue_map(catalogue, page_data, rings=True, query="an ICBM site")), "pacific")
    with offline_page() as (page, log):
        open_map(page, path)
        before = page.evaluate(COUNT_JS)
        sides = {}
        for lon in (-170, 170):
            page.evaluate(f"() => window.missileSitesMaps[0].map.setView([30, {lon}], 3, {{animate: false}})")
            page.wait_for_timeout(400)
            sides[lon] = page.evaluate(SIDES_JS, site_id)
            page.set_viewport_size({"width": 1400, "height": 901 + (lon > 0)})  # else headless Chromium shows
            page.wait_for_timeout(300)  # the vector layer as painted before a jump this long (the data is right)
            _screenshot(page, f"pacific-{'west' if lon < 0 else 'east'}")
        after = page.evaluate(COUNT_JS)
    assert log.problems == []
    for lon, seen in sides.items():
        assert seen["west"] and seen["east"], (lon, seen)
        assert seen["sites_west"] == 1 and seen["sites_east"] == 0, (lon, seen)  # the site is west of the line
    assert before["rings"] == after["rings"] > 0 and after["markers"] == 1  # copies are extra, the world unchanged


LAYERS_JS = """() => {
    const drawn = window.missileSitesMaps[0];
    const cities = drawn.cityMarkers.map((m) => ({population: m.city.population, radius: m.getRadius(),
        width: m._path ? m._path.getBoundingClientRect().width : 0}));
    const shown = () => ({layer: drawn.launchLayer.getLayers().length,
        visible: document.querySelectorAll('.launch-marker:not(.world-copy)').length,
        in_clusters: [...document.querySelectorAll('.launch-cluster-icon:not(.world-copy) .launch-cluster')].reduce((n, e) => n + Number(e.textContent), 0),
        label: document.querySelector('.launch-year-label').textContent});
    return {cities, svg: document.querySelectorAll('path.city-marker:not(.world-copy)').length, shown: shown(),
            slider: {min: Number(drawn.launchSlider.min), max: Number(drawn.launchSlider.max)},
            legend: document.querySelector('.map-box.legend').textContent};
}"""
SHOWN_JS = """() => {
    const drawn = window.missileSitesMaps[0];
    return {layer: drawn.launchLayer.getLayers().length,
            visible: document.querySelectorAll('.launch-marker:not(.world-copy)').length,
            in_clusters: [...document.querySelectorAll('.launch-cluster-icon:not(.world-copy) .launch-cluster')].reduce((n, e) => n + Number(e.textContent), 0),
            label: document.querySelector('.launch-year-label').textContent};
}"""

SETTLED_JS = f"""() => {{ const s = ({SHOWN_JS})(); return s.layer === s.visible + s.in_clusters; }}"""


def test_cities_sized_by_population_and_launches_filtered_by_the_slider(client, tmp_path):
    response = client.get("/map", params={"missile_class": "SRBM", "cities": "true", "launches": "true"})
    assert response.status_code == 200
    path = _load(tmp_path, response.text, "srbm-cities-launches")
    years = sorted(row[2] for row in read_map_data(response.text)["launches"]["rows"])
    cut = years[len(years) // 2] - 1  # a year that keeps some launches and drops others
    with offline_page() as (page, log):
        open_map(page, path)
        page.wait_for_function(SETTLED_JS, timeout=15_000)  # the clusters' zoom animation has ended
        before = page.evaluate(LAYERS_JS)
        slider = page.locator("input.launch-year")
        slider.fill(str(cut))  # sets the value and fires `input`, as dragging does
        page.wait_for_function(SETTLED_JS, timeout=15_000)
        after = page.evaluate(SHOWN_JS)
        _screenshot(page, "srbm-cities-launches")
        page.locator(".launch-year").evaluate("(e) => { e.value = e.min; e.dispatchEvent(new Event('input')); }")
        page.wait_for_function(SETTLED_JS, timeout=15_000)
        first = page.evaluate(SHOWN_JS)
    assert log.problems == []
    cities = before["cities"]
    assert cities and before["svg"] == len(cities)  # every city drawn as its own circle
    by_population = sorted(cities, key=lambda c: c["population"])
    assert all(a["radius"] <= b["radius"] for a, b in zip(by_population, by_population[1:]))
    assert by_population[0]["radius"] < by_population[-1]["radius"]
    smallest, largest = by_population[0], by_population[-1]
    assert 0 < smallest["width"] < largest["width"]  # drawn on the page, larger for the larger city
    assert before["slider"] == {"min": years[0], "max": years[-1]}
    assert before["shown"]["layer"] == len(years) == before["shown"]["visible"] + before["shown"]["in_clusters"]
    assert f"{len(years)} of {len(years)}" in before["shown"]["label"]
    kept = sum(1 for y in years if y <= cut)
    assert 0 < kept < len(years)
    assert after["layer"] == kept == after["visible"] + after["in_clusters"]
    assert f"up to {cut}: {kept} of {len(years)}" in after["label"]
    assert first["layer"] == sum(1 for y in years if y == years[0]) < kept
    assert "Cities in range" in before["legend"] and "Launches (CNS)" in before["legend"]


POPUP_TEXT_JS = """() => {
    const drawn = window.missileSitesMaps[0], texts = [];
    for (const layer of [...drawn.cityMarkers, ...drawn.launchMarkers]) {
        const content = layer.getPopup().getContent();
        const popup = typeof content === 'function' ? content(layer) : content;
        const tooltip = layer.getTooltip().getContent();
        texts.push({popup: popup.textContent, tags: [...popup.querySelectorAll('*')].map((e) => e.tagName.toLowerCase()),
                    tooltip: (typeof tooltip === 'function' ? tooltip(layer) : tooltip).textContent});
    }
    return {texts, layers: document.querySelector('.leaflet-control-layers').textContent,
            label: document.querySelector('.launch-year-label').textContent};
}"""


def test_hostile_city_and_launch_texts_stay_text_in_the_browser(catalogue, tmp_path):
    from app.maps import site_map
    from tests.mapdata import hostile_city_and_launch_layers, hostile_sites

    cities, launches = hostile_city_and_launch_layers()
    html = render_html(site_map(hostile_sites(catalogue), borders=catalogue.borders, countries=catalogue.countries,
                                cities=cities, launches=launches))
    path = _load(tmp_path, html, "hostile-cities-launches")
    with offline_page() as (page, log):
        open_map(page, path)
        shown = page.evaluate(POPUP_TEXT_JS)
        images = page.evaluate("() => document.images.length")
    assert log.problems == [] and images == 0  # no alert() dialog, no error, no request, no injected image
    popups = " ".join(t["popup"] for t in shown["texts"])
    tooltips = [t["tooltip"] for t in shown["texts"]]
    for text in HOSTILE:
        assert popups.count(text) >= 3  # city name, country, site, missile; launch missile, facility, outcome
        assert text in tooltips  # each city's tooltip is its name
    assert not {tag for t in shown["texts"] for tag in t["tags"]} - {"h4", "h5", "table", "tr", "th", "td", "ul",
                                                                    "li", "p", "ol", "a", "code"}
    assert f"Launches up to {2000 + len(HOSTILE) - 1}: {len(HOSTILE)} of {len(HOSTILE)}" == shown["label"].strip()
