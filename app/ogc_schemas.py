"""What each OGC API collection's features hold, typed: the Part 5 schema, the Part 3 queryables, the GeoJSON
feature schema GDAL reads field types from, and the OpenAPI parameters and responses of the OGC routes."""

from __future__ import annotations

from dataclasses import dataclass

from app.formats import DOWNLOADS, LIST_COLUMNS, SITE_COLUMNS
from app.schemas import MAX_LIMIT, MAX_RADIUS_KM, MIN_RADIUS_KM

JSON_SCHEMA_MEDIA_TYPE = "application/schema+json"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
DEFAULT_LIMIT = 100
MAX_OFFSET = 10_000_000
STRING, NUMBER, DATE_TIME = {"type": "string"}, {"type": "number"}, {"type": "string", "format": "date-time"}
STRING_LIST = {"type": "array", "items": {"type": "string"}}
DISTANCES = {"type": "object", "additionalProperties": {"type": "number"}}
TEXT_DATE = "a date as precise as reported: YYYY, YYYY-MM or YYYY-MM-DD"


@dataclass(frozen=True)
class Property:
    """One feature property: its JSON Schema type, whether items filter on it, and what it means."""

    name: str
    schema: dict
    description: str = ""
    queryable: bool = True

    @property
    def listed(self) -> bool:
        """Whether the property is a list of strings (a filter keeps features whose list holds the value)."""
        return self.schema.get("type") == "array"


def _site_property(name: str) -> Property:
    if name in LIST_COLUMNS:
        return Property(name, STRING_LIST, "a list; the filter keeps sites whose list holds the value")
    if name == "coord_precision_m":
        return Property(name, {"type": "number", "minimum": 0, "maximum": MAX_RADIUS_KM * 2000}, "metres")
    if name == "status_observed_on":
        return Property(name, STRING, TEXT_DATE)
    return Property(name, STRING)


SITE_PROPERTIES = (
    *(_site_property(name) for name in SITE_COLUMNS),
    Property("border_distances_km", DISTANCES, "geodesic km to each measured border, by border id", False),
    Property("distance_km", {"type": "number", "minimum": 0}, "geodesic km from the radius centre (with lat, lon "
             "and within_km only)", False),
)
PROPERTIES: dict[str, tuple[Property, ...]] = {
    "sites": SITE_PROPERTIES,
    "places": (*(Property(n, STRING) for n in ("id", "name")), Property("aliases", STRING_LIST, "other names"),
               *(Property(n, STRING) for n in ("kind", "country", "source_id", "notes"))),
    "missiles": (
        *(Property(n, STRING) for n in ("id", "name")), Property("aliases", STRING_LIST, "other names"),
        Property("class", STRING),
        Property("range_min_km", {"type": "number", "minimum": 0, "maximum": 40_075}, "published minimum range, km"),
        Property("range_max_km", {"type": "number", "minimum": 0, "maximum": 40_075}, "published maximum range, km"),
        *(Property(n, STRING) for n in ("range_kind", "confidence")),
        Property("source_ids", STRING_LIST, "the sources of the range"), Property("notes", STRING),
    ),
    "borders": (*(Property(n, STRING) for n in ("id", "name", "kind")),
                Property("countries", STRING_LIST, "the countries a land border separates (alpha-3)"),
                *(Property(n, STRING) for n in ("source_id", "source_version"))),
    "observations": (
        *(Property(n, STRING) for n in ("id", "site_id")), Property("observed_on", STRING, TEXT_DATE),
        *(Property(n, STRING) for n in ("kind", "status_seen", "source_id", "notes")),
        Property("recorded_at", DATE_TIME, "when the observation was recorded through the API (UTC)"),
        Property("recorded_by", STRING),
    ),
}
GEOMETRY_FORMATS = {"sites": "geometry-point", "places": "geometry-point", "borders": "geometry-multilinestring"}


def queryable_properties(collection_id: str) -> tuple[Property, ...]:
    """The properties items filter on by equality (`name=value`)."""
    return tuple(p for p in PROPERTIES[collection_id] if p.queryable)


def _nullable(schema: dict) -> dict:
    """A property schema that also allows null (a value not known)."""
    return {**schema, "type": [schema["type"], "null"]}


def feature_schema(collection_id: str, title: str, url: str) -> dict:
    """OGC API - Features Part 5: the features' properties as a JSON Schema, id and geometry by their roles."""
    properties = {"id": {**STRING, "x-ogc-role": "id"}}
    for prop in PROPERTIES[collection_id]:
        if prop.name != "id":
            properties[prop.name] = {**_nullable(prop.schema), **({"description": prop.description}
                                                                  if prop.description else {})}
    if collection_id in GEOMETRY_FORMATS:
        properties["geometry"] = {"format": GEOMETRY_FORMATS[collection_id], "x-ogc-role": "primary-geometry"}
    return {"$schema": JSON_SCHEMA_DIALECT, "$id": url, "title": title, "type": "object", "properties": properties}


def queryables(collection_id: str, title: str, url: str) -> dict:
    """OGC API - Features Part 3: the properties items filter on, each typed (lists as arrays of strings)."""
    properties = {p.name: {**p.schema, **({"description": p.description} if p.description else {})}
                  for p in queryable_properties(collection_id)}
    return {"$schema": JSON_SCHEMA_DIALECT, "$id": url, "title": f"{title}: queryables", "type": "object",
            "properties": properties, "additionalProperties": False}


def geojson_feature_schema(collection_id: str, title: str, url: str) -> dict:
    """A GeoJSON Feature's JSON Schema with its properties typed: what GDAL's OAPIF driver reads from `describedby`
    (`id` left to the feature's own member, which GDAL reads as a field already). Each property has its one type, as
    GDAL reads no type list (`["array", "null"]` makes it a String); any property may be null, as the Part 5 schema says
    (an empty list is served as null)."""
    fields = {p.name: p.schema for p in PROPERTIES[collection_id] if p.name != "id"}
    return {
        "$schema": JSON_SCHEMA_DIALECT, "$id": url, "title": f"{title}: a GeoJSON feature", "type": "object",
        "required": ["type", "geometry", "properties"],
        "properties": {
            "type": {"type": "string", "enum": ["Feature"]}, "id": STRING,
            "geometry": {"type": ["object", "null"]},
            "properties": {"type": "object", "properties": fields},
        },
    }


# --- OpenAPI: the OGC parameters (as OGC's building blocks write them) and responses ----------------------------

PARAMETERS = {
    "limit": {
        "name": "limit", "in": "query", "required": False, "style": "form", "explode": False,
        "description": f"Page size. A value above {MAX_LIMIT} is served as {MAX_LIMIT}.",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
    },
    "offset": {
        "name": "offset", "in": "query", "required": False, "style": "form", "explode": False,
        "description": "Items to skip (the `next` and `prev` links carry it).",
        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0},
    },
    "bbox": {
        "name": "bbox", "in": "query", "required": False, "style": "form", "explode": False,
        "description": "west,south,east,north in CRS84 degrees; west > east crosses ±180°. Features without a "
                       "geometry never intersect it.",
        "schema": {"type": "array", "minItems": 4, "maxItems": 4,
                   "items": {"type": "number", "minimum": -180, "maximum": 180}},
    },
    "datetime": {
        "name": "datetime", "in": "query", "required": False, "style": "form", "explode": False,
        "description": "An instant or an interval `a/b`, `../b`, `a/..`; each end a year (YYYY), month (YYYY-MM), "
                       "day (YYYY-MM-DD) or RFC 3339 date-time, counted in UTC days. Observations: by observed_on; "
                       "sites: by the dates of their observations; places and borders carry no dates and are all "
                       "kept.",
        "schema": {"type": "string"},
    },
    "as_of": {
        "name": "as_of", "in": "query", "required": False, "style": "form", "explode": False,
        "description": "Extension: YYYY-MM-DD, the catalogue as known at the end of that UTC day.",
        "schema": {"type": "string", "format": "date", "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
    },
    "lat": {
        "name": "lat", "in": "query", "required": False, "style": "form", "explode": False,
        "description": "Extension: latitude of the radius centre (with lon and within_km).",
        "schema": {"type": "number", "minimum": -90, "maximum": 90},
    },
    "lon": {
        "name": "lon", "in": "query", "required": False, "style": "form", "explode": False,
        "description": "Extension: longitude of the radius centre (with lat and within_km).",
        "schema": {"type": "number", "minimum": -180, "maximum": 180},
    },
    "within_km": {
        "name": "within_km", "in": "query", "required": False, "style": "form", "explode": False,
        "description": "Extension: keep the sites within this geodesic (WGS84) distance of lat, lon, in km (at "
                       "least a metre, as on /sites).",
        "schema": {"type": "number", "minimum": MIN_RADIUS_KM, "maximum": MAX_RADIUS_KM},
    },
}
"""components.parameters of the OpenAPI documents; the OGC routes refer to them (GDAL reads `limit` from there)."""
ITEM_FORMATS = ("json", "geojson", "html", *DOWNLOADS)  # the registry's downloads, as on /sites


def ref(name: str) -> dict:
    """A reference to one of PARAMETERS."""
    return {"$ref": f"#/components/parameters/{name}"}


def f_parameter(*formats: str) -> dict:
    """The `f` parameter with the formats a resource answers in."""
    return {"name": "f", "in": "query", "required": False, "style": "form", "explode": False,
            "description": "Output format (else chosen by the Accept header).",
            "schema": {"type": "string", "enum": list(formats)}}


def property_parameter(prop: Property) -> dict:
    """A queryable property as an items query parameter (OGC Part 3, queryables as query parameters)."""
    schema = {"type": "string"} if prop.listed else dict(prop.schema)
    meaning = "keeps the features whose list holds this value" if prop.listed else "keeps the features equal to it"
    return {"name": prop.name, "in": "query", "required": False, "style": "form", "explode": False,
            "description": f"Filter: {meaning}.", "schema": schema}


def items_parameters(collection_id: str) -> list[dict]:
    """Every query parameter of a collection's items."""
    extension = [ref("lat"), ref("lon"), ref("within_km")] if collection_id == "sites" else []
    return [f_parameter(*ITEM_FORMATS), ref("bbox"), ref("datetime"), ref("limit"), ref("offset"), ref("as_of"),
            *extension, *(property_parameter(p) for p in queryable_properties(collection_id))]


LINK = {"type": "object", "required": ["href", "rel"],
        "properties": {"href": {"type": "string"}, "rel": {"type": "string"}, "type": {"type": "string"},
                       "title": {"type": "string"}}}
LINKS = {"type": "array", "items": LINK}
HTML = {"text/html": {"schema": {"type": "string"}}}
FEATURE = {"type": "object", "required": ["type", "geometry", "properties"],
           "properties": {"type": {"type": "string", "enum": ["Feature"]}, "id": {"type": "string"},
                          "geometry": {"type": ["object", "null"]}, "properties": {"type": ["object", "null"]},
                          "links": LINKS}}
FEATURE_COLLECTION = {
    "type": "object", "required": ["type", "features"],
    "properties": {"type": {"type": "string", "enum": ["FeatureCollection"]}, "features": {"type": "array",
                                                                                           "items": FEATURE},
                   "links": LINKS, "numberMatched": {"type": "integer", "minimum": 0},
                   "numberReturned": {"type": "integer", "minimum": 0}, "timeStamp": {"type": "string",
                                                                                      "format": "date-time"}},
}
COLLECTION = {"type": "object", "required": ["id", "links"],
              "properties": {"id": {"type": "string"}, "title": {"type": "string"}, "links": LINKS,
                             "extent": {"type": "object"}, "itemType": {"type": "string"},
                             "crs": {"type": "array", "items": {"type": "string"}}}}


def json_response(schema: dict, *, html: bool = True, media_type: str = "application/json") -> dict:
    """An OpenAPI `responses` entry for 200: the JSON body (and its HTML alternative)."""
    return {200: {"description": "OK", "content": {media_type: {"schema": schema}, **(HTML if html else {})}}}


LANDING_RESPONSE = json_response({"type": "object", "required": ["links"],
                                  "properties": {"title": {"type": "string"}, "description": {"type": "string"},
                                                 "links": LINKS}})
CONFORMANCE_RESPONSE = json_response({"type": "object", "required": ["conformsTo"], "properties": {
    "conformsTo": {"type": "array", "items": {"type": "string"}}}})
COLLECTIONS_RESPONSE = json_response({"type": "object", "required": ["links", "collections"], "properties": {
    "links": LINKS, "collections": {"type": "array", "items": COLLECTION}}})
COLLECTION_RESPONSE = json_response(COLLECTION)
SCHEMA_RESPONSE = json_response({"type": "object"}, html=False, media_type=JSON_SCHEMA_MEDIA_TYPE)


def items_response() -> dict:
    """200 of a collection's items: GeoJSON, HTML and each download format."""
    content = {"application/geo+json": {"schema": FEATURE_COLLECTION}, **HTML,
               **{form.media_type: {"schema": {"type": "string", "format": "binary"}} for form in DOWNLOADS.values()}}
    return {200: {"description": "A page of features", "content": content}}


ITEM_RESPONSE = {200: {"description": "One feature", "content": {"application/geo+json": {"schema": FEATURE}, **HTML}}}
