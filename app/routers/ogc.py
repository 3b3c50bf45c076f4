"""OGC API - Features Part 1 (core, GeoJSON, HTML, OAS 3.0) over the catalogue's layers."""

from __future__ import annotations

import datetime as dt
import html
import math
import re
from dataclasses import dataclass
from typing import Annotated, Callable
from urllib.parse import urlencode

import pandas as pd
import shapely
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse

from app.catalogue import Catalogue, Centre, SitePage, has_point, record, split_list
from app.errors import InvalidParameter, NotFound, UnsupportedParameter
from app.exports import EXPORT_MEDIA_TYPES, export_response
from app.formats import GEOJSON_MEDIA_TYPE, feature, site_features
from app.routers import CatalogueDep, GeoJSONResponse
from app.schemas import MAX_LIMIT, MAX_RADIUS_KM, as_of_fields, catalogue_as_of
from app.vocab import LIST_COLUMNS

router = APIRouter(tags=["ogc api features"])

CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/html",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
]
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
OPENAPI_MEDIA_TYPE = "application/vnd.oai.openapi+json;version=3.0"
DEFAULT_LIMIT = 100
STANDARD_PARAMETERS = ("f", "bbox", "limit", "offset", "as_of")
RADIUS_PARAMETERS = ("lat", "lon", "within_km")
# formats answered by /collections/{id}/items, then the downloads of app.exports
ITEM_FORMATS: dict[str, str] = {"json": GEOJSON_MEDIA_TYPE, "geojson": GEOJSON_MEDIA_TYPE, "html": "text/html"}
ITEM_EXPORTERS: dict[str, tuple[str, Callable]] = {  # f -> (media type, encoder)
    name: (media_type, lambda catalogue, collection_id, features, name=name:
           export_response(catalogue, name, features, collection_id))
    for name, media_type in EXPORT_MEDIA_TYPES.items()
}
CollectionId = Annotated[str, Path(min_length=1, max_length=100, description="Collection id, e.g. sites.")]
FeatureId = Annotated[str, Path(min_length=1, max_length=200, description="Feature id (the site, place or border id).")]
Format = Annotated[str | None, Query(description="Output format: json (GeoJSON) or html; items also csv, kml, gpkg.")]


@dataclass(frozen=True)
class Collection:
    """One layer of the catalogue published as a feature collection."""

    id: str
    title: str
    description: str
    layer: str
    temporal: str | None = None  # the column `datetime` filters on


COLLECTIONS = {
    c.id: c for c in (
        Collection("sites", "Missile sites", "Missile sites with their status, missiles and sources "
                   "(the same features as /sites). Extension: `lat`, `lon` and `within_km` keep the sites within "
                   "that geodesic (WGS84) distance, in km, of the point.", "sites"),
        Collection("places", "Reference places", "The reference places `near=` accepts.", "places"),
        Collection("borders", "Borders", "The Military Demarcation Line, the DMZ edges and the land borders.",
                   "borders"),
        Collection("observations", "Observations", "Dated observations of sites (no geometry; `datetime` filters "
                   "on observed_on).", "observations", temporal="observed_on"),
        Collection("missiles", "Missile systems", "Missile systems with their class, published range, kind of range "
                   "and sources (no geometry).", "missiles"),
    )
}


# --- helpers ----------------------------------------------------------------------------------


def _base(request: Request) -> str:
    """The service's base URL, without a trailing slash."""
    return str(request.base_url).rstrip("/")


def _link(href: str, rel: str, type_: str, title: str | None = None) -> dict:
    link = {"href": href, "rel": rel, "type": type_}
    if title:
        link["title"] = title
    return link


def _wants_html(request: Request, f: str | None, allowed=("json", "html")) -> bool:
    """Whether to answer HTML: by `f`, else by an Accept header preferring text/html."""
    if f is not None:
        if f not in allowed:
            raise UnsupportedParameter(f"unknown f {f!r}; allowed: {', '.join(allowed)}", parameter="f")
        return f == "html"
    accept = request.headers.get("accept", "")
    return "text/html" in accept and "json" not in accept


def _check_parameters(request: Request, allowed) -> None:
    """400 for a query parameter the resource does not define (OGC API - Features asks this)."""
    for name in request.query_params:
        if name not in allowed:
            raise UnsupportedParameter(f"unknown parameter {name!r}; allowed: {', '.join(allowed)}", parameter=name)


def _page_html(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                        f"</head><body><h1>{html.escape(title)}</h1>{body}</body></html>")


def _collection(collection_id: str) -> Collection:
    if collection_id not in COLLECTIONS:
        raise NotFound(f"no collection {collection_id!r}; collections: {', '.join(COLLECTIONS)}",
                       parameter="collectionId")
    return COLLECTIONS[collection_id]


def _frame(catalogue: Catalogue, collection: Collection) -> pd.DataFrame:
    return getattr(catalogue, collection.layer)


def _properties(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c != "geometry"]


def parse_bbox(text: str) -> list[tuple[float, float, float, float]]:
    """`west,south,east,north` as one box, or two when it crosses the antimeridian (west > east)."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise UnsupportedParameter("bbox must be four numbers: west,south,east,north", parameter="bbox") from None
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise UnsupportedParameter("bbox must be four finite numbers: west,south,east,north", parameter="bbox")
    west, south, east, north = values
    if not (-180 <= west <= 180 and -180 <= east <= 180 and -90 <= south <= north <= 90):
        raise UnsupportedParameter("bbox out of range: lon in [-180, 180], lat in [-90, 90], south <= north",
                                   parameter="bbox")
    if west > east:
        return [(west, south, 180.0, north), (-180.0, south, east, north)]
    return [(west, south, east, north)]


def _in_boxes(geometries, boxes) -> list[bool]:
    """Whether each geometry intersects any of the boxes (unknown geometries never do)."""
    shapes = [shapely.box(*b) for b in boxes]
    return [has_point(g) and any(g.intersects(s) for s in shapes) for g in geometries]


_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")


def _period(text: str, parameter: str = "datetime") -> tuple[dt.date, dt.date]:
    """A date, a month, a year or an RFC 3339 date-time as the days it covers."""
    match = _DATE.match(text.strip())
    if not match:
        raise UnsupportedParameter(f"not a date or RFC 3339 date-time: {text!r}", parameter=parameter)
    year, month, day = match.group(1), match.group(2), match.group(3)
    try:
        if day:
            start = end = dt.date(int(year), int(month), int(day))
        elif month:
            start = dt.date(int(year), int(month), 1)
            end = (dt.date(int(year) + int(month) // 12, int(month) % 12 + 1, 1) - dt.timedelta(days=1))
        else:
            start, end = dt.date(int(year), 1, 1), dt.date(int(year), 12, 31)
    except ValueError:
        raise UnsupportedParameter(f"not a valid date: {text!r}", parameter=parameter) from None
    return start, end


def parse_datetime(text: str) -> tuple[dt.date, dt.date]:
    """An OGC `datetime` (instant, `a/b`, `../b`, `a/..`) as an inclusive range of days."""
    if "/" not in text:
        return _period(text)
    parts = text.split("/")
    if len(parts) != 2:
        raise UnsupportedParameter("datetime interval must be a/b, ../b or a/..", parameter="datetime")
    start_text, end_text = parts
    if start_text in ("..", "") and end_text in ("..", ""):
        raise UnsupportedParameter("datetime interval needs at least one end", parameter="datetime")
    start = dt.date.min if start_text in ("..", "") else _period(start_text)[0]
    end = dt.date.max if end_text in ("..", "") else _period(end_text)[1]
    if start > end:
        raise UnsupportedParameter("datetime interval starts after it ends", parameter="datetime")
    return start, end


def _overlaps(value, start: dt.date, end: dt.date) -> bool:
    """Whether a (possibly partial) date cell overlaps [start, end]; unknown dates never do."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return False
    try:
        first, last = _period(str(value))
    except UnsupportedParameter:
        return False
    return first <= end and last >= start


def _matches(value, wanted: str, list_valued: bool) -> bool:
    """Whether a cell equals the asked value (a list cell: contains it; numbers compared as numbers)."""
    if list_valued:
        return wanted in split_list(value)
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value) == float(wanted)
        except ValueError:
            return False
    return str(value) == wanted


def _int_parameter(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise UnsupportedParameter(f"{name} must be an integer", parameter=name) from None
    if not low <= value <= high:
        raise UnsupportedParameter(f"{name} must be between {low} and {high}", parameter=name)
    return value


def _float_parameter(request: Request, name: str, low: float, high: float) -> float | None:
    text = request.query_params.get(name)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise UnsupportedParameter(f"{name} must be a number", parameter=name) from None
    if not (math.isfinite(value) and low <= value <= high):
        raise UnsupportedParameter(f"{name} must be between {low:g} and {high:g}", parameter=name)
    return value


def _day_parameter(text: str | None, name: str) -> dt.date | None:
    """A YYYY-MM-DD parameter as a date (400 when malformed, as OGC asks)."""
    if text is None:
        return None
    try:
        day = dt.date.fromisoformat(text) if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text) else None
    except ValueError:
        day = None
    if day is None:
        raise UnsupportedParameter(f"{name} must be a date YYYY-MM-DD, got {text!r}", parameter=name)
    if day > dt.datetime.now(dt.timezone.utc).date():
        raise UnsupportedParameter(f"{name} {text} is after today (UTC)", parameter=name)
    return day


# --- features ---------------------------------------------------------------------------------


def _site_rows(catalogue: Catalogue, request: Request) -> pd.DataFrame:
    """Every site in /sites order; with the radius extension, those within it, with distance_km."""
    lat = _float_parameter(request, "lat", -90, 90)
    lon = _float_parameter(request, "lon", -180, 180)
    within_km = _float_parameter(request, "within_km", 0, MAX_RADIUS_KM)
    if (lat is None) != (lon is None) or (within_km is not None and lat is None):
        raise UnsupportedParameter("the radius extension needs lat, lon and within_km together",
                                   parameter="within_km" if lat is not None else "lat")
    centre = None if lat is None else Centre(lon, lat)
    return catalogue.find_sites(centre=centre, within_km=within_km, limit=len(catalogue.sites) + 1).sites


def _features(catalogue: Catalogue, collection: Collection, rows: pd.DataFrame) -> list[dict]:
    """Rows as GeoJSON features: sites exactly as /sites gives them, other layers column by column."""
    if collection.id == "sites":
        return site_features(SitePage(rows, len(rows), None, catalogue.site_border_distances(rows.index)))
    columns = _properties(rows)
    geometries = rows.geometry if "geometry" in rows.columns else [None] * len(rows)
    return [feature(g, record(row, columns), str(row["id"])) for g, (_, row) in zip(geometries, rows.iterrows())]


def select_items(catalogue: Catalogue, collection: Collection, request: Request) -> tuple[pd.DataFrame, int, int]:
    """The rows an items request selects (all pages), with its limit and offset; 400 on a bad parameter."""
    frame = _frame(catalogue, collection)
    properties = _properties(frame)
    allowed = [*STANDARD_PARAMETERS, *(["datetime"] if collection.temporal else []),
               *(RADIUS_PARAMETERS if collection.id == "sites" else []), *properties]
    _check_parameters(request, allowed)
    limit = _int_parameter(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = _int_parameter(request, "offset", 0, 0, 10_000_000)
    rows = _site_rows(catalogue, request) if collection.id == "sites" else frame
    bbox = request.query_params.get("bbox")
    if bbox is not None:
        if "geometry" not in rows.columns:
            raise UnsupportedParameter(f"collection {collection.id!r} has no geometry", parameter="bbox")
        rows = rows[_in_boxes(rows.geometry, parse_bbox(bbox))]
    if collection.temporal and "datetime" in request.query_params:
        start, end = parse_datetime(request.query_params["datetime"])
        rows = rows[[_overlaps(v, start, end) for v in rows[collection.temporal]]]
    list_columns = LIST_COLUMNS.get(collection.layer, ())
    for name in properties:
        for wanted in request.query_params.getlist(name):
            rows = rows[[_matches(v, wanted, name in list_columns) for v in rows[name]]]
    return rows, limit, offset


def _items_url(request: Request, **changes) -> str:
    params = dict(request.query_params)
    params.update({k: str(v) for k, v in changes.items()})
    return f"{_base(request)}{request.url.path}?{urlencode(params)}"


def items_collection(catalogue: Catalogue, collection: Collection, request: Request) -> dict:
    """One page of a collection's items as a FeatureCollection with OGC links and counts."""
    rows, limit, offset = select_items(catalogue, collection, request)
    page = rows.iloc[offset: offset + limit]
    links = [
        _link(_items_url(request), "self", GEOJSON_MEDIA_TYPE, "this page"),
        _link(_items_url(request, f="html"), "alternate", "text/html", "this page as HTML"),
        _link(f"{_base(request)}/collections/{collection.id}", "collection", "application/json", collection.title),
    ]
    if offset + limit < len(rows):
        links.append(_link(_items_url(request, offset=offset + limit, limit=limit), "next", GEOJSON_MEDIA_TYPE,
                           "next page"))
    if offset > 0:
        links.append(_link(_items_url(request, offset=max(0, offset - limit), limit=limit), "prev",
                           GEOJSON_MEDIA_TYPE, "previous page"))
    return {
        "type": "FeatureCollection", "features": _features(catalogue, collection, page),
        "numberMatched": len(rows), "numberReturned": len(page),
        "timeStamp": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "links": links, "data_version": catalogue.version,
    }


def _items_html(collection: Collection, body: dict, request: Request) -> HTMLResponse:
    """A small HTML page listing the items, each site linking to its map."""
    rows = []
    for item in body["features"]:
        item_id = str(item.get("id"))
        name = item["properties"].get("name") or item_id
        href = f"/collections/{collection.id}/items/{item_id}?f=html"
        extra = ""
        if collection.id == "sites":
            extra = f" (<a href='/map?{html.escape(urlencode({'country': item['properties'].get('country') or ''}))}'>map</a>)"
        rows.append(f"<li><a href='{html.escape(href)}'>{html.escape(str(name))}</a>{extra}</li>")
    nav = " ".join(f"<a href='{html.escape(link['href'])}'>{link['rel']}</a>" for link in body["links"]
                   if link["rel"] in ("next", "prev"))
    return _page_html(f"{collection.title}: {body['numberReturned']} of {body['numberMatched']}",
                      f"<p><a href='/map'>All sites on the map</a></p><ul>{''.join(rows)}</ul><p>{nav}</p>")


def _item_format(request: Request, f: str | None) -> str:
    """The items format asked by `f`, else by the Accept header; 400 for an unknown `f`."""
    formats = [*ITEM_FORMATS, *ITEM_EXPORTERS]
    if f is not None:
        if f not in formats:
            raise UnsupportedParameter(f"unknown f {f!r}; allowed: {', '.join(formats)}", parameter="f")
        return f
    accept = request.headers.get("accept", "")
    for name, (media_type, _) in ITEM_EXPORTERS.items():
        if media_type in accept:
            return name
    if "text/html" in accept and "json" not in accept:
        return "html"
    return "json"


# --- routes -----------------------------------------------------------------------------------


@router.get("/", summary="OGC API landing page")
def landing(request: Request, f: Format = None):
    """Links to this document, the API definition, the conformance classes and the collections."""
    _check_parameters(request, ("f",))
    base = _base(request)
    body = {
        "title": "missile-sites",
        "description": "A sourced catalogue of missile sites, as OGC API - Features.",
        "links": [
            _link(f"{base}/", "self", "application/json", "this document"),
            _link(f"{base}/?f=html", "alternate", "text/html", "this document as HTML"),
            _link(f"{base}/openapi.json", "service-desc", OPENAPI_MEDIA_TYPE, "the API definition"),
            _link(f"{base}/docs", "service-doc", "text/html", "the API documentation"),
            _link(f"{base}/conformance", "conformance", "application/json", "conformance classes"),
            _link(f"{base}/collections", "data", "application/json", "the collections"),
        ],
    }
    if _wants_html(request, f):
        items = "".join(f"<li><a href='{html.escape(link['href'])}'>{html.escape(link['title'])}</a></li>"
                        for link in body["links"])
        return _page_html(body["title"], f"<p>{html.escape(body['description'])}</p><ul>{items}</ul>")
    return body


@router.get("/conformance", summary="OGC API conformance classes")
def conformance(request: Request, f: Format = None):
    """The OGC API - Features Part 1 classes this service implements."""
    _check_parameters(request, ("f",))
    if _wants_html(request, f):
        return _page_html("Conformance", "<ul>" + "".join(f"<li>{c}</li>" for c in CONFORMANCE) + "</ul>")
    return {"conformsTo": CONFORMANCE}


def _collection_body(catalogue: Catalogue, collection: Collection, base: str) -> dict:
    frame = _frame(catalogue, collection)
    extent: dict = {}
    if "geometry" in frame.columns:
        bounds = [round(float(v), 7) for v in frame[[has_point(g) for g in frame.geometry]].total_bounds]
        extent["spatial"] = {"bbox": [bounds], "crs": CRS84}
    if collection.temporal:
        dates = sorted(str(v) for v in frame[collection.temporal].dropna())
        extent["temporal"] = {"interval": [[dates[0], dates[-1]]] if dates else [[None, None]],
                              "trs": "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"}
    items = f"{base}/collections/{collection.id}/items"
    return {
        "id": collection.id, "title": collection.title, "description": collection.description,
        "itemType": "feature", "crs": [CRS84], "extent": extent,
        "links": [
            _link(f"{base}/collections/{collection.id}", "self", "application/json", collection.title),
            _link(items, "items", GEOJSON_MEDIA_TYPE, "items as GeoJSON"),
            _link(f"{items}?f=html", "items", "text/html", "items as HTML"),
        ],
    }


@router.get("/collections", summary="OGC API collections")
def list_collections(request: Request, catalogue: CatalogueDep, f: Format = None):
    """The feature collections: sites, places, borders, observations."""
    _check_parameters(request, ("f",))
    base = _base(request)
    body = {
        "links": [_link(f"{base}/collections", "self", "application/json", "the collections")],
        "collections": [_collection_body(catalogue, c, base) for c in COLLECTIONS.values()],
    }
    if _wants_html(request, f):
        items = "".join(f"<li><a href='/collections/{c['id']}/items?f=html'>{html.escape(c['title'])}</a>: "
                        f"{html.escape(c['description'])}</li>" for c in body["collections"])
        return _page_html("Collections", f"<ul>{items}</ul>")
    return body


@router.get("/collections/{collectionId}", summary="One OGC API collection")
def get_collection(request: Request, catalogue: CatalogueDep, collectionId: CollectionId, f: Format = None):
    """A collection's description, extent and links."""
    collection = _collection(collectionId)
    _check_parameters(request, ("f",))
    body = _collection_body(catalogue, collection, _base(request))
    if _wants_html(request, f):
        return _page_html(collection.title, f"<p>{html.escape(collection.description)}</p>"
                          f"<p><a href='/collections/{collection.id}/items?f=html'>items</a></p>")
    return body


@router.get("/collections/{collectionId}/items", response_class=GeoJSONResponse, summary="OGC API items")
def get_items(
    request: Request,
    catalogue: CatalogueDep,
    collectionId: CollectionId,
    f: Format = None,
    bbox: Annotated[str | None, Query(description="west,south,east,north in CRS84; west > east crosses ±180°.")] = None,
    limit: Annotated[str | None, Query(description=f"Page size, 1-{MAX_LIMIT} (default {DEFAULT_LIMIT}).")] = None,
    offset: Annotated[str | None, Query(description="Items to skip.")] = None,
    datetime: Annotated[str | None, Query(description="observations only: an instant or a/b, ../b, a/.. "
                                                      "on observed_on.")] = None,
    lat: Annotated[str | None, Query(description="sites only (extension): latitude of the radius centre.")] = None,
    lon: Annotated[str | None, Query(description="sites only (extension): longitude of the radius centre.")] = None,
    within_km: Annotated[str | None, Query(description="sites only (extension): geodesic radius in km.")] = None,
    as_of: Annotated[str | None, Query(description="YYYY-MM-DD (extension): the catalogue as known at the end of "
                                                   "that UTC day.")] = None,
):
    """A page of features; any property name filters by equality, e.g. `current_status=active`."""
    collection = _collection(collectionId)
    catalogue = catalogue_as_of(catalogue, _day_parameter(as_of, "as_of"))
    fmt = _item_format(request, f)
    if fmt in ITEM_EXPORTERS:
        rows, limit, offset = select_items(catalogue, collection, request)
        rows = rows.iloc[offset: offset + limit]
        return ITEM_EXPORTERS[fmt][1](catalogue, collection.id, _features(catalogue, collection, rows))
    body = {**items_collection(catalogue, collection, request), **as_of_fields(catalogue)}
    if fmt == "html":
        return _items_html(collection, body, request)
    return GeoJSONResponse(body)


@router.get("/collections/{collectionId}/items/{featureId}", response_class=GeoJSONResponse,
            summary="One OGC API item")
def get_item(request: Request, catalogue: CatalogueDep, collectionId: CollectionId, featureId: FeatureId,
             f: Format = None):
    """One feature by its id."""
    collection = _collection(collectionId)
    _check_parameters(request, ("f",))
    frame = _frame(catalogue, collection)
    rows = frame[frame["id"].astype(str) == featureId]
    if rows.empty:
        raise NotFound(f"no feature {featureId!r} in collection {collection.id!r}", parameter="featureId")
    item = _features(catalogue, collection, rows)[0]
    base = _base(request)
    item["links"] = [
        _link(f"{base}/collections/{collection.id}/items/{featureId}", "self", GEOJSON_MEDIA_TYPE, "this feature"),
        _link(f"{base}/collections/{collection.id}", "collection", "application/json", collection.title),
    ]
    if _wants_html(request, f):
        props = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                        for k, v in item["properties"].items())
        return _page_html(str(item["properties"].get("name") or featureId),
                          f"<table>{props}</table><p><a href='/map'>map</a></p>")
    return GeoJSONResponse(item)
