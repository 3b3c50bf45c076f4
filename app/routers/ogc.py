"""OGC API - Features: Part 1 (core, GeoJSON, HTML, OAS 3.0), Part 3 queryables and Part 5 schemas over the
catalogue's layers, each collection with its own paths so the API definition types every parameter."""

from __future__ import annotations

import calendar
import contextlib
import datetime as dt
import html
import math
import re
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlencode

import numpy as np
import orjson
import pandas as pd
import shapely
from fastapi import APIRouter, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse

from app.catalogue import Catalogue
from app.queries import Centre, has_point, record, SitePage
from app.errors import InvalidParameter, NotFound, UnsupportedParameter, validation_problem
from app.exports import export_response
from app.formats import DOWNLOADS, GEOJSON_MEDIA_TYPE, feature, format_for, html_cell, site_features
from app.ogc_schemas import (
    COLLECTION_RESPONSE, COLLECTIONS_RESPONSE, CONFORMANCE_RESPONSE, DEFAULT_LIMIT, ITEM_FORMATS, ITEM_RESPONSE,
    JSON_SCHEMA_MEDIA_TYPE, LANDING_RESPONSE, MAX_OFFSET, PROPERTIES, SCHEMA_RESPONSE, f_parameter,
    feature_schema,
    geojson_feature_schema, items_parameters, items_response, queryable_properties, queryables,
)
from app.routers import CatalogueDep, GeoJSONResponse
from app.schemas import MAX_LIMIT, QueryGroups, as_of_fields, as_of_query, radius_query
from app.vocab import decode_list

router = APIRouter(tags=["ogc api features"])

CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/html",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables-query-parameters",
]
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
GREGORIAN = "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"
OPENAPI_MEDIA_TYPE = "application/vnd.oai.openapi+json;version=3.0"
SCHEMA_REL = "http://www.opengis.net/def/rel/ogc/1.0/schema"
QUERYABLES_REL = "http://www.opengis.net/def/rel/ogc/1.0/queryables"
PAGE_FORMATS = ("json", "html")
FeatureId = Annotated[str, Path(min_length=1, max_length=200, description="Feature id (the site, place or border id).")]


@dataclass(frozen=True)
class Collection:
    """One layer of the catalogue published as a feature collection."""

    id: str
    title: str
    description: str
    layer: str


COLLECTIONS = {
    c.id: c for c in (
        Collection("sites", "Missile sites", "Missile sites with their status, missiles and sources "
                   "(the same features as /sites). `datetime` keeps the sites with an observation dated then. "
                   "Extension: `lat`, `lon` and `within_km` keep the sites within that geodesic (WGS84) distance, "
                   "in km, of the point.", "sites"),
        Collection("places", "Reference places", "The reference places `near=` accepts (no dates: `datetime` "
                   "keeps them all).", "places"),
        Collection("borders", "Borders", "The Military Demarcation Line, the DMZ edges and the land borders (no "
                   "dates: `datetime` keeps them all).", "borders"),
        Collection("observations", "Observations", "Dated observations of sites (no geometry; `datetime` filters "
                   "on observed_on).", "observations"),
        Collection("missiles", "Missile systems", "Missile systems with their class, published range, kind of range "
                   "and sources (no geometry; no dates: `datetime` keeps them all).", "missiles"),
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


def _wants_html(request: Request, allowed=PAGE_FORMATS) -> bool:
    """Whether to answer HTML: by `f`, else by an Accept header preferring text/html."""
    f = request.query_params.get("f")
    if f is not None:
        if f not in allowed:
            raise UnsupportedParameter(f"unknown f {f!r}; allowed: {', '.join(allowed)}", parameter="f")
        return f == "html"
    accept = request.headers.get("accept", "")
    return "text/html" in accept and "json" not in accept


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


def _keep(rows: pd.DataFrame, mask) -> pd.DataFrame:
    """The rows where mask is true (a boolean array: an empty list would select columns, not rows)."""
    return rows[np.fromiter(mask, dtype=bool, count=len(rows))]


def _in_boxes(geometries, boxes) -> list[bool]:
    """Whether each geometry intersects any of the boxes (unknown geometries never do)."""
    shapes = [shapely.box(*b) for b in boxes]
    return [has_point(g) and any(g.intersects(s) for s in shapes) for g in geometries]


_PERIOD = re.compile(r"^([0-9]{4})(?:-([0-9]{2})(?:-([0-9]{2}))?)?$")
_INSTANT = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})?$")


def _utc_day(text: str, parameter: str) -> dt.date:
    """The UTC day of an RFC 3339 date-time (no offset: UTC); an offset past year 1 or 9999 clamps to it."""
    try:
        moment = dt.datetime.fromisoformat(text.upper())
    except ValueError:
        raise UnsupportedParameter(f"not a valid date-time: {text!r}", parameter=parameter) from None
    if moment.tzinfo is None:
        return moment.date()
    try:
        return moment.astimezone(dt.timezone.utc).date()
    except OverflowError:
        return dt.date.min if moment.year == 1 else dt.date.max


def _period(text: str, parameter: str = "datetime") -> tuple[dt.date, dt.date]:
    """A year (YYYY), a month (YYYY-MM), a day (YYYY-MM-DD) or an RFC 3339 date-time as the UTC days it covers."""
    if _INSTANT.match(text):
        day = _utc_day(text, parameter)
        return day, day
    match = _PERIOD.match(text)
    if not match:
        raise UnsupportedParameter(f"not YYYY, YYYY-MM, YYYY-MM-DD or an RFC 3339 date-time: {text!r}",
                                   parameter=parameter)
    year, month, day = match.group(1), match.group(2), match.group(3)
    try:
        if day:
            start = end = dt.date(int(year), int(month), int(day))
        elif month:
            start = dt.date(int(year), int(month), 1)
            end = start.replace(day=calendar.monthrange(start.year, start.month)[1])
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
        return wanted in decode_list(value)
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value) == float(wanted)
        except ValueError:
            return False
    return str(value) == wanted


def _int_parameter(request: Request, name: str, default: int, low: int, high: int | None) -> int:
    """An integer parameter in [low, high] (no high: any size); 400 otherwise, as OGC asks."""
    text = request.query_params.get(name)
    if text is None:
        return default
    if not re.fullmatch(r"[+-]?[0-9]{1,30}", text):
        raise UnsupportedParameter(f"{name} must be an integer, got {text[:40]!r}", parameter=name)
    value = int(text)
    if value < low or (high is not None and value > high):
        raise UnsupportedParameter(f"{name} must be between {low} and {high}", parameter=name)
    return value


@contextlib.contextmanager
def _as_400():
    """A refused parameter value answers 400, as OGC API - Features asks (the same check answers 422 on /sites)."""
    try:
        yield
    except RequestValidationError as exc:
        message, parameter = validation_problem(exc)
        raise UnsupportedParameter(message, parameter=parameter) from None
    except InvalidParameter as exc:
        raise UnsupportedParameter(exc.message, parameter=exc.parameter) from None


def _groups(request: Request, groups: QueryGroups) -> tuple:
    """The parameter groups of /sites, parsed from this request with their bounds (400 when refused)."""
    with _as_400():
        return groups.parse(request.query_params)


def _as_of(catalogue: Catalogue, request: Request) -> Catalogue:
    """The catalogue as of the `as_of` day, as /sites reads it (400 when refused)."""
    (as_of,) = _groups(request, as_of_query)
    with _as_400():
        return as_of.apply(catalogue)


# --- features ---------------------------------------------------------------------------------


def _site_rows(catalogue: Catalogue, request: Request) -> pd.DataFrame:
    """Every site in /sites order; with the radius extension, those within it, with distance_km."""
    centre, within_km = _radius_extension(catalogue, request)
    return catalogue.find_sites(centre=centre, within_km=within_km, limit=len(catalogue.sites) + 1).sites


def _radius_extension(catalogue: Catalogue, request: Request) -> tuple[Centre | None, float | None]:
    """The centre and radius of the `lat`, `lon`, `within_km` extension (None when not given), as /sites reads them."""
    centre_params, radius = _groups(request, radius_query)
    with _as_400():
        centre = centre_params.resolve(catalogue)
        if radius.within_km is not None and centre is None:
            raise InvalidParameter("within_km needs a centre: give lat and lon", parameter="within_km")
    return centre, radius.within_km


def _site_items_fast(catalogue: Catalogue, request: Request) -> bytes | None:
    """A sites items page as GeoJSON bytes, selected by the snapshot's index and orders and built from its cached
    features (the same answer as `items_collection`); None when the request filters by date or property."""
    query = request.query_params
    if "datetime" in query or any(prop.name in query for prop in queryable_properties("sites")):
        return None
    limit = min(_int_parameter(request, "limit", DEFAULT_LIMIT, 1, None), MAX_LIMIT)
    offset = _int_parameter(request, "offset", 0, 0, MAX_OFFSET)
    centre, within_km = _radius_extension(catalogue, request)
    bbox = query.get("bbox")
    boxes = None if bbox is None else parse_bbox(bbox)
    answers = catalogue.answers
    selection = answers.select(centre=centre, within_km=within_km, limit=limit, offset=offset, boxes=boxes)
    matched, returned = selection.number_matched, len(selection.positions)
    links = answers.kept(("links", str(request.base_url), request.url.path, request.url.query, limit, offset, matched),
                         lambda: orjson.dumps(_items_links(request, COLLECTIONS["sites"], limit, offset, matched)))
    counts = orjson.dumps({"numberMatched": matched, "numberReturned": returned, "timeStamp": _time_stamp()})
    rest = orjson.dumps({"data_version": catalogue.version, **as_of_fields(catalogue)})
    return answers.items_body(selection, counts[:-1] + b',"links":' + links + b"," + rest[1:])


def _features(catalogue: Catalogue, collection: Collection, rows: pd.DataFrame) -> list[dict]:
    """Rows as GeoJSON features: sites exactly as /sites gives them, other layers column by column."""
    if collection.id == "sites":
        return site_features(SitePage(rows, len(rows), None, catalogue.site_border_distances(rows.index)))
    columns = [p.name for p in PROPERTIES[collection.id] if p.name in rows.columns]
    geometries = rows.geometry if "geometry" in rows.columns else [None] * len(rows)
    return [feature(g, record(row, columns), str(row["id"])) for g, (_, row) in zip(geometries, rows.iterrows())]


def _observed_site_ids(catalogue: Catalogue, start: dt.date, end: dt.date) -> set[str]:
    """The sites with an observation dated within [start, end]."""
    observations = catalogue.observations
    return {site_id for site_id, day in zip(observations["site_id"], observations["observed_on"])
            if _overlaps(day, start, end)}


def _in_time(catalogue: Catalogue, collection: Collection, rows: pd.DataFrame, start: dt.date,
             end: dt.date) -> pd.DataFrame:
    """The rows dated within [start, end]: observations by observed_on, sites by their observations; places and
    borders carry no dates and are all kept."""
    if collection.id == "observations":
        return _keep(rows, (_overlaps(v, start, end) for v in rows["observed_on"]))
    if collection.id == "sites":
        observed = _observed_site_ids(catalogue, start, end)
        return _keep(rows, (site_id in observed for site_id in rows.index))
    return rows


def select_items(catalogue: Catalogue, collection: Collection, request: Request) -> tuple[pd.DataFrame, int, int]:
    """The rows an items request selects (all pages), with its limit (a larger one served at the maximum) and
    offset; 400 on a bad parameter."""
    limit = min(_int_parameter(request, "limit", DEFAULT_LIMIT, 1, None), MAX_LIMIT)
    offset = _int_parameter(request, "offset", 0, 0, MAX_OFFSET)
    rows = _site_rows(catalogue, request) if collection.id == "sites" else _frame(catalogue, collection)
    bbox = request.query_params.get("bbox")
    if bbox is not None:
        boxes = parse_bbox(bbox)
        rows = _keep(rows, _in_boxes(rows.geometry, boxes)) if "geometry" in rows.columns else rows[:0]
    if "datetime" in request.query_params:
        rows = _in_time(catalogue, collection, rows, *parse_datetime(request.query_params["datetime"]))
    for prop in queryable_properties(collection.id):
        wanted = request.query_params.get(prop.name)
        if wanted is not None:
            rows = _keep(rows, (_matches(v, wanted, prop.listed) for v in rows[prop.name]))
    return rows, limit, offset


def _empty_lists_as_null(collection: Collection, features: list[dict]) -> list[dict]:
    """The GeoJSON GIS clients read: an empty list property is null.

    QGIS 3.22's OAPIF provider types its fields from the first page, read by GDAL 3.6's GeoJSON reader, which types a
    field whose first value is `[]` as JSON; QGIS then reads that field as NULL on every feature. A null leaves the
    type to the first list holding a value: a string list, read whole."""
    listed = [p.name for p in PROPERTIES[collection.id] if p.listed]
    for item in features:
        for name in listed:
            if item["properties"].get(name) == []:
                item["properties"][name] = None
    return features


def _items_url(request: Request, **changes) -> str:
    """This request's URL with some parameters changed."""
    params = dict(request.query_params)
    params.update({k: str(v) for k, v in changes.items()})
    return f"{_base(request)}{request.url.path}?{urlencode(params)}"


def items_collection(catalogue: Catalogue, collection: Collection, request: Request) -> dict:
    """One page of a collection's items as a FeatureCollection with OGC links and counts."""
    rows, limit, offset = select_items(catalogue, collection, request)
    page = rows.iloc[offset: offset + limit]
    features = _empty_lists_as_null(collection, _features(catalogue, collection, page))
    return {"type": "FeatureCollection", "features": features,
            **_items_members(request, collection, limit, offset, len(rows), len(page), catalogue)}


def _items_members(request: Request, collection: Collection, limit: int, offset: int, matched: int, returned: int,
                   catalogue: Catalogue) -> dict:
    """An items page's members after its features: counts, time stamp, links, data version."""
    return {
        "numberMatched": matched, "numberReturned": returned, "timeStamp": _time_stamp(),
        "links": _items_links(request, collection, limit, offset, matched), "data_version": catalogue.version,
    }


def _time_stamp() -> str:
    """Now, UTC, to the second, as OGC items pages carry it."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _items_links(request: Request, collection: Collection, limit: int, offset: int, matched: int) -> list[dict]:
    """An items page's links: itself in each format, its collection, the next and previous pages."""
    links = [
        _link(_items_url(request), "self", GEOJSON_MEDIA_TYPE, "this page"),
        _link(_items_url(request, f="html"), "alternate", "text/html", "this page as HTML"),
        *(_link(_items_url(request, f=name), "alternate", form.media_type, f"this page as {name.upper()}")
          for name, form in DOWNLOADS.items() if name != "gpkg"),
        _link(f"{_base(request)}/collections/{collection.id}", "collection", "application/json", collection.title),
    ]
    if offset + limit < matched:
        links.append(_link(_items_url(request, offset=offset + limit, limit=limit), "next", GEOJSON_MEDIA_TYPE,
                           "next page"))
    if offset > 0:
        links.append(_link(_items_url(request, offset=max(0, offset - limit), limit=limit), "prev",
                           GEOJSON_MEDIA_TYPE, "previous page"))
    return links


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


def _item_format(request: Request) -> str:
    """The items format asked by `f`, else by the Accept header; 400 for an unknown `f`."""
    f, accept = request.query_params.get("f"), request.headers.get("accept", "")
    if f is None and "text/html" in accept and "json" not in accept and not any(
            form.media_type in accept for form in DOWNLOADS.values()):
        return "html"
    fmt = format_for(accept, f, ITEM_FORMATS)
    return "json" if fmt == "geojson" else fmt


# --- routes -----------------------------------------------------------------------------------

PAGE_F = {"parameters": [f_parameter(*PAGE_FORMATS)]}
JSON_F = {"parameters": [f_parameter("json")]}


@router.get("/", summary="OGC API landing page", responses=LANDING_RESPONSE, openapi_extra=PAGE_F)
def landing(request: Request):
    """Links to this document, the API definition, the conformance classes and the collections."""
    base = _base(request)
    body = {
        "title": "missile-sites",
        "description": "A sourced catalogue of missile sites, as OGC API - Features.",
        "links": [
            _link(f"{base}/", "self", "application/json", "this document"),
            _link(f"{base}/?f=html", "alternate", "text/html", "this document as HTML"),
            _link(f"{base}/api", "service-desc", OPENAPI_MEDIA_TYPE, "the API definition (OpenAPI 3.0)"),
            _link(f"{base}/docs", "service-doc", "text/html", "the API documentation"),
            _link(f"{base}/conformance", "conformance", "application/json", "conformance classes"),
            _link(f"{base}/collections", "data", "application/json", "the collections"),
        ],
    }
    if _wants_html(request):
        items = "".join(f"<li><a href='{html.escape(link['href'])}'>{html.escape(link['title'])}</a></li>"
                        for link in body["links"])
        return _page_html(body["title"], f"<p>{html.escape(body['description'])}</p><ul>{items}</ul>")
    return body


@router.get("/conformance", summary="OGC API conformance classes", responses=CONFORMANCE_RESPONSE,
            openapi_extra=PAGE_F)
def conformance(request: Request):
    """The OGC API - Features classes this service implements."""
    if _wants_html(request):
        return _page_html("Conformance", "<ul>" + "".join(f"<li>{c}</li>" for c in CONFORMANCE) + "</ul>")
    return {"conformsTo": CONFORMANCE}


def _instant(day: dt.date, end: bool) -> str:
    """A UTC day's first or last second in RFC 3339."""
    return f"{day.isoformat()}T{'23:59:59' if end else '00:00:00'}Z"


def _temporal_extent(catalogue: Catalogue, collection: Collection) -> dict | None:
    """The interval the collection's dates span, in RFC 3339 (sites: their observations'); None without dates."""
    if collection.id not in ("sites", "observations"):
        return None
    observations = catalogue.observations
    if collection.id == "sites":
        observations = observations[observations["site_id"].isin(catalogue.sites.index)]
    periods = [_period(str(v)) for v in observations["observed_on"].dropna() if _PERIOD.match(str(v))]
    interval = [_instant(min(p[0] for p in periods), False), _instant(max(p[1] for p in periods), True)] \
        if periods else [None, None]
    return {"interval": [interval], "trs": GREGORIAN}


def _collection_links(collection: Collection, base: str) -> list[dict]:
    """A collection's links: itself, its alternates, its items in each format, its schemas and queryables."""
    url = f"{base}/collections/{collection.id}"
    return [
        _link(url, "self", "application/json", collection.title),
        _link(f"{url}?f=html", "alternate", "text/html", f"{collection.title} as HTML"),
        _link(f"{url}/items", "items", GEOJSON_MEDIA_TYPE, "items as GeoJSON"),
        _link(f"{url}/items?f=html", "items", "text/html", "items as HTML"),
        *(_link(f"{url}/items?f={name}", "items", form.media_type, f"items as {name.upper()}")
          for name, form in DOWNLOADS.items() if name != "gpkg"),
        _link(f"{url}/schema", SCHEMA_REL, JSON_SCHEMA_MEDIA_TYPE, "the features' schema (Part 5)"),
        _link(f"{url}/queryables", QUERYABLES_REL, JSON_SCHEMA_MEDIA_TYPE, "the properties items filter on"),
        # relation types compare case-insensitively (RFC 8288); GDAL 3.6 matches only this spelling
        _link(f"{url}/feature-schema", "describedBy", JSON_SCHEMA_MEDIA_TYPE, "a GeoJSON feature's JSON Schema"),
    ]


def _collection_body(catalogue: Catalogue, collection: Collection, base: str) -> dict:
    """A collection's description, extents (RFC 3339 times) and links."""
    frame = _frame(catalogue, collection)
    extent: dict = {}
    located = _keep(frame, (has_point(g) for g in frame.geometry)) if "geometry" in frame.columns else frame[:0]
    if len(located):
        bounds = [round(float(v), 7) for v in located.total_bounds]
        extent["spatial"] = {"bbox": [bounds], "crs": CRS84}
    temporal = _temporal_extent(catalogue, collection)
    if temporal:
        extent["temporal"] = temporal
    return {
        "id": collection.id, "title": collection.title, "description": collection.description,
        "itemType": "feature", "crs": [CRS84], "extent": extent, "links": _collection_links(collection, base),
    }


@router.get("/collections", summary="OGC API collections", responses=COLLECTIONS_RESPONSE, openapi_extra=PAGE_F)
def list_collections(request: Request, catalogue: CatalogueDep):
    """The feature collections: sites, places, borders, observations."""
    base = _base(request)
    body = {
        "links": [_link(f"{base}/collections", "self", "application/json", "the collections"),
                  _link(f"{base}/collections?f=html", "alternate", "text/html", "the collections as HTML")],
        "collections": [_collection_body(catalogue, c, base) for c in COLLECTIONS.values()],
    }
    if _wants_html(request):
        items = "".join(f"<li><a href='/collections/{c['id']}/items?f=html'>{html.escape(c['title'])}</a>: "
                        f"{html.escape(c['description'])}</li>" for c in body["collections"])
        return _page_html("Collections", f"<ul>{items}</ul>")
    return body


def describe_collection(request: Request, catalogue: Catalogue, collection: Collection):
    """A collection's description, extent and links, as JSON or HTML."""
    body = _collection_body(catalogue, collection, _base(request))
    if _wants_html(request):
        return _page_html(collection.title, f"<p>{html.escape(collection.description)}</p>"
                          f"<p><a href='/collections/{collection.id}/items?f=html'>items</a></p>")
    return body


def collection_items(request: Request, catalogue: Catalogue, collection: Collection):
    """A page of features in the asked format."""
    catalogue = _as_of(catalogue, request)
    fmt = _item_format(request)
    if fmt in DOWNLOADS:
        rows, limit, offset = select_items(catalogue, collection, request)
        rows = rows.iloc[offset: offset + limit]
        return export_response(catalogue, fmt, _features(catalogue, collection, rows), collection.id)
    if fmt == "json" and collection.id == "sites":
        fast = _site_items_fast(catalogue, request)
        if fast is not None:
            return Response(fast, media_type=GEOJSON_MEDIA_TYPE)
    body = {**items_collection(catalogue, collection, request), **as_of_fields(catalogue)}
    if fmt == "html":
        return _items_html(collection, body, request)
    return GeoJSONResponse(body)


def collection_item(request: Request, catalogue: Catalogue, collection: Collection, feature_id: str):
    """One feature by its id, as GeoJSON or HTML."""
    frame = _frame(catalogue, collection)
    # compared as Python strings: pandas compares through numpy, whose strings drop trailing NULs ("a\0" == "a")
    rows = _keep(frame, (str(v) == feature_id for v in frame["id"]))
    if rows.empty:
        if collection.id == "sites":
            catalogue.refuse_retired(feature_id, parameter="featureId")  # 410 Gone, as on /sites/{site_id}
        raise NotFound(f"no feature {feature_id!r} in collection {collection.id!r}", parameter="featureId")
    item = _empty_lists_as_null(collection, _features(catalogue, collection, rows))[0]
    url = f"{_base(request)}/collections/{collection.id}/items/{feature_id}"
    item["links"] = [
        _link(url, "self", GEOJSON_MEDIA_TYPE, "this feature"),
        _link(f"{url}?f=html", "alternate", "text/html", "this feature as HTML"),
        _link(f"{_base(request)}/collections/{collection.id}", "collection", "application/json", collection.title),
    ]
    if _wants_html(request):
        props = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html_cell(v)}</td></tr>"
                        for k, v in item["properties"].items())
        return _page_html(str(item["properties"].get("name") or feature_id),
                          f"<table>{props}</table><p><a href='/map'>map</a></p>")
    return GeoJSONResponse(item)


def _schema_response(body: dict) -> JSONResponse:
    return JSONResponse(body, media_type=JSON_SCHEMA_MEDIA_TYPE)


def _add_collection_routes(collection: Collection) -> None:
    """The paths of one collection, each with the parameters it takes (so GDAL and QGIS read them typed)."""
    url = f"/collections/{collection.id}"
    name = collection.id

    @router.get(url, summary=f"The {name} collection", responses=COLLECTION_RESPONSE, openapi_extra=PAGE_F,
                operation_id=f"describe_{name}")
    def describe(request: Request, catalogue: CatalogueDep):
        return describe_collection(request, catalogue, collection)

    @router.get(f"{url}/items", response_class=GeoJSONResponse, summary=f"The {name} features",
                responses=items_response(), openapi_extra={"parameters": items_parameters(name)},
                operation_id=f"get_{name}_items", description=collection.description)
    async def items(request: Request, catalogue: CatalogueDep):
        if name == "sites" and "as_of" not in request.query_params and _item_format(request) == "json":
            fast = _site_items_fast(catalogue, request)  # selected and concatenated: answered on the event loop
            if fast is not None:
                return Response(fast, media_type=GEOJSON_MEDIA_TYPE)
        return await run_in_threadpool(collection_items, request, catalogue, collection)

    @router.get(f"{url}/items/{{featureId}}", response_class=GeoJSONResponse, summary=f"One of the {name}",
                responses=ITEM_RESPONSE, openapi_extra=PAGE_F, operation_id=f"get_{name}_item")
    def item(request: Request, catalogue: CatalogueDep, featureId: FeatureId):
        return collection_item(request, catalogue, collection, featureId)

    @router.get(f"{url}/schema", summary=f"The {name} features' schema (OGC API - Features Part 5)",
                responses=SCHEMA_RESPONSE, openapi_extra=JSON_F, operation_id=f"get_{name}_schema")
    def schema(request: Request):
        _wants_html(request, ("json",))
        return _schema_response(feature_schema(name, collection.title, f"{_base(request)}{url}/schema"))

    @router.get(f"{url}/queryables", summary=f"The properties {name} filter on (OGC API - Features Part 3)",
                responses=SCHEMA_RESPONSE, openapi_extra=JSON_F, operation_id=f"get_{name}_queryables")
    def queryables_of(request: Request):
        _wants_html(request, ("json",))
        return _schema_response(queryables(name, collection.title, f"{_base(request)}{url}/queryables"))

    @router.get(f"{url}/feature-schema", summary=f"A {name} GeoJSON feature's JSON Schema (GDAL's describedby)",
                responses=SCHEMA_RESPONSE, openapi_extra=JSON_F, operation_id=f"get_{name}_feature_schema")
    def geojson_schema(request: Request):
        _wants_html(request, ("json",))
        return _schema_response(geojson_feature_schema(name, collection.title,
                                                       f"{_base(request)}{url}/feature-schema"))


for _collection_entry in COLLECTIONS.values():
    _add_collection_routes(_collection_entry)


@router.get("/collections/{collectionId}", include_in_schema=False)
@router.get("/collections/{collectionId}/{resource}", include_in_schema=False)
@router.get("/collections/{collectionId}/items/{featureId}", include_in_schema=False)
def unknown_collection(collectionId: str):
    """404 for a collection that does not exist (the known ones have their own paths above)."""
    _collection(collectionId)
    raise NotFound("no such resource")
