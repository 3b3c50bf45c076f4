"""Encoders: sites, rings and tables as GeoJSON (RFC 7946) and CSV; the one registry of output formats (FORMATS)."""

from __future__ import annotations

import csv
import html
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import shapely
import shapely.geometry
from shapely.geometry import mapping

from app import vocab
from app.catalogue import Catalogue
from app.queries import _clean, has_point, record, SitePage
from app.errors import UnsupportedParameter

GEOJSON_MEDIA_TYPE = "application/geo+json"
CSV_MEDIA_TYPE = "text/csv"
KML_MEDIA_TYPE = "application/vnd.google-earth.kml+xml"
GPKG_MEDIA_TYPE = "application/geopackage+sqlite3"
COORDINATE_DECIMALS = 7
LIST_COLUMNS = vocab.LIST_COLUMNS["sites"]  # the site columns that hold lists
SITE_COLUMNS = (
    "id", "name", "aliases", "country", "province", "facility_type", "declared_status", "current_status",
    "status_observed_on", "missile_types", "missile_classes", "unit_size", "belt", "belt_notes",
    "coord_confidence", "coord_precision_m", "coord_precision_basis", "coord_precision_reason", "coord_source_id", "notes",
    "source_ids",
)
CSV_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _round_coords(coords):
    """Nested coordinate arrays rounded to 7 decimals (about 1 cm)."""
    if isinstance(coords, (int, float)):
        return round(float(coords), COORDINATE_DECIMALS)
    return [_round_coords(c) for c in coords]


def geometry_json(geometry) -> dict | None:
    """A shapely geometry as an RFC 7946 geometry object (CCW exteriors, rounded), or None."""
    if not has_point(geometry):
        return None
    if geometry.geom_type == "Point":  # most features: the same result as below, without mapping()
        return {"type": "Point", "coordinates": [round(float(c), COORDINATE_DECIMALS) for c in geometry.coords[0]]}
    geometry = shapely.orient_polygons(geometry) if geometry.geom_type.endswith("Polygon") else geometry
    data = mapping(geometry)
    return {"type": data["type"], "coordinates": _round_coords(data["coordinates"])}


def feature(geometry, properties: dict, feature_id: str | None = None) -> dict:
    """One GeoJSON Feature."""
    body = {"type": "Feature", "geometry": geometry_json(geometry), "properties": properties}
    if feature_id is not None:
        body = {"type": "Feature", "id": feature_id, **{k: v for k, v in body.items() if k != "type"}}
    return body


def feature_collection(features: list[dict], **members) -> dict:
    """A GeoJSON FeatureCollection with extra foreign members (counts, centre, data version)."""
    return {"type": "FeatureCollection", **members, "features": features}


def site_properties(row: pd.Series) -> dict:
    """A site's attributes as JSON properties, multi-valued cells as lists."""
    properties = record(row, [c for c in SITE_COLUMNS if c in row.index])
    for column in LIST_COLUMNS:
        if column in properties:
            properties[column] = vocab.decode_list(properties[column])
    return properties


def rounded_km(value) -> float | None:
    """A distance in km rounded to the metre, or None when unknown."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else round(float(value), 3)


def reach_pairs(pairs: pd.DataFrame, *, with_site: bool = True) -> list[dict]:
    """Rows of `Catalogue.reach` as JSON: each missile's range, its margin in km with the interval the site's
    coordinate precision puts around it (null when the precision is unknown), and the verdict."""
    items = []
    for row in pairs.itertuples():
        interval = None if pd.isna(row.margin_low_km) else [rounded_km(row.margin_low_km), rounded_km(row.margin_high_km)]
        items.append({**({"site_id": row.site_id} if with_site else {}), "missile_id": row.missile_id,
                      "range_min_km": _clean(row.range_min_km), "range_max_km": row.range_max_km,
                      "range_kind": row.range_kind, "margin_km": rounded_km(row.margin_km),
                      "margin_interval_km": interval,
                      "coord_precision_m": None if pd.isna(row.precision_km) else round(row.precision_km * 1000, 3),
                      "verdict": row.verdict})
    return items


def site_features(page: SitePage) -> list[dict]:
    """The features of one page of sites, with distances when the query had a centre.

    Read column by column (a pandas Series per row cost most of an API answer): the same values as
    ``site_properties`` of each row, in the same order.
    """
    sites = page.sites
    columns = [c for c in SITE_COLUMNS if c in sites.columns]
    cells = [[_clean(v) for v in sites[c].tolist()] for c in columns]
    lists = [c in LIST_COLUMNS for c in columns]
    extras = [c for c in ("distance_km", "border_distance_km") if c in sites.columns]
    extra_cells = [sites[c].tolist() for c in extras]
    features = []
    for i, (site_id, geometry) in enumerate(zip(sites.index, sites.geometry.array)):
        properties = {c: vocab.decode_list(values[i]) if is_list else values[i]
                      for c, values, is_list in zip(columns, cells, lists)}
        for c, values in zip(extras, extra_cells):
            properties[c] = rounded_km(values[i])
        borders = page.border_distances.get(site_id, {})
        properties["border_distances_km"] = {b: rounded_km(d) for b, d in borders.items()}
        features.append(feature(geometry, properties, site_id))
    return features


def sites_geojson(catalogue: Catalogue, page: SitePage, *, limit: int, offset: int) -> dict:
    """A page of sites as a FeatureCollection with its paging and data version."""
    centre = None if page.centre is None else {"lon": page.centre.lon, "lat": page.centre.lat,
                                               "place_id": page.centre.place_id}
    return feature_collection(
        site_features(page), numberMatched=page.number_matched, numberReturned=len(page.sites),
        limit=limit, offset=offset, centre=centre, data_version=catalogue.version,
    )


def csv_cell(value) -> str:
    """A value as a CSV cell that a spreadsheet will not run as a formula."""
    if value is None:
        return ""
    if not isinstance(value, str):
        return str(value)
    return "'" + value if value.startswith(CSV_FORMULA_PREFIXES) else value


# a dict property becomes one CSV column per key, named by this prefix and the key (border_km_mdl, ...)
CSV_DICT_PREFIXES = {"border_distances_km": "border_km_"}


def _csv_columns(features: list[dict]) -> list[tuple[str, str | None]]:
    """(property, key) per CSV column, in property order: a dict property one column per key it holds anywhere."""
    columns: dict[tuple[str, str | None], None] = {}
    for item in features:
        for name, value in item["properties"].items():
            if isinstance(value, dict):
                columns.update(dict.fromkeys((name, key) for key in value))
            else:
                columns[(name, None)] = None
    order = {name: i for i, name in enumerate(dict.fromkeys(name for name, _ in columns))}
    return sorted(columns, key=lambda column: order[column[0]])


def _csv_header(name: str, key: str | None) -> str:
    """A column's header: the property's name, or for a dict property its prefix and the key."""
    return name if key is None else CSV_DICT_PREFIXES.get(name, f"{name}_") + key


def _csv_value(value) -> str | None:
    """One cell's text: a list as a JSON array (GDAL's CSV convention for string lists; empty: blank)."""
    if isinstance(value, list):
        return json.dumps(value, ensure_ascii=False) if value else None
    return value


def _wkt(geometry: dict | None) -> str:
    """An RFC 7946 geometry object (already rounded) as WKT, or empty."""
    return "" if geometry is None else shapely.to_wkt(shapely.geometry.shape(geometry), rounding_precision=-1)


def features_csv(features: list[dict]) -> str:
    """Features as CSV, for the API and the CLI alike: lon, lat (points), wkt, then every property, a list as a JSON
    array, a dict (border distances) one column per key (`border_km_mdl`, ...); formula-like cells neutralised."""
    columns = _csv_columns(features)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["lon", "lat", "wkt", *(_csv_header(name, key) for name, key in columns)])
    for item in features:
        geometry, properties = item["geometry"], item["properties"]
        lon, lat = (geometry["coordinates"] if geometry and geometry["type"] == "Point" else (None, None))
        cells = [properties.get(name) if key is None else (properties.get(name) or {}).get(key)
                 for name, key in columns]
        writer.writerow([csv_cell(lon), csv_cell(lat), csv_cell(_wkt(geometry)),
                         *(csv_cell(_csv_value(cell)) for cell in cells)])
    return out.getvalue()


def html_cell(value) -> str:
    """A property value as escaped HTML text for a table cell: a list one item per line, a dict `key: value` lines."""
    if isinstance(value, list):
        return "<br>".join(html_cell(v) for v in value)
    if isinstance(value, dict):
        return "<br>".join(f"{html.escape(str(k))}: {html_cell(v)}" for k, v in value.items())
    return "" if value is None else html.escape(str(value))


# --- the registry of output formats ----------------------------------------------------------------


@dataclass(frozen=True)
class Format:
    """One output format: its name (`f=` on /sites and OGC items, `--format` of the CLI), media type, and encoder."""

    name: str
    media_type: str
    download: bool  # answered as an attachment, `<name>.<format name>`
    encode: Callable[[Catalogue, list[dict], str], str] | None = None
    """(catalogue, features, title) -> text; None: built by its caller (a GeoJSON page, a GeoPackage snapshot)."""


def _csv(_catalogue: Catalogue, features: list[dict], _title: str) -> str:
    return features_csv(features)


def _kml(catalogue: Catalogue, features: list[dict], title: str) -> str:
    from app.exports import features_kml  # KML (fastkml) loads with the first KML asked for, not at start-up

    return features_kml(catalogue, features, title)


FORMATS = {form.name: form for form in (
    Format("geojson", GEOJSON_MEDIA_TYPE, download=False),  # a page with counts and links, built by the route or CLI
    Format("csv", CSV_MEDIA_TYPE, download=True, encode=_csv),
    Format("kml", KML_MEDIA_TYPE, download=True, encode=_kml),
    Format("gpkg", GPKG_MEDIA_TYPE, download=True),  # a consistent copy of the whole store (exports.cached_export)
)}
"""Every output format of features, by name: /sites, OGC items and the CLI all read this table."""
FORMAT_ALIASES = {"json": "geojson"}
DOWNLOADS = {name: form for name, form in FORMATS.items() if form.download}
TEXT_FORMATS = {name: form for name, form in FORMATS.items() if form.encode is not None}
"""The formats encoded from features as text: what the CLI writes besides its table and GeoJSON."""


def format_for(accept: str, f: str | None, allowed: tuple[str, ...]) -> str:
    """The format asked by `f` (an alias resolved), else the download whose media type Accept names, else geojson;
    400 for an `f` outside `allowed`."""
    if f is not None:
        if f not in allowed:
            raise UnsupportedParameter(f"unknown f {f!r}; allowed: {', '.join(allowed)}", parameter="f")
        return FORMAT_ALIASES.get(f, f)
    for name, form in DOWNLOADS.items():
        if form.media_type in accept:
            return name
    return "geojson"
