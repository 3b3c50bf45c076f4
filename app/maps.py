"""Pure map builders: catalogue data in, a self-contained `folium.Map` out; nothing here writes a file.

The route, the CLI and the notebook all call `catalogue_map` (which gathers a query's data from a
catalogue) or `site_map` (which takes the data itself). `render_html` turns a map into one HTML file
with Leaflet and every plugin inlined from `app/vendor/`, so it opens with no network at all.

Conventions: longitude before latitude in geometries, distances in km in names (`radius_km`), range
rings and the query radius as geodesic polygons on WGS84 (`app.geodesy`), cut at ±180°.

Data never becomes code. folium/branca compile every rendered script once more as a Jinja template,
so no text from the data is given to folium at all: the builders gather it, as plain text, into one
JSON document (`MapData`, serialised by `script_json`) that is written into the page as it is, in a
`<script type="application/json">` element; `app/maps.js`, the same for every map, draws the layers,
markers, popups, tooltips, legend, footer and title from it with DOM text nodes, never as HTML.
folium draws only the empty map, its panes and controls, from constants.
"""

from __future__ import annotations

import base64
import gc
import hashlib
import json
import mimetypes
import re
import secrets
import threading
from collections import OrderedDict
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import lru_cache, wraps
from pathlib import Path
from urllib.parse import urlsplit

import folium
import numpy as np
import pandas as pd
import shapely
import shapely.affinity
from branca.element import Element
from folium.elements import JSCSSMixin
from folium.plugins import Fullscreen, MeasureControl
from shapely.geometry import mapping

from app import geodesy
from app.queries import has_point
from app.vocab import CNS_PLACEHOLDER, decode_list

VENDOR_DIR = Path(__file__).resolve().parent / "vendor"
# folium's resource names -> the vendored file inlined in their place (see app/vendor/README.md).
VENDORED_JS = {
    "leaflet": "leaflet/dist/leaflet.js",
    "markerclusterjs": "leaflet.markercluster/dist/leaflet.markercluster.js",
    "leaflet_measure_js": "leaflet-measure/dist/leaflet-measure.min.js",
    "Control.Fullscreen.js": "leaflet.fullscreen/Control.FullScreen.js",
}
VENDORED_CSS = {
    "leaflet_css": "leaflet/dist/leaflet.css",
    "markerclustercss": "leaflet.markercluster/dist/MarkerCluster.css",
    "markerclusterdefaultcss": "leaflet.markercluster/dist/MarkerCluster.Default.css",
    "leaflet_measure_css": "leaflet-measure/dist/leaflet-measure.css",
    "Control.FullScreen.css": "leaflet.fullscreen/Control.FullScreen.css",
}
GEODESIC_JS = "geographiclib-geodesic/geographiclib-geodesic.min.js"
# leaflet-measure measures on a sphere (R = 6371 km); its two formulas are replaced by GeographicLib's on WGS84.
MEASURE_PATCHES = (
    ("h=function(a,b){var c=f.degrees.toRadians(a[0]-b[0]),d=f.degrees.toRadians(a[1]-b[1]),"
     "g=f.degrees.toRadians(a[1]),h=f.degrees.toRadians(b[1]),i=Math.sin(c/2),j=Math.sin(d/2),"
     "k=j*j+i*i*Math.cos(g)*Math.cos(h);return 2*e*Math.atan2(Math.sqrt(k),Math.sqrt(1-k))}",
     "h=function(a,b){return geodesic.Geodesic.WGS84.Inverse(a[1],a[0],b[1],b[0]).s12}"),
    ("i=function(a){var b,c,d,g,h=0;for(b=0,c=a.length;b<c;b+=1)d=a[b],g=a[(b+1)%a.length],"
     "h+=f.degrees.toRadians(g[0]-d[0])*(2+Math.sin(f.degrees.toRadians(d[1]))+Math.sin(f.degrees.toRadians(g[1])));"
     "return Math.abs(h*e*e/2)}",
     "i=function(a){var p=geodesic.Geodesic.WGS84.Polygon(!1);a.forEach(function(c){p.AddPoint(c[1],c[0])});"
     "return Math.abs(p.Compute(!1,!0).area)}"),
)
# folium.Map's defaults for jQuery (folium's own popups), awesome-marker icons and Bootstrap; these maps use none.
UNUSED_DEFAULTS = {
    "jquery", "bootstrap", "awesome_markers", "bootstrap_css", "glyphicons_css", "awesome_markers_font_css",
    "awesome_markers_css", "awesome_rotate_css",
}

CLASS_ORDER = ("ICBM", "IRBM", "MRBM", "SRBM", "SLBM", "GLCM", "HGV")
CLASS_COLOURS = {
    "ICBM": "#b2182b", "IRBM": "#e66101", "MRBM": "#7b3294", "SRBM": "#2166ac", "SLBM": "#1b7837",
    "GLCM": "#8c510a", "HGV": "#c51b7d",
}
OTHER_COLOURS = ("#01665e", "#762a83", "#b35806", "#4d9221", "#5e3c99")
NO_CLASS_COLOUR = "#636363"
NO_CLASS = "no class reported"
STATUS_SHAPES = {
    "active": "filled circle",
    "inactive": "hollow circle",
    "under_construction": "triangle",
    "unknown": "diamond, dashed outline",
}
BORDER_STYLES = {
    "mdl": {"color": "#d7191c", "weight": 3, "opacity": 0.95},
    "dmz_edge": {"color": "#fdae61", "weight": 2, "opacity": 0.95, "dashArray": "6 4"},
    "land_border": {"color": "#404040", "weight": 1.2, "opacity": 0.8},
}
BORDER_LABELS = {"mdl": "Military Demarcation Line", "dmz_edge": "DMZ edges", "land_border": "Land borders"}
LAND_STYLE = {"stroke": False, "fillColor": "#f2efe4", "fillOpacity": 1, "interactive": False}
SEA_COLOUR = "#c9dbe8"
CLUSTER_ABOVE = 40
DISPLAY_DECIMALS = 5  # about a metre: coordinates drawn on the map, never those measured on
# Drawing only (distances are measured on the GeoPackage's full geometries): land and land borders are
# detailed in the focus area around the query, coarse elsewhere; the MDL and DMZ edges always in full.
FOCUS_MARGIN_DEG = 1.0
FOCUS_MAX_SPAN_DEG = (50.0, 35.0)
DETAIL = {"tolerance_deg": 0.004, "decimals": 3}
CELL_DEG = 5.0  # the detail layers are cut into cells this size once; a map takes the cells of its focus
CELLS = (int(360 // CELL_DEG), int(180 // CELL_DEG))
COARSE = {"tolerance_deg": 0.25, "decimals": 2, "min_area_deg2": 0.2}
MAX_ZOOM = 19  # the online tile layers' (app/maps.js); Leaflet.markercluster needs the map to have one
VERSION_NOTE = "the build id stored in the GeoPackage, then +N for the last change applied, @day for as_of"
MAP_JS = Path(__file__).resolve().parent / "maps.js"
DATA_SCRIPT = re.compile(r'<script type="application/json" id="(missile-sites-data-[0-9a-f]+)">(.*?)</script>', re.DOTALL)
# JSON inside a <script> element: no "<" (so no "</script" or "<!--"), no ">" or "&", and no line separators.
SCRIPT_ESCAPES = (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029"))
MARKERCLUSTER_JS = [("markerclusterjs", "leaflet.markercluster.js")]
MARKERCLUSTER_CSS = [("markerclustercss", "MarkerCluster.css"), ("markerclusterdefaultcss", "MarkerCluster.Default.css")]
POPUP_CSS = """
.site-icon { background: none; border: none; }
.site-popup { font: 12px/1.35 system-ui, sans-serif; max-height: 22em; overflow-y: auto; }
.site-popup h4 { margin: 0 0 .3em; font-size: 14px; } .site-popup h5 { margin: .6em 0 .2em; }
.site-popup th { text-align: left; padding-right: .6em; font-weight: 600; vertical-align: top; }
.site-popup ul, .site-popup ol { margin: 0; padding-left: 1.3em; }
.map-box { background: rgba(255,255,255,.92); padding: 5px 8px; border-radius: 4px;
  font: 11px/1.35 system-ui, sans-serif; box-shadow: 0 1px 4px rgba(0,0,0,.35); max-width: 40em; }
.map-box.legend { max-width: 17em; } .map-box code { word-break: break-all; }
.map-box h4 { margin: 0 0 .3em; font-size: 12px; }
.map-box .swatch { display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: -2px; }
.map-box svg { vertical-align: -4px; margin-right: 4px; }
.map-box details { max-height: 14em; overflow-y: auto; }
.launch-icon { background: none; border: none; } .launch-marker svg { display: block; }
.launch-cluster-icon { background: rgba(230,81,0,.35); border-radius: 50%; }
.launch-cluster { font: bold 11px/26px system-ui, sans-serif; text-align: center; color: #3e2723; }
.map-box.launch-slider input { width: 14em; }
"""


# --- the one way data enters a map -------------------------------------------------------------


def script_json(data) -> str:
    """`data` as JSON that is inert inside an HTML <script> element (`<`, `>`, `&`, U+2028/9 escaped as \\uXXXX).

    A `Fragment` anywhere in `data` is written as its text (JSON made once by `script_json` and kept).

    >>> script_json({"name": "</script><b>&"})
    '{"name":"\\\\u003c/script\\\\u003e\\\\u003cb\\\\u003e\\\\u0026"}'
    """
    fragments: list[str] = []
    nonce = secrets.token_hex(12)

    def placeholder(value):
        if not isinstance(value, Fragment):
            raise TypeError(f"not JSON: {type(value).__name__}")
        fragments.append(value.text)
        return f"fragment:{nonce}:{len(fragments) - 1}"

    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=placeholder)
    for character, escape in SCRIPT_ESCAPES:  # str.replace: str.translate takes seconds on a 10 MB document
        text = text.replace(character, escape)
    if fragments:  # one pass: a replace per fragment would copy the whole text each time
        text = re.sub(f'"fragment:{nonce}:([0-9]+)"', lambda found: fragments[int(found.group(1))], text)
    return text


class Fragment:
    """A part of a data document as JSON text made once (a cached layer), written into documents as it is."""

    __slots__ = ("text",)

    def __init__(self, data=None, *, text: str | None = None):
        self.text = script_json(data) if text is None else text

    @classmethod
    def joined(cls, lists) -> "Fragment":
        """One JSON array of the items of several array fragments, in order."""
        return cls(text="[" + ",".join(f.text[1:-1] for f in lists if len(f.text) > 2) + "]")


CACHE_SIZES = {"land": 2, "borders": 2, "ring": 4096, "popups": 2}
"""Entries kept per kind: basemap and border drawings per layer frame, ring drawings per ring geometry (rings are
shared by snapshots), site popups per catalogue snapshot (the latest and one more, e.g. an as_of)."""
_CACHES: dict[str, OrderedDict] = {kind: OrderedDict() for kind in CACHE_SIZES}
_CACHE_LOCK = threading.Lock()


_GC_PAUSES = [0]
_GC_LOCK = threading.Lock()


@contextmanager
def gc_paused():
    """Python's cyclic garbage collector held off while a map is built: it would walk every kept popup and layer
    again and again while the build makes its many small lists (a third of a 10,000-site map's time); the build
    makes no cycles of its own, and collection runs as usual once the last concurrent build is done."""
    with _GC_LOCK:
        _GC_PAUSES[0] += 1
        gc.disable()
    try:
        yield
    finally:
        with _GC_LOCK:
            _GC_PAUSES[0] -= 1
            if not _GC_PAUSES[0]:
                gc.enable()


def _gc_paused_during(function):
    """`function` run with the garbage collector held off (`gc_paused`)."""
    @wraps(function)
    def paused(*args, **kwargs):
        with gc_paused():
            return function(*args, **kwargs)
    return paused


def cached(kind: str, owner, build):
    """`build(owner)`, kept per owner object in the kind's bounded cache (what it keeps is immutable per owner)."""
    cache, key = _CACHES[kind], id(owner)
    with _CACHE_LOCK:
        hit = cache.get(key)
        if hit is not None and hit[0] is owner:
            cache.move_to_end(key)
            return hit[1]
    value = build(owner)
    with _CACHE_LOCK:
        cache[key] = (owner, value)  # the owner is held, so its id cannot be reused while the entry lives
        while len(cache) > CACHE_SIZES[kind]:
            cache.popitem(last=False)
    return value


def read_map_data(page: str) -> dict:
    """The data document of a rendered map page (what `MapData` wrote), parsed."""
    found = DATA_SCRIPT.search(page)
    if found is None:
        raise ValueError("no missile-sites map data in this page")
    return json.loads(found.group(2))


@lru_cache(maxsize=1)
def map_js() -> str:
    """app/maps.js, the renderer every map shares, safe to inline in a <script> element."""
    return re.sub(r"</(script)", r"<\\/\1", MAP_JS.read_text(encoding="utf-8"), flags=re.IGNORECASE)


class _Raw(Element):
    """Text added to the page as it is: an Element's own text would be compiled as a Jinja template by branca."""

    def __init__(self, text: str):
        super().__init__()
        self._text = text

    def render(self, **kwargs) -> str:
        return self._text


class MapData(JSCSSMixin, Element):
    """A map's data document and the call that draws it: the only element of a map that carries data.

    `document` holds only JSON types, every text from the data as it is (never HTML). It is written as
    `script_json` text in a `<script type="application/json">` element of the page body, and the figure's
    script calls `missileSitesDraw(map, id)` (app/maps.js) with it; neither passes through Jinja.
    """

    def __init__(self, document: dict):
        super().__init__()
        self._name = "MapData"
        self.document = document
        clustered = bool(document["sites"]["cluster"]) or bool(document.get("launches"))  # launches always cluster
        self.default_js = list(MARKERCLUSTER_JS) if clustered else []
        self.default_css = list(MARKERCLUSTER_CSS) if clustered else []

    def render(self, **kwargs) -> str:
        figure, data_id = self.get_root(), f"missile-sites-data-{self._id}"
        figure.html.add_child(_Raw(f'<script type="application/json" id="{data_id}">'
                                   f"{script_json(self.document)}</script>"), name=self.get_name())
        if "missile_sites_renderer" not in figure.script._children:  # once per page
            figure.script.add_child(_Raw(map_js()), name="missile_sites_renderer")
        figure.script.add_child(_Raw(f'missileSitesDraw({self._parent.get_name()}, "{data_id}");'),
                                name=self.get_name())
        return super().render(**kwargs)


# --- data as plain text ------------------------------------------------------------------------


def blank(value) -> bool:
    """Whether a cell is empty: None, NaN, NA or a blank string."""
    if value is None or isinstance(value, str):
        return value is None or not value.strip()
    if isinstance(value, float):  # most cells: answered without numpy
        return value != value
    return np.ndim(value) == 0 and bool(pd.isna(value))


def text(value) -> str | None:
    """A cell as plain text for the data document, or None when blank."""
    return None if blank(value) else str(value)


def http_url(url) -> str | None:
    """An http(s) URL as given, or None for anything else (javascript:, data:, blank): only these become links."""
    if not isinstance(url, str) or urlsplit(url.strip()).scheme.lower() not in ("http", "https"):
        return None
    return url.strip()


def _items(value) -> list[str]:
    """A stored list cell (a JSON array) or a list as its non-empty items."""
    return [item for item in decode_list(value) if not blank(item)]


def _km(value) -> str:
    """A distance for display, in km with one decimal."""
    return "unknown" if blank(value) else f"{float(value):,.1f} km"


# --- site symbols ------------------------------------------------------------------------------


def class_rank(name: str) -> tuple[int, str]:
    """Sort key putting the longest-range classes first, unknown classes after the known ones."""
    return (CLASS_ORDER.index(name) if name in CLASS_ORDER else len(CLASS_ORDER), name)


def site_class(row) -> str:
    """The class a site is coloured by: the longest-range class among its missiles, or NO_CLASS."""
    classes = sorted(set(_items(row.get("missile_classes"))), key=class_rank)
    return classes[0] if classes else NO_CLASS


def class_colours(classes) -> dict[str, str]:
    """A colour for each class: fixed ones for known classes, a fallback palette for the rest."""
    colours, others = {}, iter(OTHER_COLOURS * 4)
    for name in sorted(set(classes), key=class_rank):
        colours[name] = NO_CLASS_COLOUR if name == NO_CLASS else CLASS_COLOURS.get(name) or next(others, "#000")
    return colours


# --- popups ------------------------------------------------------------------------------------


def _row(label: str, value) -> list[str] | None:
    """One popup table row as [label, text], or None when the value is blank."""
    value = ", ".join(_items(value)) if isinstance(value, (list, tuple)) else value
    return None if blank(value) else [label, str(value)]


def site_popup(site, *, border_distances: dict, border_names: dict, observations: list[dict], source_ids: list[str],
               distance_km=None) -> dict:
    """What a site's popup shows, as plain text: attributes, border distances, observations and source ids.

    `site` a Series or a dict; `observations` from `observation_entry`, oldest first; the sources themselves
    are the document's `sources` (from `source_entry`), listed once for every popup and the footer.
    """
    belt = " — ".join(t for t in (text(site.get("belt")), text(site.get("belt_notes"))) if t)
    rows = [
        _row("id", site.get("id")), _row("also known as", _items(site.get("aliases"))),
        _row("country", site.get("country")), _row("province", site.get("province")),
        _row("facility", site.get("facility_type")), _row("declared status", site.get("declared_status")),
        _row("current status", _status_text(site)), _row("missiles", _items(site.get("missile_types"))),
        _row("missile classes", _items(site.get("missile_classes"))), _row("belt", belt),
        _row("coordinate confidence", site.get("coord_confidence")),
        _row("distance from query centre", None if distance_km is None else _km(distance_km)),
    ]
    return {
        "rows": [row for row in rows if row], "notes": text(site.get("notes")),
        "borders": [[str(border_names.get(b, b)), _km(d)]
                    for b, d in sorted(border_distances.items(), key=lambda item: item[1])],
        "observations": observations, "source_ids": source_ids,
    }


def _status_text(site) -> str:
    """Current status with the date it was last observed."""
    status, seen = site.get("current_status"), site.get("status_observed_on")
    return str(status) if blank(seen) else f"{status} (observed {seen})"


def observation_entry(observation) -> dict:
    """One observation as popup text (date: kind, status seen — notes) and its source id."""
    words = ", ".join(str(observation.get(k)) for k in ("kind", "status_seen") if not blank(observation.get(k)))
    notes = text(observation.get("notes"))
    return {"text": f"{text(observation.get('observed_on')) or 'undated'}: {words}" + (f" — {notes}" if notes else ""),
            "source_id": text(observation.get("source_id"))}


def source_entry(source) -> dict:
    """One source as the document lists it: title, publisher, date, and its URL only when http(s)."""
    return {"title": text(source.get("title")), "publisher": text(source.get("publisher")),
            "published_on": text(source.get("published_on")), "url": http_url(source.get("url"))}


# --- layers ------------------------------------------------------------------------------------


def _display_geometry(geometry, tolerance_deg: float = 0.0, decimals: int = DISPLAY_DECIMALS,
                      min_area_deg2: float = 0.0) -> dict | None:
    """A geometry for drawing, simplified, small islands dropped, coordinates rounded and delta-encoded
    (`encode_geometry`); None if empty."""
    if tolerance_deg:
        geometry = geometry.simplify(tolerance_deg, preserve_topology=True)
    if min_area_deg2 and geometry.geom_type == "MultiPolygon":
        geometry = shapely.MultiPolygon([p for p in geometry.geoms if p.area >= min_area_deg2])
    geometry = shapely.set_precision(geometry, 10.0 ** -decimals, mode="pointwise")
    return None if geometry.is_empty else encode_geometry(geometry, decimals)


ENCODED_DEPTH = {"LineString": 0, "MultiPoint": 0, "Polygon": 1, "MultiLineString": 1, "MultiPolygon": 2}


def encode_geometry(geometry, decimals: int) -> dict:
    """A geometry as GeoJSON whose coordinate sequences are flat integer lists: lon and lat times 10**decimals, each
    after the first as the difference from the one before (`"encoded": decimals`); app/maps.js decodes them.

    >>> encode_geometry(shapely.LineString([(127.5, 37.25), (127.75, 37.0)]), 2)
    {'type': 'LineString', 'encoded': 2, 'coordinates': [12750, 3725, 25, -25]}
    """
    kind = geometry.geom_type
    if kind == "GeometryCollection":
        return {"type": kind, "geometries": [encode_geometry(g, decimals) for g in geometry.geoms]}
    if kind == "Point":
        return mapping(geometry)
    scale = 10.0 ** decimals

    def sequence(coords) -> list[int]:
        whole = np.rint(np.asarray(coords)[:, :2] * scale).astype(np.int64)
        return np.diff(whole, axis=0, prepend=np.zeros((1, 2), dtype=np.int64)).ravel().tolist()

    def parts(g, depth: int):
        if depth == 0:
            return sequence(g.coords)
        if g.geom_type == "Polygon":
            return [sequence(r.coords) for r in (g.exterior, *g.interiors)]
        return [parts(p, depth - 1) for p in g.geoms]

    return {"type": kind, "encoded": decimals, "coordinates": parts(geometry, ENCODED_DEPTH[kind])}


def decode_geometry(geometry: dict) -> dict:
    """Plain GeoJSON from an `encode_geometry` result (what app/maps.js draws), for readers of a map's data."""
    if geometry.get("type") == "GeometryCollection":
        return {"type": "GeometryCollection", "geometries": [decode_geometry(g) for g in geometry["geometries"]]}
    if "encoded" not in geometry:
        return geometry
    scale = 10.0 ** geometry["encoded"]

    def walk(value, depth: int):
        if depth == 0:
            pairs = np.cumsum(np.asarray(value, dtype=np.int64).reshape(-1, 2), axis=0)
            return (pairs / scale).tolist()
        return [walk(v, depth - 1) for v in value]

    return {"type": geometry["type"], "coordinates": walk(geometry["coordinates"], ENCODED_DEPTH[geometry["type"]])}


def focus_box(shapes) -> tuple[float, float, float, float] | None:
    """The box drawn in detail: around the given shapes with a margin, or None when they span too much."""
    shapes = [g for g in shapes if has_point(g)]
    if not shapes:
        return None
    west, south, east, north = shapely.total_bounds(np.array(shapes, dtype=object))
    if east - west > FOCUS_MAX_SPAN_DEG[0] or north - south > FOCUS_MAX_SPAN_DEG[1]:
        return None
    return (max(west - FOCUS_MARGIN_DEG, -180), max(south - FOCUS_MARGIN_DEG, -90),
            min(east + FOCUS_MARGIN_DEG, 180), min(north + FOCUS_MARGIN_DEG, 90))


def _features(geometries, properties, **display) -> list[dict]:
    """GeoJSON features of the drawable geometries, each with its properties."""
    features = []
    for geometry, props in zip(geometries, properties):
        if has_point(geometry) and (drawn := _display_geometry(geometry, **display)):
            features.append({"type": "Feature", "properties": props, "geometry": drawn})
    return features


def _collection(features: list[dict]) -> dict:
    """A GeoJSON FeatureCollection."""
    return {"type": "FeatureCollection", "features": features}


def _base_map() -> folium.Map:
    """An empty map: no default tiles, a scale bar, a sea-coloured background and a basemap pane."""
    # maxZoom: with no tile layer shown the map has none, and Leaflet.markercluster refuses to cluster without it
    m = folium.Map(location=[38.5, 127.0], zoom_start=6, tiles=None, control_scale=True, world_copy_jump=False,
                   maxZoom=MAX_ZOOM)
    m.get_root().title = "missile-sites map"  # the full title, with the query, is set from the data
    # Below the tile pane (200), so online tiles cover the vector basemap when they load.
    folium.map.CustomPane("basemap", z_index=150, pointer_events=False).add_to(m)
    m.get_root().header.add_child(_Raw(
        f"<style>html .leaflet-container {{ background: {SEA_COLOUR}; }}{POPUP_CSS}</style>"), name="missile_sites_css")
    return m


def split_at_antimeridian(geometry):
    """A (Multi)Polygon whose rings jump across ±180° (spherical data) split there, for planar drawing.

    Parts that do not jump, parts that span the globe once unwrapped (Antarctica) and bands whose
    edges run from -180° to 180° (they collapse when unwrapped) are kept as they are. Drawing only: distances are measured on the ellipsoid, never on these shapes.

    >>> split_at_antimeridian(shapely.Polygon([(179, 0), (-179, 0), (-179, 1), (179, 1)])).bounds
    (-180.0, 0.0, 180.0, 1.0)
    """
    parts = []
    for part in getattr(geometry, "geoms", [geometry]):
        x = shapely.get_coordinates(part.exterior)[:, 0]
        unwrapped = shapely.transform(part, lambda c: np.where(c[:, :1] < 0, c + [360.0, 0.0], c))
        jumps = np.abs(np.diff(x)).max(initial=0) > 180
        if not jumps or unwrapped.bounds[2] - unwrapped.bounds[0] >= 180 or unwrapped.area == 0:
            parts.append(part)
            continue
        unwrapped = shapely.make_valid(unwrapped)
        east = unwrapped.intersection(shapely.box(-180, -90, 180, 90))
        west = shapely.affinity.translate(unwrapped.intersection(shapely.box(180, -90, 540, 90)), xoff=-360)
        parts += [p for g in (east, west) for p in shapely.get_parts(g) if p.geom_type == "Polygon"]
    return shapely.MultiPolygon(parts) if len(parts) != 1 else parts[0]


def _cell_range(low: float, high: float, origin: float, count: int) -> range:
    """The CELL_DEG cells (numbered from `origin`) that the interval [low, high] touches."""
    first = int((low - origin) // CELL_DEG)
    return range(max(first, 0), min(int((high - origin) // CELL_DEG), count - 1) + 1)


def _cell_box(key: tuple[int, int]) -> tuple[float, float, float, float]:
    """A cell's west, south, east, north."""
    west, south = -180 + key[0] * CELL_DEG, -90 + key[1] * CELL_DEG
    return west, south, west + CELL_DEG, south + CELL_DEG


def focus_cells(focus) -> list[tuple[int, int]]:
    """The cells a focus box touches (drawn in detail)."""
    west, south, east, north = focus
    return [(i, j) for i in _cell_range(west, east, -180, CELLS[0]) for j in _cell_range(south, north, -90, CELLS[1])]


def _cells(geometries, properties, **display) -> dict[tuple[int, int], Fragment]:
    """The geometries cut into CELL_DEG cells and drawn, one list of features (JSON made once) per cell touched."""
    cells: dict[tuple[int, int], list[dict]] = {}
    for geometry, props in zip(geometries, properties):
        if not has_point(geometry):
            continue
        west, south, east, north = geometry.bounds
        for key in focus_cells((west, south, east, north)):
            part = shapely.clip_by_rect(geometry, *_cell_box(key))
            if not part.is_empty and (drawn := _display_geometry(part, **display)):
                cells.setdefault(key, []).append({"type": "Feature", "properties": props, "geometry": drawn})
    return {key: Fragment(features) for key, features in cells.items()}


def _land(countries) -> dict:
    """The countries cut at the antimeridian and drawn per zoom band, once per countries layer: the coarse world,
    and the detail cut into cells (a map takes the cells of the region in view), all as JSON made once."""
    land = [split_at_antimeridian(g) if has_point(g) else None for g in countries.geometry]
    detail = [g.simplify(DETAIL["tolerance_deg"], preserve_topology=True) if g is not None else None for g in land]
    return {"coarse": Fragment(_collection(_features(land, [{}] * len(land), **COARSE))),
            "detail": _cells(detail, [{}] * len(land), decimals=DETAIL["decimals"])}


def land_geojson(countries, focus=None) -> list:
    """Land from the GeoPackage's countries, drawn under any tiles: coarse worldwide, detailed in the focus cells
    (a list of GeoJSON FeatureCollections, as Leaflet's L.geoJSON takes them)."""
    layers = cached("land", countries, _land)
    if focus is None:
        return [layers["coarse"]]
    detail = [layers["detail"][key] for key in focus_cells(focus) if key in layers["detail"]]
    return [layers["coarse"], {"type": "FeatureCollection", "features": Fragment.joined(detail)}]


def _borders(borders) -> dict:
    """The borders' drawing, once per borders layer, as JSON made once: the MDL and DMZ edges in full, one fragment
    per line; the land borders coarse, and cut into cells both coarse and detailed (a map draws the cells in focus
    in detail)."""
    kinds = {}
    for kind in ("land_border", "dmz_edge", "mdl"):
        rows = borders[borders["kind"] == kind]
        labels = [{"label": text(name), "border_id": text(border_id)} for name, border_id in zip(rows["name"], rows["id"])]
        style = {**BORDER_STYLES.get(kind, BORDER_STYLES["land_border"]), "className": f"border border-{kind}"}
        geometries = rows.geometry.to_numpy()
        entry = {"labels": labels, "ids": [str(i) for i in rows["id"]], "style": style}
        if kind != "land_border":
            entry["lines"] = {label["border_id"]: Fragment(_features([geometry], [label]))
                              for geometry, label in zip(geometries, labels)}
        else:
            entry["full"] = Fragment(_collection(_features(geometries, labels, **COARSE)))
            detail = shapely.simplify(geometries, DETAIL["tolerance_deg"], preserve_topology=True)
            entry["detail"] = _line_cells(detail, decimals=DETAIL["decimals"])
            entry["coarse"] = _line_cells(shapely.simplify(geometries, COARSE["tolerance_deg"]),
                                          decimals=COARSE["decimals"])
            entry["label_json"] = [script_json(label) for label in labels]
        kinds[kind] = entry
    return kinds


def _line_cells(geometries, decimals: int) -> dict[tuple[int, int], list[tuple[int, str]]]:
    """Lines cut into CELL_DEG cells and encoded (`encode_geometry`), per cell touched: (the line's position, its
    coordinate sequences there as JSON text without the outer brackets)."""
    cells: dict[tuple[int, int], list[tuple[int, str]]] = {}
    for position, geometry in enumerate(geometries):
        if not has_point(geometry):
            continue
        for key in focus_cells(geometry.bounds):
            part = shapely.clip_by_rect(geometry, *_cell_box(key))
            drawn = None if part.is_empty else _display_geometry(part, decimals=decimals)
            sequences = _sequences(drawn) if drawn else []
            if sequences:
                cells.setdefault(key, []).append((position, json.dumps(sequences, separators=(",", ":"))[1:-1]))
    return cells


def _sequences(encoded: dict) -> list[list[int]]:
    """The encoded coordinate sequences of a drawn line geometry (points, from a cut, left out)."""
    if encoded["type"] == "GeometryCollection":
        return [s for g in encoded["geometries"] for s in _sequences(g)]
    return {"LineString": lambda c: [c], "MultiLineString": list}.get(encoded["type"], lambda c: [])(
        encoded.get("coordinates", []))


def _joined_lines(entry: dict, inside: set) -> Fragment:
    """The land borders' features: the cells in focus in detail, the others coarse; one MultiLineString per border
    and level of detail (the label written once, not once per cell)."""
    parts: dict[tuple[int, int], list[str]] = {}
    for key in sorted(set(entry["coarse"]) | (inside & set(entry["detail"]))):
        decimals, cells = (DETAIL["decimals"], entry["detail"]) if key in inside else (COARSE["decimals"], entry["coarse"])
        for position, text_ in cells.get(key, ()):
            parts.setdefault((position, decimals), []).append(text_)
    features = [f'{{"type":"Feature","properties":{entry["label_json"][position]},"geometry":{{"type":"MultiLineString",'
                f'"encoded":{decimals},"coordinates":[{",".join(texts)}]}}}}'
                for (position, decimals), texts in sorted(parts.items())]
    return Fragment(text="[" + ",".join(features) + "]")


def _land_ids(borders) -> set:
    """The ids of a borders frame's land borders."""
    return {str(i) for i in borders["id"][borders["kind"] == "land_border"]}


def border_overlay(borders, focus=None, layer=None) -> dict:
    """The MDL and DMZ edges in full, and the land borders (detailed in the focus cells), each labelled by name, of
    the lines in `borders`; `layer`, when given, the whole borders layer `borders` was taken from (with all its land
    borders): its drawing is made once and kept, and the map takes its lines from it."""
    ids = {str(i) for i in borders["id"]}
    if layer is None or _land_ids(layer) != _land_ids(borders):
        layer = borders
    shapes, drawn = [], set()
    for kind, entry in cached("borders", layer, _borders).items():
        if not any(i in ids for i in entry["ids"]):
            continue
        drawn.add(kind)
        if kind != "land_border":
            lines = [entry["lines"][i] for i in entry["ids"] if i in ids]
            parts = [{"type": "FeatureCollection", "features": Fragment.joined(lines)}]
        elif focus is None:
            parts = [entry["full"]]
        else:
            parts = [{"type": "FeatureCollection", "features": _joined_lines(entry, set(focus_cells(focus)))}]
        shapes += [{"style": entry["style"], "geojson": part} for part in parts]
    names = [BORDER_LABELS[kind] for kind in ("mdl", "dmz_edge", "land_border") if kind in drawn]
    return {"name": "Borders: " + ", ".join(names), "shapes": shapes}


def ring_outline(area) -> shapely.MultiLineString:
    """The circles bounding a cut range area, without the cut edges along ±180° or over a pole.

    A ring polygon cut at the antimeridian (or closed over a pole) has edges that are not part of
    the range circle; stroking the polygon would draw them as a frame round the map. The outline
    keeps only the edges at the range distance.

    >>> ring_outline(shapely.box(170, 0, 180, 10)).length   # only the three edges off the meridian
    30.0
    """
    lines = []
    for ring in _linear_rings(area):
        coords = np.asarray(ring.coords)
        start, end = coords[:-1], coords[1:]  # each segment's ends
        along_meridian = np.isclose(np.abs(start[:, 0]), 180) & np.isclose(start[:, 0], end[:, 0])
        over_pole = np.isclose(np.abs(start[:, 1]), 90) & np.isclose(start[:, 1], end[:, 1])
        lines += _runs(coords, along_meridian | over_pole)
    return shapely.MultiLineString(lines)


def _linear_rings(area) -> list:
    """Every exterior and interior ring of a Polygon or MultiPolygon."""
    polygons = getattr(area, "geoms", [area])
    return [r for p in polygons for r in (p.exterior, *p.interiors)]


def _runs(coords: np.ndarray, skip: np.ndarray) -> list[np.ndarray]:
    """The runs of consecutive segments not marked to skip, as coordinate arrays."""
    runs, start = [], None
    for i, skipped in enumerate([*skip, True]):
        if not skipped and start is None:
            start = i
        elif skipped and start is not None:
            runs.append(coords[start:i + 1])
            start = None
    if len(runs) > 1 and not skip[0] and not skip[-1]:  # the ring's closing point joins last and first runs
        runs = [np.vstack([runs[-1], runs[0][1:]])] + runs[1:-1]
    return runs




def ring_overlays(rings: list[dict], colours: dict[str, str]) -> list[dict]:
    """Each missile's geodesic range areas (max-range disc less the min-range hole), one overlay per missile.

    An area is drawn as its polygon (a faint fill, cut at ±180°) and stroked along its range circles.
    """
    groups: dict[str, dict] = {}
    fill_opacity = min(0.05, 0.1 / max(len(rings), 1))  # many overlapping discs must not tint the whole map
    for ring in rings:
        key = str(ring.get("missile_id") or ring.get("radius_km"))
        group = groups.setdefault(key, {"name": f"Range: {_missile_label(ring)}", "shapes": []})
        colour = colours.get(ring.get("class"), NO_CLASS_COLOUR)
        area = {"stroke": False, "fillColor": colour, "fillOpacity": fill_opacity, "interactive": False,
                "className": "range-area"}
        outline = {"color": colour, "weight": 1.6, "opacity": 0.9, "className": "range-ring"}
        ids = {"site_id": text(ring.get("site_id")), "missile_id": key}
        drawn_area, drawn_outline = cached("ring", ring["geometry"], _ring_drawing)
        group["shapes"] += [
            {"style": area, "geojson": {"type": "Feature", "properties": {**ids, "part": "area"},
                                        "geometry": drawn_area}},
            {"style": outline, "geojson": {"type": "Feature", "properties": {**ids, "part": "outline",
                                                                             "label": _ring_label(ring)},
                                           "geometry": drawn_outline}},
        ]
    return list(groups.values())


def _ring_drawing(area) -> tuple[Fragment, Fragment]:
    """A range area's drawn polygon and outline, as JSON made once per ring geometry."""
    return Fragment(_display_geometry(area)), Fragment(_display_geometry(ring_outline(area)))


def _missile_label(ring: dict) -> str:
    """A missile's name, class and range for a layer name."""
    if ring.get("missile_id") is None:
        return f"{ring['radius_km']:,.0f} km"
    extent = f"{ring['range_max_km']:,.0f} km"
    if ring.get("range_min_km"):
        extent = f"{ring['range_min_km']:,.0f}–{extent}"
    return f"{ring.get('name') or ring['missile_id']} ({ring.get('class') or 'class unknown'}, {extent})"


def _ring_label(ring: dict) -> str:
    """A ring's plain-text tooltip: the site and the missile's range (shown through textContent)."""
    kind = f", {ring['range_kind']}" if ring.get("range_kind") else ""
    return f"{ring.get('site_name') or ring.get('site_id') or ''}: {_missile_label(ring)}{kind}"



def radius_overlay(lon: float, lat: float, radius_km: float, label: str) -> dict:
    """The query's radius as a geodesic polygon around its centre, with the centre marked."""
    style = {"color": "#111111", "weight": 2, "dashArray": "8 6", "fill": False, "className": "query-radius"}
    feature = {"type": "Feature", "properties": {"label": f"{radius_km:,.1f} km (geodesic) of {label}"},
               "geometry": _display_geometry(geodesy.range_ring(lon, lat, radius_km * 1000))}
    return {"name": f"Query radius: {radius_km:,.0f} km of {label}", "shapes": [{"style": style, "geojson": feature}],
            "centre": centre_point(lon, lat, label)}


def centre_point(lon: float, lat: float, label: str) -> dict:
    """The query's centre, labelled."""
    return {"lon": float(lon), "lat": float(lat), "label": str(label)}


SITE_COLUMNS = ("id", "lon", "lat", "colour", "status", "name")
"""A site row of the map's data: string-table index of its id, lon, lat, colour index, status index, name index."""


def site_layer(sites, colours: dict[str, str], popups: dict[str, dict], *, cluster_above: int = CLUSTER_ABOVE,
               records: list | None = None) -> dict:
    """The located sites as one compact array (clustered when there are many), their popups once each, and one
    string table for every text: app/maps.js builds markers, tooltips and popups from it (see `expand_sites`).

    `records`: the located sites' ``_records`` when the caller has them already.
    """
    geometry = sites.geometry.name
    located = records if records is not None else [(i, s) for i, s in _records(sites) if has_point(s[geometry])]
    palette = list(dict.fromkeys(colours.values()))
    colour_at, status_at = {c: n for n, c in enumerate(palette)}, {s: n for n, s in enumerate(STATUS_SHAPES)}
    texts, rows = [], []
    for site_id, site in located:  # every text in order, then one pass (pandas.factorize) numbers them
        popup, status, point = popups[site_id], text(site.get("current_status")) or "unknown", site[geometry]
        rows.append([round(float(point.x), DISPLAY_DECIMALS), round(float(point.y), DISPLAY_DECIMALS),
                     colour_at[colours[popup["class"]]], status_at.setdefault(status, len(status_at))])
        texts += (str(site_id), text(site.get("name")) or str(site_id))
        rows_length = popup["lengths"][0]
        texts += popup["strings"][:rows_length]
        if not blank(distance := site.get("distance_km")):
            texts += ("distance from query centre", _km(distance))
        texts += popup["strings"][rows_length:]
    codes, strings = pd.factorize(np.array(texts, dtype=object)) if texts else (np.array([], dtype=int), [])
    codes, at, compact = codes.tolist(), 0, []
    for row, (site_id, site) in zip(rows, located):
        popup, lengths = popups[site_id], list(popups[site_id]["lengths"])
        lengths[0] += 2 if not blank(site.get("distance_km")) else 0
        row[:0] = codes[at:at + 1]
        row.append(codes[at + 1])
        at += 2
        parts = []
        for length in lengths:
            parts.append(codes[at:at + length])
            at += length
        compact.append([parts[0], parts[1][0] if parts[1] else -1, parts[2], parts[3], parts[4]])
    return {"name": f"Sites ({len(rows)})", "cluster": len(rows) > cluster_above, "columns": list(SITE_COLUMNS),
            "colours": palette, "statuses": list(status_at), "rows": rows, "popups": compact,
            "strings": [str(t) for t in strings]}


def expand_sites(document: dict) -> list[dict]:
    """The sites of a map's data document one by one, as app/maps.js reads them: id, lon, lat, status, colour,
    name and popup (rows, notes, borders, observations, source ids), every text looked up in the string table."""
    sites = document["sites"]
    strings = sites["strings"]

    def pairs(indexes):
        return [[strings[a], strings[b]] for a, b in zip(indexes[::2], indexes[1::2])]

    items = []
    for (site_id, lon, lat, colour, status, name), (rows, notes, borders, observations, source_ids) in zip(
            sites["rows"], sites["popups"]):
        items.append({"id": strings[site_id], "lon": lon, "lat": lat, "status": sites["statuses"][status],
                      "colour": sites["colours"][colour], "name": strings[name], "popup": {
                          "rows": pairs(rows), "notes": None if notes < 0 else strings[notes], "borders": pairs(borders),
                          "observations": [{"text": t, "source_id": i or None} for t, i in pairs(observations)],
                          "source_ids": [strings[i] for i in source_ids]}})
    return items


def drawable_mask(sites) -> np.ndarray:
    """Which sites have a point to draw (not NULL, not empty), as a boolean array."""
    geometries = sites.geometry.to_numpy()
    return ~(shapely.is_missing(geometries) | shapely.is_empty(geometries))


def _records(frame) -> list[tuple]:
    """(index, row as a dict) for each row: what iterrows gives, without building a Series per row."""
    names, columns = list(frame.columns), [frame[c].to_numpy(dtype=object).tolist() for c in frame.columns]
    return [(i, dict(zip(names, values))) for i, values in zip(frame.index, zip(*columns))]


# --- controls, legend, footer ------------------------------------------------------------------


LAYER_LEGEND = {
    "cities": "Cities in range of the drawn sites' missiles (GeoNames, \u2265 15,000 people), sized by population",
    "launches": "Launches (CNS) at the drawn sites' facilities, up to the slider's year",
}


def legend_data(colours: dict[str, str], statuses, border_kinds=None, *, cities: bool = False,
                launches: bool = False) -> dict:
    """The legend: colour by missile class, shape by status, line styles of the borders drawn (of the kinds given;
    all when None), and the cities and launches layers when drawn."""
    return {
        "layers": [{"kind": kind, "name": LAYER_LEGEND[kind]} for kind, drawn in (("cities", cities),
                                                                                  ("launches", launches)) if drawn],
        "classes": [{"name": str(name), "colour": colour} for name, colour in colours.items()],
        "statuses": [{"status": s, "text": f"{s.replace('_', ' ')}: {STATUS_SHAPES[s]}"}
                     for s in STATUS_SHAPES if s in statuses or not statuses],
        "borders": [{"name": BORDER_LABELS[kind], "style": style} for kind, style in BORDER_STYLES.items()
                    if border_kinds is None or kind in border_kinds],
    }


def footer_data(*, query: str, data_version: str, generated_at: datetime, source_ids: list[str], shown: int,
                matched: int | None, unlocated: list[str]) -> dict:
    """The footer: the query, the counts, the data version, the generation time and the sources' ids."""
    counted = f"{shown} sites drawn" + (f" of {matched} matching" if matched is not None and matched != shown else "")
    return {"query": str(query), "counted": counted, "unlocated": unlocated, "data_version": str(data_version),
            "version_note": VERSION_NOTE, "generated_at": generated_at.isoformat(timespec="seconds"),
            "source_ids": source_ids}


def add_controls(m: folium.Map) -> None:
    """Measure tool (km) and fullscreen button; the scale bar comes with the map, the layer control with its data."""
    MeasureControl(position="topleft", primary_length_unit="kilometers", secondary_length_unit="miles",
                   primary_area_unit="sqkilometers", secondary_area_unit="hectares").add_to(m)
    Fullscreen(position="topleft").add_to(m)


def _fit(m: folium.Map, located: list, centre, radius_km, borders) -> None:
    """Fit the view to the drawn sites' points and the query radius, or to the MDL and DMZ when there are none."""
    shapes = list(located)
    if centre is not None and radius_km:
        shapes.append(geodesy.range_ring(centre[0], centre[1], radius_km * 1000))
    elif centre is not None:
        shapes.append(shapely.Point(centre))
    if not shapes:
        shapes = [g for g in borders[borders["kind"].isin(["mdl", "dmz_edge"])].geometry if g is not None]
    if not shapes:
        return
    west, south, east, north = shapely.total_bounds(np.array(shapes, dtype=object))
    pad = 0.3 if (east - west) < 2 and (north - south) < 2 else 0.0
    # Keep the sites clear of the legend (top right) and the footer (bottom left).
    m.fit_bounds([[south - pad, west - pad], [north + pad, east + pad]], padding_top_left=(30, 30),
                 padding_bottom_right=(260, 200))


# --- self-contained HTML -----------------------------------------------------------------------


@lru_cache(maxsize=None)
def vendored_js(relative: str) -> str:
    """A vendored script, safe to inline in a <script> element."""
    text = (VENDOR_DIR / relative).read_text(encoding="utf-8")
    return re.sub(r"</(script)", r"<\\/\1", text, flags=re.IGNORECASE)


@lru_cache(maxsize=None)
def geodesic_measure_js() -> str:
    """GeographicLib, then leaflet-measure with its spherical distance and area replaced by WGS84 geodesics."""
    text = vendored_js(VENDORED_JS["leaflet_measure_js"])
    for spherical, geodesic in MEASURE_PATCHES:
        if spherical not in text:
            raise RuntimeError("leaflet-measure changed: its spherical formulas were not found to replace")
        text = text.replace(spherical, geodesic)
    return vendored_js(GEODESIC_JS) + "\n" + text


@lru_cache(maxsize=None)
def vendored_css(relative: str) -> str:
    """A vendored stylesheet with its relative url(...) images inlined as data: URIs."""
    path = VENDOR_DIR / relative

    def inline(match: re.Match) -> str:
        target = match.group(2)
        if target.startswith(("data:", "#")):
            return match.group(0)
        return f'url("{_data_uri((path.parent / target).resolve())}")'

    return re.sub(r"""url\((['"]?)([^)'"]+)\1\)""", inline, path.read_text(encoding="utf-8"))


def _elements(element):
    """An element and all its descendants."""
    yield element
    for child in list(element._children.values()):
        yield from _elements(child)


def make_self_contained(m: folium.Map) -> folium.Map:
    """Replace every folium/plugin CDN link with the vendored file inlined; refuse unknown resources."""
    js, css = {}, {}
    for element in _elements(m.get_root()):
        if not isinstance(element, JSCSSMixin):
            continue
        for wanted, known, found in ((element.default_js, VENDORED_JS, js), (element.default_css, VENDORED_CSS, css)):
            for name, url in wanted:
                if name in known:
                    found[name] = known[name]
                elif name not in UNUSED_DEFAULTS:
                    raise ValueError(f"no vendored copy of {name} ({url}); add it to app/vendor")
        element.default_js, element.default_css = [], []
    header = m.get_root().header
    for name in [n for n in VENDORED_JS if n in js]:  # Leaflet before its plugins
        source = geodesic_measure_js() if name == "leaflet_measure_js" else vendored_js(js[name])
        header.add_child(_Raw(f"<script>{source}</script>"), name=f"inline_{name}")
    if "leaflet" in js:  # Leaflet guesses its default marker images' folder from a CSS url; give it data: URIs
        header.add_child(_Raw(f"<script>{default_icon_js()}</script>"), name="inline_leaflet_default_icon")
    for name in [n for n in VENDORED_CSS if n in css]:
        header.add_child(_Raw(f"<style>{vendored_css(css[name])}</style>"), name=f"inline_{name}")
    return m


@lru_cache(maxsize=None)
def default_icon_js() -> str:
    """Script pointing L.Icon.Default (used by plugins such as the measure tool) at inlined images."""
    images = {key: _data_uri(VENDOR_DIR / "leaflet/dist/images" / name) for key, name in (
        ("iconUrl", "marker-icon.png"), ("iconRetinaUrl", "marker-icon-2x.png"), ("shadowUrl", "marker-shadow.png"))}
    return f"L.Icon.Default.imagePath = '';\nL.Icon.Default.mergeOptions({json.dumps(images)});"


def _data_uri(path: Path) -> str:
    """A file's bytes as a base64 data: URI."""
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode()}"


def render_html(m: folium.Map) -> str:
    """The map as one self-contained HTML document (every script and stylesheet inlined)."""
    make_self_contained(m)
    return m.get_root().render()


def discard(m: folium.Map) -> None:
    """Take a map's element tree apart once it is rendered, so reference counting frees it (and its data) at once.

    Every element refers to its parent and the parent to it; left as they are, these cycles (and the data
    document they hold) wait for Python's cyclic garbage collector.
    """
    root = m.get_root()
    for element in [e for part in (root, root.header, root.html, root.script) for e in _elements(part)]:
        element._children.clear()
        element._parent = None
        if isinstance(element, MapData):
            element.document = {}


# --- the builders ------------------------------------------------------------------------------


def site_popups(records, *, borders, border_distances=None, observations=None, site_sources=None,
                known_sources=None) -> dict[str, dict]:
    """Each site's popup (`site_popup`, without the query's distance) from `_records` of the sites; source ids kept
    only when in `known_sources` (all when None)."""
    border_distances, site_sources = border_distances or {}, site_sources or {}
    border_names = {str(i): str(n) for i, n in zip(borders["id"], borders["name"])}
    entries: dict[str, list[dict]] = {}
    if observations is not None and len(observations):
        for _, o in _records(observations.sort_values("observed_on", kind="stable")):  # per site, oldest first
            entries.setdefault(o["site_id"], []).append(observation_entry(o))
    return {site_id: _packed(site_popup(
        site, border_distances=border_distances.get(site_id, {}), border_names=border_names,
        observations=entries.get(site_id, []),
        source_ids=[i for i in dict.fromkeys(map(str, site_sources.get(site_id, [])))
                    if known_sources is None or i in known_sources]), site_class(site))
        for site_id, site in records}


def _packed(popup: dict, site_class_: str) -> dict:
    """A popup with the site's class and its texts in `site_layer`'s order: `strings`, and `lengths` per part."""
    parts = ([t for pair in popup["rows"] for t in pair], [] if popup["notes"] is None else [popup["notes"]],
             [t for pair in popup["borders"] for t in pair],
             [t for o in popup["observations"] for t in (o["text"], o["source_id"] or "")], list(popup["source_ids"]))
    return {**popup, "class": site_class_, "strings": tuple(t for part in parts for t in part),
            "lengths": tuple(len(part) for part in parts)}


@_gc_paused_during
def site_map(
    sites,
    *,
    borders,
    countries,
    rings: list[dict] | None = None,
    centre: tuple[float, float] | None = None,
    centre_label: str = "query centre",
    radius_km: float | None = None,
    query: str = "",
    data_version: str = "",
    sources: pd.DataFrame | None = None,
    generated_at: datetime | None = None,
    border_distances: dict[str, dict[str, float]] | None = None,
    observations: pd.DataFrame | None = None,
    site_sources: dict[str, list[str]] | None = None,
    number_matched: int | None = None,
    cluster_above: int = CLUSTER_ABOVE,
    popups: dict[str, dict] | None = None,
    border_layer=None,
    cities: dict | None = None,
    launches: dict | None = None,
) -> folium.Map:
    """A map of sites with borders, optional range rings and query radius; self-contained once rendered.

    `sites` is a GeoDataFrame of points in lon/lat (columns as the catalogue's `sites` layer; a NULL
    geometry is listed in the footer, not drawn); `borders` and `countries` are the GeoPackage's layers;
    `rings` are dicts with a shapely `geometry` (from `geodesy.range_ring`/`annulus`, cut at ±180°) and
    the missile's `missile_id`, `name`, `class`, `range_min_km`, `range_max_km` plus `site_id`/`site_name`;
    `centre` is `(lon, lat)` and `radius_km` the query's geodesic radius around it; `sources` is the
    sources table (id, title, publisher, published_on, url), `site_sources` maps a site id to its source ids;
    `popups`, when given, are every site's `site_popups` entry (made once per snapshot by `catalogue_map`) and the
    popup arguments are not read; `border_layer`, the whole borders layer `borders` was taken from (its drawing
    is kept per layer, see `border_overlay`); `cities` (`city_layer`) and `launches` (`launch_layer`) are drawn
    when given.

    >>> m = site_map(catalogue.sites, borders=catalogue.borders, countries=catalogue.countries,
    ...              query="all sites", data_version=catalogue.version)   # doctest: +SKIP
    >>> html = render_html(m)                                             # doctest: +SKIP
    """
    generated_at = generated_at or datetime.now(timezone.utc)
    sources = sources if sources is not None else pd.DataFrame(columns=["id", "title", "publisher", "published_on", "url"])
    geometry = sites.geometry.name
    source_table = {str(s.get("id", i)): source_entry(s) for i, s in _records(sources)}
    if popups is None:
        popups = site_popups(_records(sites), borders=borders, border_distances=border_distances,
                             observations=observations, site_sources=site_sources, known_sources=source_table)
    records = _records(sites[[c for c in ("name", "current_status", "distance_km", geometry) if c in sites.columns]])
    colours = class_colours({popups[i]["class"] for i, _ in records} | {r.get("class") for r in rings or []
                                                                        if r.get("class")})
    drawable = drawable_mask(sites)
    located = list(sites.geometry.to_numpy()[drawable])
    centre_point_ = [shapely.Point(centre)] if centre is not None else []
    focus = focus_box(located + centre_point_ or list(borders[borders["kind"] != "land_border"].geometry))
    overlays = [border_overlay(borders, focus, border_layer), *ring_overlays(rings or [], colours)]
    if centre is not None and radius_km:
        overlays.append(radius_overlay(centre[0], centre[1], radius_km, centre_label))
    markers = site_layer(sites, colours, popups, cluster_above=cluster_above,
                         records=[r for r, ok in zip(records, drawable) if ok])
    statuses = set(sites["current_status"].dropna()) if "current_status" in sites else set()
    unlocated = [text(s.get("name")) or str(i) for (i, s), ok in zip(records, drawable) if not ok]
    document = {
        "title": f"missile-sites map: {query}" if query else "missile-sites map",
        "land": land_geojson(countries, focus), "land_style": LAND_STYLE, "overlays": overlays,
        "centre": centre_point(*centre, centre_label) if centre is not None and not radius_km else None,
        "sites": markers, "sources": source_table, "cities": cities, "launches": launches,
        "legend": legend_data(colours, statuses, set(borders["kind"]), cities=cities is not None,
                              launches=launches is not None),
        "footer": footer_data(query=query, data_version=data_version, generated_at=generated_at,
                              source_ids=list(source_table), shown=len(markers["rows"]), matched=number_matched,
                              unlocated=unlocated),
    }
    m = _base_map()
    MapData(document).add_to(m)
    add_controls(m)
    _fit(m, located, centre, radius_km, borders)
    return make_self_contained(m)


@_gc_paused_during
def query_map(catalogue, day, centre, radius, filters, border, page, *, rings: bool, query: str,
              cities: bool = False, launches: bool = False):
    """A site query's result and its map (the parameter groups of /map and `missile-sites map`), as of `day`."""
    from app.schemas import run_site_query

    catalogue = day.apply(catalogue)
    result = run_site_query(catalogue, centre, radius, filters, border, page)
    return result, catalogue_map(catalogue, result, rings=rings, radius_km=radius.within_km, query=query,
                                 cities=cities, launches=launches, missile_types=tuple(filters.missile_type or ()),
                                 missile_classes=tuple(filters.missile_class or ()))


def catalogue_map(catalogue, page, *, rings: bool = False, radius_km: float | None = None, query: str = "",
                  generated_at: datetime | None = None, cluster_above: int = CLUSTER_ABOVE, cities: bool = False,
                  launches: bool = False, missile_types: tuple[str, ...] = (),
                  missile_classes: tuple[str, ...] = ()) -> folium.Map:
    """The map of one site query (a `SitePage`): its sites, borders, rings if asked, radius and sources; with `cities`
    the cities in range of its sites' missiles (narrowed by `missile_types`/`missile_classes`, as the query's filters
    narrow `GET /cities/in-range`), with `launches` the launches at its sites' facilities.

    >>> page = catalogue.find_sites(centre=catalogue.place("Seoul"), within_km=150)   # doctest: +SKIP
    >>> m = catalogue_map(catalogue, page, rings=True, radius_km=150, query="near=Seoul&within_km=150")  # doctest: +SKIP
    """
    sites = page.sites
    borders = catalogue.map_borders(sites.index)
    popups = catalogue_popups(catalogue, sites, page.border_distances, borders)
    city_data = catalogue_cities(catalogue, sites, missile_types=missile_types,
                                 missile_classes=missile_classes) if cities else None
    launch_data = catalogue_launches(catalogue, sites) if launches else None
    cited = [i for site_id in sites.index for i in popups[site_id]["source_ids"]] + list(borders["source_id"].dropna())
    cited += [i for layer in (city_data, launch_data) if layer for i in layer["source_ids"]]
    centre, label = None, "query centre"
    if page.centre is not None:
        centre = (page.centre.lon, page.centre.lat)
        label = catalogue.places.loc[page.centre.place_id, "name"] if page.centre.place_id else \
            f"{page.centre.lat:.4f}, {page.centre.lon:.4f}"
    return site_map(
        sites, borders=borders, countries=catalogue.countries,
        rings=_page_rings(catalogue, sites) if rings else None, centre=centre, centre_label=label,
        radius_km=radius_km, query=query, data_version=catalogue.version, sources=catalogue.sources_for(cited),
        generated_at=generated_at, number_matched=page.number_matched, cluster_above=cluster_above, popups=popups,
        border_layer=catalogue.borders, cities=city_data, launches=launch_data,
    )


def catalogue_popups(catalogue, sites, border_distances: dict[str, dict[str, float]], borders=None) -> dict[str, dict]:
    """The sites' popups, made once per catalogue snapshot (`site_popups`) and kept with it; made for the sites
    not yet asked for (`borders`: the lines they are measured against, for their names; `map_borders` when None)."""
    kept = cached("popups", catalogue, lambda _: {})
    missing = sites[~sites.index.isin(list(kept))] if kept else sites
    if len(missing):
        fresh = site_popups(
            _records(missing), borders=catalogue.map_borders(missing.index) if borders is None else borders,
            border_distances=border_distances,
            observations=catalogue.observations[catalogue.observations["site_id"].isin(missing.index)],
            site_sources=catalogue.sources_by_site(missing), known_sources=catalogue.sources.index)
        kept.update(fresh)
    return {site_id: kept[site_id] for site_id in sites.index}


CITY_PAIRS = 3  # reaching (site, missile) pairs a city's popup lists, nearest first; the others are counted


def catalogue_cities(catalogue, sites, *, missile_types: tuple[str, ...] = (),
                     missile_classes: tuple[str, ...] = ()) -> dict:
    """The cities within range of the map's sites' missiles, as `GET /cities/in-range` answers the same query
    (`Catalogue.cities_in_range`, on WGS84; `missile_types`/`missile_classes` narrow the missiles), as `city_layer`."""
    result = catalogue.cities_in_range(list(sites.index), missile_types=missile_types, missile_classes=missile_classes)
    rows = catalogue.cities_reached(result, sort="population")
    missiles = catalogue.missiles
    missile_labels = {str(i): f"{text(n) or i} ({text(c) or NO_CLASS})"
                      for i, n, c in zip(missiles.index, missiles["name"], missiles["class"])}
    site_names = {str(i): text(n) or str(i) for i, n in zip(sites.index, sites["name"])}
    return city_layer(rows, result.pairs, site_names=site_names, missile_labels=missile_labels)


def city_layer(rows, pairs, *, site_names: dict[str, str], missile_labels: dict[str, str]) -> dict:
    """Cities as one compact array, largest first: lon, lat, population, name and country (string-table indexes),
    the nearest CITY_PAIRS reaching (site, missile, distance km) and how many pairs reach it in all; app/maps.js sizes
    each circle by its population and builds its popup.

    `rows`: `Catalogue.cities_reached` (id, name, country, population, lon, lat); `pairs`: the `CitiesInRange` pairs.
    """
    strings, at = _string_table()
    ordered = pairs.sort_values(["distance_km", "site_id", "missile_id"], kind="stable")
    counts = ordered["city_id"].value_counts().to_dict()
    head = ordered.groupby("city_id", sort=False).head(CITY_PAIRS)
    nearest: dict[str, list] = {}
    for city_id, site_id, missile_id, distance in zip(*(_values(head[c]) for c in ("city_id", "site_id", "missile_id")),
                                                      np.round(head["distance_km"].to_numpy(dtype=float), 1).tolist()):
        nearest.setdefault(city_id, []).append([at(site_names.get(site_id, site_id)),
                                                at(missile_labels.get(missile_id, missile_id)), distance])
    lons, lats = (np.round(rows[c].to_numpy(dtype=float), DISPLAY_DECIMALS).tolist() for c in ("lon", "lat"))
    items = [[lon, lat, population, at(name), at(country), nearest.get(city_id, []), counts.get(city_id, 0), at(city_id)]
             for city_id, name, country, population, lon, lat in zip(
                 _values(rows.index), _values(rows["name"]), _values(rows["country"]),
                 rows["population"].to_numpy(dtype=np.int64).tolist(), lons, lats)]
    people = int(rows["population"].sum()) if len(rows) else 0
    return {"name": f"Cities in range ({len(items):,}; {people:,} people)", "rows": items, "strings": strings,
            "columns": ["lon", "lat", "population", "name", "country", "nearest", "pairs", "id"],
            "source_ids": sorted({str(i) for i in rows["source_id"]}) if len(rows) else []}


def catalogue_launches(catalogue, sites) -> dict:
    """The launches the data places at the map's sites' own facilities and known by the snapshot's `as_of` day, as
    `GET /sites/{id}/launches` lists them; only those with a point (never the placeholder facility), as
    `launch_layer`."""
    known = catalogue.launches
    rows = known[known["site_id"].isin(list(sites.index)) & (known["cns_facility"] != CNS_PLACEHOLDER)]
    rows = rows[drawable_mask(rows)]
    order = catalogue.launch_table.frame.index.get_indexer(rows.index)  # by date, then as CNS lists them
    rows = rows.iloc[np.lexsort((order, rows["launched_on"].to_numpy(dtype=str)))]
    missiles = catalogue.missiles["name"]
    names = [text(missiles.get(m)) if text(m) in missiles.index else (text(n) or text(c))
             for m, n, c in zip(rows["missile_id"], rows["missile_name"], rows["cns_missile"])]
    return launch_layer(rows.assign(missile=names))


def launch_layer(rows) -> dict:
    """Launches as one compact array, oldest first: lon, lat, year, and the date, missile, facility, outcome, source
    id and launch id as string-table indexes; app/maps.js draws them with a slider that keeps those up to a year.

    `rows`: the launches layer's rows (a point each) with a `missile` column naming the missile.
    """
    strings, at = _string_table()
    geometries = rows.geometry.to_numpy()
    items = [[round(float(g.x), DISPLAY_DECIMALS), round(float(g.y), DISPLAY_DECIMALS), int(str(day)[:4]), at(day),
              at(missile or "unknown missile"), at(text(facility) or ""), at(text(outcome) or "not reported"),
              at(text(source_id) or ""), at(launch_id)]
             for g, day, missile, facility, outcome, source_id, launch_id in zip(
                 geometries, rows["launched_on"], rows["missile"], rows["facility_name"], rows["outcome"],
                 rows["source_id"], rows.index)]
    years = [item[2] for item in items]
    return {"name": f"Launches ({len(items)})", "rows": items, "strings": strings,
            "columns": ["lon", "lat", "year", "date", "missile", "facility", "outcome", "source_id", "id"],
            "years": [min(years), max(years)] if years else None,
            "source_ids": sorted({str(i) for i in rows["source_id"].dropna()})}


def _values(column) -> list:
    """A column's (or an index's) values as a list of Python objects (iterating a pandas string array is slow)."""
    return column.to_numpy(dtype=object).tolist()


def _string_table():
    """An empty string table and the function that gives a text's index in it (adding it the first time)."""
    strings: list[str] = []
    index: dict[str, int] = {}

    def at(value) -> int:
        value = str(value)
        if value not in index:
            index[value] = len(strings)
            strings.append(value)
        return index[value]

    return strings, at


def _page_rings(catalogue, sites) -> list[dict]:
    """Every located site's missile range rings, labelled with the site."""
    rings = []
    for site_id, site in sites.iterrows():
        if not has_point(site.geometry):
            continue
        for ring in catalogue.site_rings(site_id):
            rings.append({**ring, "site_id": site_id, "site_name": site.get("name")})
    return rings
