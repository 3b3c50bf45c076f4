"""No text from the data ever reaches a template: every text field the API writes x every renderer x payloads.

Issue 10, item 2: a site named `x {{ cycler.__init__.__globals__.os.getpid() }}` printed the server's PID on
`GET /map?rings=true` (ring labels reached a script that branca compiles again as Jinja), `{{7*191}}` printed
1337 and `{% endif %}` made every ringed map answer 500. Here one round of writes puts Jinja, JavaScript and
HTML payloads into every free-text field the API accepts (each value tagged `[field.N]` so it can be found);
then every renderer is read once, parsed as its reader parses it, and each value must come back exactly,
as text: a tag followed by anything but its payload means the text was evaluated or mangled. The maps and
the CLI's PNG run in offline Chromium, which records any dialog, console error or request.
"""

import csv
import html.parser
import io
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app import store
from app.auth import hash_token
from app.queries import SitePage
from app.main import create_app
from app.maps import DATA_SCRIPT, catalogue_map, read_map_data, render_html
from app.settings import GEODATA_DIR, REPO_ROOT, Settings
from app.snapshot import offline_page, open_map

TOKEN = "sweep-editor-token"
EDITOR = {"Authorization": f"Bearer {TOKEN}"}
PAYLOADS = (
    ("jinja {{7*191}}", "{{7*191}}"),
    ("jinja {% endif %}", "{% endif %}"),
    ("jinja getpid()", "{{ cycler.__init__.__globals__.os.getpid() }}"),
    ("js ${...}", "${alert(1)}"),
    ("js </script>", "</script><script>alert(1)</script>"),
    ("js backtick", "`"),
    ("html <img onerror>", "<img src=x onerror=alert(1)>"),
    ("html \"'&<>", "\"'&<>"),
)
FIELDS = (  # every free-text field the API writes (app/models.py), and the /map query the footer repeats
    "site.name", "site.aliases", "site.province", "site.belt_notes", "site.notes",
    "source.title", "source.publisher", "source.url", "source.notes", "observation.notes", "map.query",
)
VOCABULARY_FIELDS = ("belt", "unit_size")  # site fields that take only their vocabulary: a payload is a 422
TAG = re.compile(r"\[([a-z]+\.[a-z_]+)\.(\d+)\]")
MAP_FIELDS = {f for f in FIELDS if f != "source.notes"}  # a map shows everything but a source's notes
SITE_FIELDS = {f for f in FIELDS if f.startswith("site.")}
ALLOWED_TAGS = {  # elements the maps' renderer and the HTML exports build; a payload must add none
    "div", "h4", "h5", "table", "tr", "th", "td", "p", "ul", "ol", "li", "a", "code", "span", "b", "details",
    "summary", "svg", "circle", "polygon", "line", "label", "input", "section", "form", "br",
}
BROWSER_JS = """() => {
    const drawn = window.missileSitesMaps[0];
    const texts = [document.title], hrefs = [];
    const read = (overlay, layer) => {
        let content = overlay.getContent();
        content = typeof content === 'function' ? content(layer) : content;
        if (content instanceof Element) { hrefs.push(...[...content.querySelectorAll('a')].map((a) => a.getAttribute('href'))); }
        return content instanceof Element ? content.textContent : String(content);
    };
    for (const marker of drawn.markers) {
        texts.push(read(marker.getTooltip(), marker));
        if (marker._map) {  // drawn on its own: open its popup for real; in a cluster: build it as opening would
            marker.openPopup();
            texts.push(marker.getPopup().getElement().textContent);
        } else {
            texts.push(read(marker.getPopup(), marker));
        }
    }
    const walk = (layer) => {
        if (layer instanceof L.Marker) { return; }
        if (layer.getTooltip && layer.getTooltip()) {
            if (layer._map) { layer.openTooltip(); texts.push(layer.getTooltip().getElement().textContent); }
            else { texts.push(read(layer.getTooltip(), layer)); }
        }
        if (layer.eachLayer) { layer.eachLayer(walk); }
    };
    Object.values(drawn.overlays).forEach(walk);
    drawn.map.eachLayer(walk);
    for (const box of document.querySelectorAll('.map-box, .leaflet-control-layers')) { texts.push(box.textContent); }
    hrefs.push(...[...document.querySelectorAll('.map-box a')].map((a) => a.getAttribute('href')));
    const tags = new Set([...document.querySelectorAll('.leaflet-popup-content *, .leaflet-tooltip *, .map-box *, .leaflet-control-layers *')]
        .map((e) => e.tagName.toLowerCase()));
    return {texts, hrefs, tags: [...tags], images: document.images.length, scripts: document.scripts.length,
            markers: drawn.markers.length, clustered: !!document.querySelector('.marker-cluster')};
}"""


def value(field: str, i: int) -> str:
    """The text written to a field: its tag, then payload i (for a URL, in its path, without spaces)."""
    payload = PAYLOADS[i][1]
    if field == "source.url":
        return f"https://example.org/[{field}.{i}]/" + (payload.replace(" ", "/") if payload.startswith("<img")
                                                         else payload.replace(" ", ""))
    return f"[{field}.{i}] {payload}"


def _tail(field: str, i: int) -> str:
    """What must follow a field's tag wherever it is shown."""
    full = value(field, i)
    return full[full.index(f"[{field}.{i}]"):]


def findings(texts) -> tuple[set[tuple[str, int]], list[str]]:
    """The (field, payload) values shown exactly in these texts, and every tag followed by anything else."""
    shown, altered = set(), []
    for text in texts:
        for match in TAG.finditer(text):
            key = (match.group(1), int(match.group(2)))
            if key[0] not in FIELDS or key[1] >= len(PAYLOADS):
                continue
            if text.startswith(_tail(*key), match.start()):
                shown.add(key)
            else:
                altered.append(f"{key[0]} / {PAYLOADS[key[1]][0]}: {text[match.start():match.start() + 90]!r}")
    return shown, altered


def json_strings(data) -> list[str]:
    """Every string in a JSON value."""
    if isinstance(data, str):
        return [data]
    if isinstance(data, dict):
        return [t for v in data.values() for t in json_strings(v)]
    if isinstance(data, list):
        return [t for v in data for t in json_strings(v)]
    return []


class _Html(html.parser.HTMLParser):
    """Text nodes (character references decoded), element names and attribute values of an HTML text."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.texts, self.tags, self.attributes = [], set(), []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attributes += [v for _, v in attrs if v]

    def handle_data(self, data):
        self.texts.append(data)


def kml_texts(body: str) -> tuple[list[str], set[str]]:
    """The texts a KML reader shows (names, data values, descriptions as HTML), and the descriptions' elements."""
    texts, tags = [], set()
    for element in ET.fromstring(body.encode()).iter():
        if element.tag.endswith("description") and element.text:
            parsed = _Html(element.text)
            texts += parsed.texts + parsed.attributes
            tags |= parsed.tags
        elif element.text and element.text.strip():
            texts.append(element.text)
    return texts, tags


# --- the writes ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A service on a temp live copy, after one round of writes putting every payload into every field."""
    live = store.ensure_live(tmp_path_factory.mktemp("sweep") / "live.gpkg", GEODATA_DIR / "catalogue.gpkg")
    tokens = [{"name": "sweeper", "role": "editor", "sha256": hash_token(TOKEN)}]
    app = create_app(Settings(gpkg=live, tokens=tokens, write_burst=1000, _env_file=None))
    with TestClient(app, raise_server_exceptions=False) as client:
        sites, refused = [], {}
        for i in range(len(PAYLOADS)):
            source = _post(client, "/sources", {f: value(f"source.{f}", i) for f in ("title", "publisher", "url", "notes")})
            site = _post(client, "/sites", {
                "name": value("site.name", i), "aliases": [value("site.aliases", i)],
                "province": value("site.province", i), "belt_notes": value("site.belt_notes", i),
                "notes": value("site.notes", i), "country": "PRK", "facility_type": "missile_base",
                "lon": 125.6 + 0.15 * i, "lat": 39.4 + 0.1 * (i % 3), "coord_confidence": "approximate",
                "coord_source_id": source, "source_ids": [source], "missile_types": ["hwasong-10"]})
            observation = _post(client, f"/sites/{site}/observations", {
                "observed_on": f"2024-02-0{i + 1}", "kind": "imagery", "status_seen": "active", "source_id": source,
                "notes": value("observation.notes", i)})
            sites.append((site, source, observation))
            for field in VOCABULARY_FIELDS:
                response = client.patch(f"/sites/{site}", json={field: PAYLOADS[i][1]}, headers=EDITOR)
                refused[(field, i)] = (response.status_code, response.json()["error"]["parameter"])
        yield client, live, sites, refused


def _post(client: TestClient, path: str, body: dict) -> str:
    """POST as the editor; the new record's id."""
    response = client.post(path, json=body, headers=EDITOR)
    assert response.status_code == 201, (path, response.text)
    return response.json()["record"]["id"]


def test_a_stored_name_never_runs_on_the_server(written):
    # The reproduction: at 54b74b8 this answered 500 (`{% endif %}`), and before that name was written
    # the page held "[site.name.0] 1337" and "[site.name.2] <the server's PID>".
    client, *_ = written
    response = client.get("/map", params={"rings": "true"})
    assert response.status_code == 200
    assert "[site.name.0] 1337" not in response.text and f"[site.name.2] {os.getpid()}" not in response.text
    assert value("site.name", 0) in response.text and value("site.name", 2) in response.text
    labels = [shape["geojson"]["properties"].get("label", "") for o in read_map_data(response.text)["overlays"]
              for shape in o["shapes"] if shape["geojson"]["type"] == "Feature"]
    assert any(label.startswith(value("site.name", 2) + ": Hwasong-10") for label in labels)  # the ring labels


def test_vocabulary_fields_refuse_payloads(written):
    *_, refused = written
    assert refused == {(f, i): (422, f) for f in VOCABULARY_FIELDS for i in range(len(PAYLOADS))}


# --- every renderer --------------------------------------------------------------------------------


def _get(client: TestClient, path: str, **params):
    """A 200 answer (never a 500)."""
    response = client.get(path, params=params)
    assert response.status_code == 200, (path, params, response.text[:300])
    return response


def _map_query() -> dict:
    """Extra /map parameters whose values are payloads (refused as unknown parameters; the CLI's and the notebook's
    maps repeat their query text in the footer)."""
    return {f"note{i}": value("map.query", i) for i in range(len(PAYLOADS))}


def render_all(client: TestClient, live: Path, sites, folder: Path) -> dict:
    """Every renderer's output once: {renderer: (texts as a reader sees them, raw bodies, elements, map file)}."""
    out = {}
    ids = [s[0] for s in sites]
    refused = client.get("/map", params=_map_query())  # free text cannot reach the footer through the API
    assert refused.status_code == 400 and "1337" not in refused.text
    for name, params in (("/map", {}), ("/map?rings=true", {"rings": "true"})):
        page = _get(client, "/map", **params).text
        out[name] = _map_output(page, folder / f"{len(out)}.html")
    catalogue = client.app.state.live.current()
    whole = SitePage(catalogue.sites, len(catalogue.sites), None, catalogue.site_border_distances(catalogue.sites.index))
    query = " ".join(value("map.query", i) for i in range(len(PAYLOADS)))
    page = render_html(catalogue_map(catalogue, whole, rings=True, query=query, cluster_above=0))
    out["map, clustered"] = _map_output(page, folder / "clustered.html")
    rings = [_get(client, f"/sites/{i}/rings") for i in ids]
    out["/sites/{id}/rings"] = ([t for r in rings for t in json_strings(r.json())], [r.text for r in rings], set(), None)
    kml = _get(client, "/sites", f="kml").text
    out["/sites?f=kml"] = (*_kml(kml), None)
    table = _get(client, "/sites", f="csv").text
    out["/sites?f=csv"] = (_csv_texts(table), [table], set(), None)
    geojson = [_get(client, "/sites"), *(_get(client, f"/sites/{i}") for i in ids)]
    out["GeoJSON /sites, /sites/{id}"] = ([t for r in geojson for t in json_strings(r.json())],
                                          [r.text for r in geojson], set(), None)
    pages = [_get(client, "/collections/sites/items", f="html"), _get(client, "/collections/observations/items", f="html"),
             *(_get(client, f"/collections/sites/items/{i}", f="html") for i in ids),
             *(_get(client, f"/collections/observations/items/{s[2]}", f="html") for s in sites)]
    parsed = [_Html(p.text) for p in pages]
    out["OGC HTML"] = ([t for p in parsed for t in p.texts + p.attributes], [p.text for p in pages],
                       set().union(*(p.tags for p in parsed)) - {"html", "head", "meta", "title", "body", "h1"}, None)
    changes = _get(client, "/changes", limit=1000)
    out["/changes"] = (json_strings(changes.json()), [changes.text], set(), None)
    out["map --png (CLI)"] = _cli_png(live, folder)
    return out


def _map_output(page: str, path: Path):
    """A map page: the strings of its data document; everything outside it must hold no tag at all."""
    path.write_text(page, encoding="utf-8")
    outside = DATA_SCRIPT.sub("", page)
    return json_strings(read_map_data(page)), [page], {"outside the data document"} if TAG.search(outside) else set(), path


def _csv_texts(table: str) -> list[str]:
    """Every CSV cell's text; a list cell (a JSON array) as its items."""
    texts = []
    for cell in (cell for row in csv.reader(io.StringIO(table)) for cell in row):
        try:
            items = json.loads(cell) if cell.startswith("[") else None
        except ValueError:
            items = None
        texts += items if isinstance(items, list) else [cell]
    return texts


def _kml(body: str):
    """KML's texts, raw body and description elements."""
    texts, tags = kml_texts(body)
    return texts, [body], tags


def _cli_png(live: Path, folder: Path):
    """`missile-sites map --rings --png` on the live file (its HTML beside it, opened in Chromium too)."""
    page, png = folder / "cli.html", folder / "cli.png"
    result = subprocess.run(
        [sys.executable, "-c", "from app.cli import main; main()", "map", "--rings", "--gpkg", str(live), "-o", str(page), "--png", str(png)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr  # map_png refuses a page that misbehaved
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    return _map_output(page.read_text(encoding="utf-8"), page)


def browse(pages: dict) -> dict:
    """Each map file opened in one offline Chromium: what it shows and what went wrong."""
    seen = {}
    with offline_page() as (page, log):
        for name, path in pages.items():
            before = len(log.problems)
            open_map(page, path)
            shown = page.evaluate(BROWSER_JS)
            page.wait_for_timeout(200)
            shown["problems"] = log.problems[before:]
            seen[name] = shown
    return seen


def test_every_field_every_renderer_every_payload(written, tmp_path):
    client, live, sites, _ = written
    outputs = render_all(client, live, sites, tmp_path)
    browsed = browse({name: o[3] for name, o in outputs.items() if o[3] is not None})
    expected = {
        "/map": MAP_FIELDS - {"map.query"}, "/map?rings=true": MAP_FIELDS - {"map.query"}, "map, clustered": MAP_FIELDS,
        "/sites/{id}/rings": set(), "/sites?f=kml": SITE_FIELDS | {"source.title", "source.publisher", "source.url"},
        "/sites?f=csv": SITE_FIELDS, "GeoJSON /sites, /sites/{id}": SITE_FIELDS | {
            "observation.notes", "source.title", "source.publisher", "source.url"},
        "OGC HTML": SITE_FIELDS | {"observation.notes"}, "/changes": set(FIELDS) - {"map.query"},
        "map --png (CLI)": MAP_FIELDS - {"map.query"},
    }
    table, failures = {}, []
    for name, (texts, bodies, bad_tags, _) in outputs.items():
        shown, altered = findings(texts)
        extra_tags = bad_tags - ALLOWED_TAGS
        browser = browsed.get(name)
        if browser is not None:  # the maps: what the reader sees must show the same, and run nothing
            seen, seen_altered = findings(browser["texts"])
            altered += [f"in Chromium: {a}" for a in seen_altered]
            shown &= seen | {(f, i) for f, i in shown if f == "source.url"}  # a URL is a link, not text
            failures += [f"{name}: in Chromium: {p}" for p in browser["problems"]]
            failures += [f"{name}: link {h!r}" for h in browser["hrefs"] if not str(h).startswith(("http://", "https://"))]
            extra_tags |= set(browser["tags"]) - ALLOWED_TAGS
            failures += [f"{name}: {browser['images']} images" for _ in range(browser["images"] > 0)]
        for body in bodies:
            evaluated = re.findall(rf"\[[a-z._]+\.\d\] (?:1337|{os.getpid()})\b", body)
            failures += [f"{name}: evaluated {e!r}" for e in evaluated]
        failures += [f"{name}: altered {a}" for a in altered] + [f"{name}: element <{t}>" for t in extra_tags]
        missing = {(f, i) for f in expected[name] for i in range(len(PAYLOADS))} - shown
        failures += [f"{name}: not shown exactly: {f} / {PAYLOADS[i][0]}" for f, i in sorted(missing)]
        table[name] = shown
    _print_table(table, expected, browsed)
    assert failures == []


def _print_table(table: dict, expected: dict, browsed: dict) -> None:
    """Fields x renderers: payloads shown exactly (of 8), '-' where the renderer does not show the field."""
    names = list(table)
    width = max(map(len, FIELDS)) + 2
    print(f"\ntemplate sweep: {len(FIELDS)} fields x {len(names)} renderers x {len(PAYLOADS)} payloads "
          f"({', '.join(label for label, _ in PAYLOADS)})")
    print("renderers: " + "; ".join(f"R{k + 1} {n}{' [Chromium]' if n in browsed else ''}" for k, n in enumerate(names)))
    print("field".ljust(width) + "".join(f"R{k + 1}".rjust(6) for k in range(len(names))))
    checked = 0
    for field in FIELDS:
        cells = []
        for name in names:
            if field in expected[name]:
                count = sum(1 for f, _ in table[name] if f == field)
                checked += len(PAYLOADS)
                cells.append(f"{count}/{len(PAYLOADS)}")
            else:
                cells.append("-")
        print(field.ljust(width) + "".join(c.rjust(6) for c in cells))
    print(f"exact-text checks: {checked} (field, renderer, payload) cells, each also checked for evaluation; "
          f"every renderer checked for 1337/PID, 500s, new elements; "
          f"{len(browsed)} pages in Chromium: dialogs {sum(len([p for p in b['problems'] if 'dialog' in p]) for b in browsed.values())}, "
          f"problems {sum(len(b['problems']) for b in browsed.values())}")
