"""Pure map builders: catalogue data in, a self-contained `folium.Map` out; nothing here writes a file.

The route, the CLI and the notebook all call `catalogue_map` (which gathers a query's data from a
catalogue) or `site_map` (which takes the data itself). `render_html` turns a map into one HTML file
with Leaflet and every plugin inlined from `app/vendor/`, so it opens with no network at all.

Conventions: longitude before latitude in geometries, distances in km in names (`radius_km`), range
rings and the query radius as geodesic polygons on WGS84 (`app.geodesy`), cut at ±180°. Every piece
of text that comes from the data goes through `inert()` before it reaches HTML or a folium template.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import mimetypes
import re
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

import folium
import numpy as np
import pandas as pd
import shapely
import shapely.affinity
from branca.element import Element, MacroElement
from folium.elements import JSCSSMixin
from folium.plugins import Fullscreen, MarkerCluster, MeasureControl
from folium.template import Template
from shapely.geometry import mapping

from app import geodesy
from app.catalogue import has_point
from app.vocab import decode_list

VENDOR_DIR = Path(__file__).resolve().parent / "vendor"
# folium's resource names -> the vendored file inlined in their place (see app/vendor/README.md).
VENDORED_JS = {
    "jquery": "jquery/dist/jquery.min.js",
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
# folium.Map's defaults for awesome-marker icons and Bootstrap; these maps use neither, so they are dropped.
UNUSED_DEFAULTS = {
    "bootstrap", "awesome_markers", "bootstrap_css", "glyphicons_css", "awesome_markers_font_css",
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
FOCUS_MARGIN_DEG = 4.0
FOCUS_MAX_SPAN_DEG = (50.0, 35.0)
DETAIL = {"tolerance_deg": 0.001, "decimals": 4}
COARSE = {"tolerance_deg": 0.1, "decimals": 2, "min_area_deg2": 0.05}
TILE_LAYERS = (
    ("OpenStreetMap (online)", "https://tile.openstreetmap.org/{z}/{x}/{y}.png",
     '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors', 19),
    ("Esri World Imagery (online)",
     "https://server.arcgisonline.com/ArcGIS/rest/services/World_Imagery/MapServer/tile/{z}/{y}/{x}",
     "Tiles &copy; Esri &mdash; Source: Esri, Maxar, Earthstar Geographics, and the GIS User Community", 18),
)
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
"""
TEXT_TOOLTIP_JS = """function (feature, layer) {
    var label = document.createElement('span');
    label.textContent = feature.properties.label;
    layer.bindTooltip(label, {sticky: true});
}"""


# --- untrusted text ----------------------------------------------------------------------------


def blank(value) -> bool:
    """Whether a cell is empty: None, NaN, NA or a blank string."""
    if isinstance(value, str):
        return not value.strip()
    return value is None or (np.ndim(value) == 0 and bool(pd.isna(value)))


def inert(value) -> str:
    """Text made inert in HTML, in folium's JS template literals and in the Jinja templates branca compiles again
    from rendered scripts (`<>&"'`, backtick, `$`, backslash, braces)."""
    text = "" if blank(value) else str(value)
    escaped = html.escape(text, quote=True).replace("`", "&#96;").replace("$", "&#36;").replace("\\", "&#92;")
    return escaped.replace("{", "&#123;").replace("}", "&#125;")


def safe_url(url) -> str | None:
    """An http(s) URL escaped for an href, or None for anything else (javascript:, data:, blank)."""
    if not isinstance(url, str) or urlsplit(url.strip()).scheme.lower() not in ("http", "https"):
        return None
    return inert(url.strip())


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


def status_svg(status: str, colour: str, size: int = 18) -> str:
    """An SVG symbol: colour by missile class, shape and outline by status (see STATUS_SHAPES)."""
    c, r = size / 2, size / 2 - 2
    stroke = f'stroke="#1a1a1a" stroke-width="1.5" fill="{colour}"'
    if status == "active":
        shape = f'<circle cx="{c}" cy="{c}" r="{r}" {stroke}/>'
    elif status == "inactive":
        shape = f'<circle cx="{c}" cy="{c}" r="{r - 1}" stroke="{colour}" stroke-width="3.5" fill="#ffffff"/>'
    elif status == "under_construction":
        shape = f'<polygon points="{c},1 {size - 1},{size - 2} 1,{size - 2}" {stroke}/>'
    else:
        shape = (f'<polygon points="{c},1 {size - 1},{c} {c},{size - 1} 1,{c}" {stroke} '
                 'stroke-dasharray="3 2"/>')
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}">{shape}</svg>'


# --- popups ------------------------------------------------------------------------------------


def _row(label: str, value) -> str:
    """One escaped table row of a popup, or nothing when the value is blank."""
    text = ", ".join(_items(value)) if isinstance(value, (list, tuple)) else value
    if blank(text):
        return ""
    return f"<tr><th>{inert(label)}</th><td>{inert(text)}</td></tr>"


def source_item(source: pd.Series) -> str:
    """One source as an escaped list item, linked when its URL is http(s)."""
    title = inert(source.get("title") or source.get("id"))
    url = safe_url(source.get("url"))
    link = f'<a href="{url}" target="_blank" rel="noopener noreferrer">{title}</a>' if url else title
    details = [inert(source.get(k)) for k in ("publisher", "published_on") if inert(source.get(k))]
    return f"<li>{link}{' (' + ', '.join(details) + ')' if details else ''} <code>{inert(source.get('id'))}</code></li>"


def site_popup_html(site, *, border_distances: dict, border_names: dict, observations: pd.DataFrame,
                    sources: pd.DataFrame, distance_km=None) -> str:
    """A site's popup: attributes, border distances, observation dates and source links, all escaped."""
    return _popup_html(
        site, border_distances=border_distances, border_names=border_names,
        observation_items=[_observation_item(o) for _, o in observations.sort_values("observed_on").iterrows()],
        source_items=[source_item(s) for _, s in sources.iterrows()], distance_km=distance_km)


def _popup_html(site, *, border_distances: dict, border_names: dict, observation_items: list[str],
                source_items: list[str], distance_km=None) -> str:
    """site_popup_html from prepared (escaped) observation and source list items; `site` a Series or a dict."""
    rows = "".join([
        _row("id", site.get("id")), _row("also known as", _items(site.get("aliases"))),
        _row("country", site.get("country")), _row("facility", site.get("facility_type")),
        _row("declared status", site.get("declared_status")),
        _row("current status", _status_text(site)), _row("missiles", _items(site.get("missile_types"))),
        _row("missile classes", _items(site.get("missile_classes"))),
        _row("coordinate confidence", site.get("coord_confidence")),
        _row("distance from query centre", None if distance_km is None else _km(distance_km)),
    ])
    parts = [f'<div class="site-popup"><h4>{inert(site.get("name"))}</h4><table>{rows}</table>']
    if inert(site.get("notes")):
        parts.append(f'<p class="notes">{inert(site.get("notes"))}</p>')
    if border_distances:
        lines = "".join(f"<tr><th>{inert(border_names.get(b, b))}</th><td>{_km(d)}</td></tr>"
                        for b, d in sorted(border_distances.items(), key=lambda item: item[1]))
        parts.append(f"<h5>Distance to borders (geodesic)</h5><table>{lines}</table>")
    if observation_items:
        parts.append(f"<h5>Observations</h5><ul>{''.join(observation_items)}</ul>")
    if source_items:
        parts.append(f"<h5>Sources</h5><ol>{''.join(source_items)}</ol>")
    return "".join(parts) + "</div>"


def _status_text(site) -> str:
    """Current status with the date it was last observed."""
    status, seen = site.get("current_status"), site.get("status_observed_on")
    return str(status) if blank(seen) else f"{status} (observed {seen})"


def _observation_item(observation: pd.Series) -> str:
    """One observation as an escaped list item: date, kind, status seen, source id."""
    words = [str(observation.get(k)) for k in ("kind", "status_seen") if not blank(observation.get(k))]
    source = observation.get("source_id")
    source_text = "" if blank(source) else f" <code>{inert(source)}</code>"
    return f"<li>{inert(observation.get('observed_on'))}: {inert(', '.join(words))}{source_text}</li>"


# --- layers ------------------------------------------------------------------------------------


def _display_geometry(geometry, tolerance_deg: float = 0.0, decimals: int = DISPLAY_DECIMALS,
                      min_area_deg2: float = 0.0) -> dict | None:
    """A geometry as GeoJSON for drawing: simplified, small islands dropped, coordinates rounded; None if empty."""
    if tolerance_deg:
        geometry = geometry.simplify(tolerance_deg, preserve_topology=True)
    if min_area_deg2 and geometry.geom_type == "MultiPolygon":
        geometry = shapely.MultiPolygon([p for p in geometry.geoms if p.area >= min_area_deg2])
    geometry = shapely.set_precision(geometry, 10.0 ** -decimals, mode="pointwise")
    return None if geometry.is_empty else mapping(geometry)


def focus_box(shapes) -> tuple[float, float, float, float] | None:
    """The box drawn in detail: around the given shapes with a margin, or None when they span too much."""
    shapes = [g for g in shapes if has_point(g)]
    if not shapes:
        return None
    west, south, east, north = shapely.GeometryCollection(shapes).bounds
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
                   maxZoom=max(layer[3] for layer in TILE_LAYERS))
    # Below the tile pane (200), so online tiles cover the vector basemap when they load.
    folium.map.CustomPane("basemap", z_index=150, pointer_events=False).add_to(m)
    m.get_root().header.add_child(Element(
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


_LAND_CACHE: dict[str, tuple[list, list[dict]]] = {}


def _land(countries) -> tuple[list, list[dict]]:
    """The countries cut at the antimeridian, and their coarse drawing: the same for every map of the same countries,
    so kept (a few entries, keyed by the geometries' bytes) instead of simplified again for each map (most of a second)."""
    key = hashlib.sha256(b"|".join(w or b"" for w in shapely.to_wkb(np.asarray(countries.geometry, dtype=object)))).hexdigest()
    if key not in _LAND_CACHE:
        land = [split_at_antimeridian(g) if has_point(g) else None for g in countries.geometry]
        if len(_LAND_CACHE) >= 4:
            _LAND_CACHE.pop(next(iter(_LAND_CACHE)))
        _LAND_CACHE[key] = (land, _features(land, [{}] * len(land), **COARSE))
    return _LAND_CACHE[key]


def add_vector_basemap(m: folium.Map, countries, focus=None) -> None:
    """Land from the GeoPackage's countries, always drawn under any tiles: coarse worldwide, detailed in focus."""
    land, cached = _land(countries)
    coarse = [dict(feature) for feature in cached]  # folium adds an "id" to each feature it is given
    if focus is not None:
        coarse += _features(shapely.clip_by_rect(np.array(land, dtype=object), *focus), [{}] * len(land), **DETAIL)
    folium.GeoJson(_collection(coarse), name="Land (vector basemap)", control=False, pane="basemap",
                   style_function=lambda _: LAND_STYLE).add_to(m)


def add_tile_layers(m: folium.Map) -> None:
    """Base layers: the offline basemap alone (the default), or online OSM or satellite tiles over it."""
    folium.FeatureGroup(name="Offline vector basemap", overlay=False).add_to(m)
    for name, url, attribution, max_zoom in TILE_LAYERS:
        folium.TileLayer(url, name=name, attr=attribution, overlay=False, show=False, max_zoom=max_zoom).add_to(m)


def add_borders(m: folium.Map, borders, focus=None) -> None:
    """The MDL and DMZ edges in full, and the land borders (detailed in focus), labelled by name."""
    drawn = [kind for kind in ("mdl", "dmz_edge", "land_border") if kind in set(borders["kind"])]
    group = folium.FeatureGroup(name="Borders: " + ", ".join(BORDER_LABELS[kind] for kind in drawn))
    box = shapely.box(*focus) if focus is not None else None
    for kind in ("land_border", "dmz_edge", "mdl"):
        rows = borders[borders["kind"] == kind]
        labels = [{"label": str(row["name"]), "border_id": str(row["id"])} for _, row in rows.iterrows()]
        if kind != "land_border":
            features = _features(rows.geometry, labels)
        elif box is None:
            features = _features(rows.geometry, labels, **COARSE)
        else:
            features = (_features(rows.geometry.clip_by_rect(*focus), labels, **DETAIL)
                        + _features(rows.geometry.simplify(COARSE["tolerance_deg"]).difference(box), labels,
                                    decimals=COARSE["decimals"]))
        if features:
            style = {**BORDER_STYLES.get(kind, BORDER_STYLES["land_border"]), "className": f"border border-{kind}"}
            folium.GeoJson(_collection(features), style_function=lambda _, s=style: s,
                           on_each_feature=folium.JsCode(TEXT_TOOLTIP_JS)).add_to(group)
    group.add_to(m)


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


def add_range_rings(m: folium.Map, rings: list[dict], colours: dict[str, str]) -> None:
    """Each missile's geodesic range area (max-range disc less the min-range hole), one overlay per missile.

    The area is drawn as its polygon (a faint fill, cut at ±180°) and stroked along its range circles.
    """
    groups: dict[str, folium.FeatureGroup] = {}
    fill_opacity = min(0.05, 0.1 / max(len(rings), 1))  # many overlapping discs must not tint the whole map
    for ring in rings:
        key = str(ring.get("missile_id") or ring.get("radius_km"))
        if key not in groups:
            groups[key] = folium.FeatureGroup(name=inert(f"Range: {_missile_label(ring)}"))
        colour = colours.get(ring.get("class"), NO_CLASS_COLOUR)
        area = {"stroke": False, "fillColor": colour, "fillOpacity": fill_opacity, "interactive": False,
                "className": "range-area"}
        outline = {"color": colour, "weight": 1.6, "opacity": 0.9, "className": "range-ring"}
        ids = {"site_id": str(ring.get("site_id")), "missile_id": key}
        features = [({"type": "Feature", "properties": {**ids, "part": "area"},
                      "geometry": _display_geometry(ring["geometry"])}, area),
                    ({"type": "Feature", "properties": {**ids, "part": "outline", "label": _ring_label(ring)},
                      "geometry": _display_geometry(ring_outline(ring["geometry"]))}, outline)]
        for feature, style in features:
            folium.GeoJson(feature, style_function=lambda _, s=style: s,
                           on_each_feature=folium.JsCode(TEXT_TOOLTIP_JS)).add_to(groups[key])
    for group in groups.values():
        group.add_to(m)


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


def add_query_radius(m: folium.Map, lon: float, lat: float, radius_km: float, label: str) -> None:
    """The query's radius as a geodesic polygon around its centre, with the centre marked."""
    geometry = geodesy.range_ring(lon, lat, radius_km * 1000)
    group = folium.FeatureGroup(name=inert(f"Query radius: {radius_km:,.0f} km of {label}"))
    style = {"color": "#111111", "weight": 2, "dashArray": "8 6", "fill": False, "className": "query-radius"}
    feature = {"type": "Feature", "properties": {"label": f"{radius_km:,.1f} km (geodesic) of {label}"},
               "geometry": _display_geometry(geometry)}
    folium.GeoJson(feature, style_function=lambda _: style, on_each_feature=folium.JsCode(TEXT_TOOLTIP_JS)).add_to(group)
    folium.CircleMarker([lat, lon], radius=4, color="#111111", fill=True, fill_opacity=1,
                        tooltip=inert(label), class_name="query-centre").add_to(group)
    group.add_to(m)


def add_query_centre(m: folium.Map, lon: float, lat: float, label: str) -> None:
    """The query's centre, when it has no radius."""
    folium.CircleMarker([lat, lon], radius=4, color="#111111", fill=True, fill_opacity=1, tooltip=inert(label),
                        class_name="query-centre").add_to(m)


class _Script(Element):
    """Script text added to the page as it is (branca would compile an Element's text as a Jinja template)."""

    def __init__(self, text: str):
        super().__init__()
        self._text = text

    def render(self, **kwargs) -> str:
        return self._text


class SiteMarkers(MacroElement):
    """Every site marker of a layer from one JSON array, built in one loop; each marker is also a global, as
    folium's are. folium's Marker, Popup and Tooltip compile Jinja templates per site (seconds for thousands),
    and branca compiles each rendered script once more as a template, so data reading ``{{ ... }}`` would run:
    this script is written without Jinja and added as it is.

    Rows are ``[lat, lon, icon HTML, tooltip HTML, popup HTML]``, all already escaped; the JSON has ``<``
    and ``>`` as ``\\u003c`` and ``\\u003e``, so no data closes the script.
    """

    def __init__(self, rows: list[list]):
        super().__init__()
        self._name = "SiteMarkers"
        text = json.dumps(rows, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        self.rows_json = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("\u2028", "\\u2028") \
            .replace("\u2029", "\\u2029")

    def render(self, **kwargs) -> None:
        script = f"""
        (function () {{
            var group = {self._parent.get_name()}, markers = [];
            {self.rows_json}.forEach(function (row, i) {{
                var marker = L.marker([row[0], row[1]], {{icon: L.divIcon({{
                    html: row[2], iconSize: [18, 18], iconAnchor: [9, 9], className: "site-icon"}})}});
                marker.bindTooltip("<div>" + row[3] + "</div>", {{sticky: false}});
                marker.bindPopup(row[4], {{maxWidth: 380}});
                window["{self.get_name()}_" + i] = marker;
                markers.push(marker);
            }});
            if (group.addLayers) {{ group.addLayers(markers); }} else {{ markers.forEach(function (m) {{ group.addLayer(m); }}); }}
        }})();
"""
        self.get_root().script.add_child(_Script(script), name=self.get_name())


def add_sites(m: folium.Map, sites, colours: dict[str, str], popups: dict[str, str], *,
              cluster_above: int = CLUSTER_ABOVE, records: list | None = None) -> int:
    """Site markers (clustered when there are many) with escaped popups and tooltips; returns how many.

    `records`: the sites' ``_records`` when the caller has them already.
    """
    geometry = sites.geometry.name
    located = [(i, s) for i, s in (records if records is not None else _records(sites)) if has_point(s[geometry])]
    name = inert(f"Sites ({len(located)})")
    group = MarkerCluster(name=name, options={"maxClusterRadius": 40}) if len(located) > cluster_above \
        else folium.FeatureGroup(name=name)
    rows = []
    for site_id, site in located:
        status = str(site.get("current_status") or "unknown")
        icon_html = (f'<div class="site-marker" data-site-id="{inert(site_id)}" data-status="{inert(status)}">'
                     f"{status_svg(status, colours[site_class(site)])}</div>")
        point = site[geometry]
        rows.append([point.y, point.x, icon_html, inert(site.get("name")), popups[site_id]])
    SiteMarkers(rows).add_to(group)
    group.add_to(m)
    return len(located)


def _records(frame) -> list[tuple]:
    """(index, row as a dict) for each row: what iterrows gives, without building a Series per row."""
    names, columns = list(frame.columns), [frame[c].tolist() for c in frame.columns]
    return [(i, dict(zip(names, values))) for i, values in zip(frame.index, zip(*columns))]


# --- controls, legend, footer ------------------------------------------------------------------


class MapBox(MacroElement):
    """A Leaflet control holding prepared (already escaped) HTML: the legend and the footer."""

    _template = Template("""
        {% macro script(this, kwargs) %}
        (function () {
            var box = L.control({position: {{ this.position|tojson }}});
            box.onAdd = function () {
                var div = L.DomUtil.create('div', 'map-box ' + {{ this.css_class|tojson }});
                div.innerHTML = {{ this.html|tojson }};
                L.DomEvent.disableClickPropagation(div);
                L.DomEvent.disableScrollPropagation(div);
                return div;
            };
            box.addTo({{ this._parent.get_name() }});
        })();
        {% endmacro %}
    """)

    def __init__(self, html_text: str, *, position: str, css_class: str):
        super().__init__()
        self._name = "MapBox"
        self.html, self.position, self.css_class = html_text, position, css_class


def legend_html(colours: dict[str, str], statuses, border_kinds=None) -> str:
    """The legend: colour by missile class, shape by status, line styles of the borders drawn (of the kinds given;
    all when None)."""
    classes = "".join(f'<div><span class="swatch" style="background:{c}"></span>{inert(n)}</div>'
                      for n, c in colours.items())
    shapes = "".join(f"<div>{status_svg(s, '#9e9e9e', 14)}{inert(s.replace('_', ' '))}: {STATUS_SHAPES[s]}</div>"
                     for s in STATUS_SHAPES if s in statuses or not statuses)
    lines = "".join(f'<div><svg width="22" height="8"><line x1="0" y1="4" x2="22" y2="4" stroke="{s["color"]}" '
                    f'stroke-width="{s["weight"]}" stroke-dasharray="{s.get("dashArray", "")}"/></svg>'
                    f"{BORDER_LABELS[k]}</div>" for k, s in BORDER_STYLES.items()
                    if border_kinds is None or k in border_kinds)
    return (f"<h4>Missile class (longest range at the site)</h4>{classes}<h4>Status</h4>{shapes}"
            f"<h4>Borders</h4>{lines}")


def footer_html(*, query: str, data_version: str, generated_at: datetime, sources: pd.DataFrame,
                shown: int, matched: int | None, unlocated: list[str]) -> str:
    """The footer: the query, the data version, the generation time and the sources, all escaped."""
    counted = f"{shown} sites drawn" + (f" of {matched} matching" if matched is not None and matched != shown else "")
    lines = [f"<div><b>Query:</b> <code>{inert(query)}</code> &middot; {counted}</div>"]
    if unlocated:
        lines.append(f"<div>Not drawn (no sourced coordinate): {inert(', '.join(unlocated))}</div>")
    lines.append(f"<div><b>Data version</b> (SHA-256 of the GeoPackage as loaded, then +N for the last change applied, @day for as_of): <code>{inert(data_version)}</code></div>")
    lines.append(f"<div><b>Generated:</b> {inert(generated_at.isoformat(timespec='seconds'))} &middot; "
                 "distances, rings and radius geodesic on WGS84</div>")
    items = "".join(source_item(s) for _, s in sources.iterrows())
    lines.append(f'<details class="sources"><summary>Sources ({len(sources)})</summary><ol>{items}</ol></details>')
    return "".join(lines)


def add_controls(m: folium.Map) -> None:
    """Layer control, measure tool (km) and fullscreen button; the scale bar comes with the map."""
    MeasureControl(position="topleft", primary_length_unit="kilometers", secondary_length_unit="miles",
                   primary_area_unit="sqkilometers", secondary_area_unit="hectares").add_to(m)
    Fullscreen(position="topleft").add_to(m)
    folium.LayerControl(position="topright", collapsed=True).add_to(m)


def _fit(m: folium.Map, sites, centre, radius_km, borders) -> None:
    """Fit the view to the drawn sites and the query radius, or to the MDL and DMZ when there are none."""
    shapes = [g for g in sites.geometry if has_point(g)]
    if centre is not None and radius_km:
        shapes.append(geodesy.range_ring(centre[0], centre[1], radius_km * 1000))
    elif centre is not None:
        shapes.append(shapely.Point(centre))
    if not shapes:
        shapes = [g for g in borders[borders["kind"].isin(["mdl", "dmz_edge"])].geometry if g is not None]
    if not shapes:
        return
    west, south, east, north = shapely.GeometryCollection(shapes).bounds
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
    for name in [n for n in VENDORED_JS if n in js]:  # jQuery and Leaflet before their plugins
        source = geodesic_measure_js() if name == "leaflet_measure_js" else vendored_js(js[name])
        header.add_child(Element(f"<script>{source}</script>"), name=f"inline_{name}")
    if "leaflet" in js:  # Leaflet guesses its default marker images' folder from a CSS url; give it data: URIs
        header.add_child(Element(f"<script>{default_icon_js()}</script>"), name="inline_leaflet_default_icon")
    for name in [n for n in VENDORED_CSS if n in css]:
        header.add_child(Element(f"<style>{vendored_css(css[name])}</style>"), name=f"inline_{name}")
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


# --- the builders ------------------------------------------------------------------------------


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
) -> folium.Map:
    """A map of sites with borders, optional range rings and query radius; self-contained once rendered.

    `sites` is a GeoDataFrame of points in lon/lat (columns as the catalogue's `sites` layer; a NULL
    geometry is listed in the footer, not drawn); `borders` and `countries` are the GeoPackage's layers;
    `rings` are dicts with a shapely `geometry` (from `geodesy.range_ring`/`annulus`, cut at ±180°) and
    the missile's `missile_id`, `name`, `class`, `range_min_km`, `range_max_km` plus `site_id`/`site_name`;
    `centre` is `(lon, lat)` and `radius_km` the query's geodesic radius around it; `sources` is the
    sources table (id, title, publisher, published_on, url), `site_sources` maps a site id to its source ids.

    >>> m = site_map(catalogue.sites, borders=catalogue.borders, countries=catalogue.countries,
    ...              query="all sites", data_version=catalogue.version)   # doctest: +SKIP
    >>> html = render_html(m)                                             # doctest: +SKIP
    """
    generated_at = generated_at or datetime.now(timezone.utc)
    sources = sources if sources is not None else pd.DataFrame(columns=["id", "title", "publisher", "published_on", "url"])
    observations = observations if observations is not None else pd.DataFrame(columns=["site_id", "observed_on"])
    border_distances, site_sources = border_distances or {}, site_sources or {}
    border_names = {str(b["id"]): str(b["name"]) for _, b in borders.iterrows()}
    records = _records(sites)
    colours = class_colours([site_class(s) for _, s in records] + [r.get("class") for r in rings or []
                                                                   if r.get("class")])
    located = [g for g in sites.geometry if has_point(g)]
    centre_point = [shapely.Point(centre)] if centre is not None else []
    focus = focus_box(located + centre_point or list(borders[borders["kind"] != "land_border"].geometry))
    m = _base_map()
    add_vector_basemap(m, countries, focus)
    add_tile_layers(m)
    add_borders(m, borders, focus)
    if rings:
        add_range_rings(m, rings, colours)
    if centre is not None and radius_km:
        add_query_radius(m, centre[0], centre[1], radius_km, centre_label)
    elif centre is not None:
        add_query_centre(m, centre[0], centre[1], centre_label)
    observation_items = {  # per site, oldest first, as site_popup_html lists them
        site_id: [_observation_item(o) for _, o in rows.sort_values("observed_on").iterrows()]
        for site_id, rows in observations.groupby("site_id", sort=False)
    } if len(observations) else {}
    source_items: dict = {}
    for _, source in sources.iterrows() if "id" in sources else ():
        source_items.setdefault(source["id"], []).append(source_item(source))
    popups = {
        site_id: _popup_html(
            site, border_distances=border_distances.get(site_id, {}), border_names=border_names,
            observation_items=observation_items.get(site_id, []),
            source_items=[item for i in dict.fromkeys(site_sources.get(site_id, [])) for item in source_items.get(i, [])],
            distance_km=site.get("distance_km"))
        for site_id, site in records
    }
    shown = add_sites(m, sites, colours, popups, cluster_above=cluster_above, records=records)
    statuses = set(sites["current_status"].dropna()) if "current_status" in sites else set()
    MapBox(legend_html(colours, statuses, set(borders["kind"])), position="topright", css_class="legend").add_to(m)
    geometry = sites.geometry.name
    unlocated = [str(s.get("name")) for _, s in records if not has_point(s[geometry])]
    MapBox(footer_html(query=query, data_version=data_version, generated_at=generated_at, sources=sources,
                       shown=shown, matched=number_matched, unlocated=unlocated),
           position="bottomleft", css_class="footer").add_to(m)
    add_controls(m)
    _fit(m, sites, centre, radius_km, borders)
    m.get_root().title = inert(f"missile-sites map: {query}" if query else "missile-sites map")
    return make_self_contained(m)


def catalogue_map(catalogue, page, *, rings: bool = False, radius_km: float | None = None, query: str = "",
                  generated_at: datetime | None = None) -> folium.Map:
    """The map of one site query (a `SitePage`): its sites, borders, rings if asked, radius and sources.

    >>> page = catalogue.find_sites(centre=catalogue.place("Seoul"), within_km=150)   # doctest: +SKIP
    >>> m = catalogue_map(catalogue, page, rings=True, radius_km=150, query="near=Seoul&within_km=150")  # doctest: +SKIP
    """
    sites = page.sites
    site_sources = catalogue.sources_by_site(sites)
    borders = catalogue.map_borders(sites.index)
    cited = [i for ids in site_sources.values() for i in ids] + list(borders["source_id"].dropna())
    centre, label = None, "query centre"
    if page.centre is not None:
        centre = (page.centre.lon, page.centre.lat)
        label = catalogue.places.loc[page.centre.place_id, "name"] if page.centre.place_id else \
            f"{page.centre.lat:.4f}, {page.centre.lon:.4f}"
    return site_map(
        sites, borders=borders, countries=catalogue.countries,
        rings=_page_rings(catalogue, sites) if rings else None, centre=centre, centre_label=label,
        radius_km=radius_km, query=query, data_version=catalogue.version, sources=catalogue.sources_for(cited),
        generated_at=generated_at, border_distances=page.border_distances,
        observations=catalogue.observations[catalogue.observations["site_id"].isin(sites.index)],
        site_sources=site_sources, number_matched=page.number_matched,
    )


def _page_rings(catalogue, sites) -> list[dict]:
    """Every located site's missile range rings, labelled with the site."""
    rings = []
    for site_id, site in sites.iterrows():
        if not has_point(site.geometry):
            continue
        for ring in catalogue.site_rings(site_id):
            rings.append({**ring, "site_id": site_id, "site_name": site.get("name")})
    return rings
