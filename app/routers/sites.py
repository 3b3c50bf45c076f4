"""/sites: query, one site, and its range rings."""

from typing import Annotated

import orjson

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from fastapi.concurrency import run_in_threadpool

from app.catalogue import Catalogue
from app.queries import record, SiteFilter
from app.exports import SITES_FORMATS, export_response, sites_format
from app.formats import DOWNLOADS, GEOJSON_MEDIA_TYPE, feature, feature_collection, rounded_km, site_properties, sites_geojson
from app.routers import CatalogueDep, GeoJSONResponse
from app.routers.launches import site_launch_summary
from app.schemas import (
    MAX_LIST_ITEMS, MAX_RADIUS_KM, MIN_RADIUS_KM, as_of_fields, run_site_query, select_sites, site_query,
)
from app.vocab import decode_list

router = APIRouter(tags=["sites"])
SiteId = Annotated[str, Path(min_length=1, max_length=200, description="Site id, e.g. sakkanmol.")]


SITES_RESPONSES = {200: {"description": "The sites, as asked by `f` or Accept", "content": {
    GEOJSON_MEDIA_TYPE: {"schema": {"type": "object"}},
    **{form.media_type: {"schema": {"type": "string", "format": "binary"}} for form in DOWNLOADS.values()},
}}}


@router.get("/sites", response_class=GeoJSONResponse, summary="Find sites", responses=SITES_RESPONSES,
            openapi_extra={"parameters": site_query.openapi_parameters()})
async def list_sites(
    catalogue: CatalogueDep,
    query: Annotated[tuple, Depends(site_query)],
    request: Request,
    f: Annotated[str | None, Query(description="geojson (default), csv, kml or gpkg; or by Accept.",
                                   json_schema_extra={"enum": list(SITES_FORMATS)})] = None,
):
    """Sites as GeoJSON (or CSV, KML, GeoPackage), filtered, optionally within a geodesic radius of a point or place."""
    centre, radius, filters, border, page, as_of = query
    accept = request.headers.get("accept", "")
    geojson = f in (None, "geojson", "json") and not any(form.media_type in accept for form in DOWNLOADS.values())
    if geojson and as_of.as_of is None and filters.to_filter() == SiteFilter() and border.border is None:
        return _sites_answer(catalogue, query, request, f)  # selected and concatenated: answered on the event loop
    return await run_in_threadpool(_sites_answer, catalogue, query, request, f)


def _sites_answer(catalogue: Catalogue, query: tuple, request: Request, f: str | None) -> Response:
    """/sites in any format: the catalogue as of the day asked, the page selected, then encoded."""
    centre, radius, filters, border, page, as_of = query
    catalogue = as_of.apply(catalogue)
    selection = select_sites(catalogue, centre, radius, filters, border, page)
    fmt = sites_format(request.headers.get("accept", ""), f)
    if fmt != "geojson":
        result = run_site_query(catalogue, centre, radius, filters, border, page)
        features = sites_geojson(catalogue, result, limit=page.limit, offset=page.offset)["features"]
        return export_response(catalogue, fmt, features, "sites")
    body = catalogue.answers.sites_body(selection, limit=page.limit, offset=page.offset,
                                        after=as_of_fields(catalogue))
    return Response(body, media_type=GEOJSON_MEDIA_TYPE)  # the snapshot's feature bytes, concatenated





@router.get("/sites/{site_id}", response_class=GeoJSONResponse, summary="One site, in full")
async def get_site(catalogue: CatalogueDep, site_id: SiteId):
    """A site with its observations, missiles and ranges, sources, and border distances."""
    answers = catalogue.answers
    body = answers.site_bodies.get(site_id)
    if body is None:  # built once per snapshot, off the event loop
        body = answers.keep_site_body(site_id, orjson.dumps(await run_in_threadpool(_site_in_full, catalogue, site_id)))
    return Response(body, media_type=GEOJSON_MEDIA_TYPE)


def _site_in_full(catalogue, site_id: str) -> dict:
    """One site's feature in full (NotFound, Gone)."""
    site = catalogue.site_row(site_id)
    properties = site_properties(site)
    properties["observations"] = [
        record(row, ["id", "observed_on", "kind", "status_seen", "source_id", "notes"])
        for _, row in catalogue.site_observations(site_id).iterrows()
    ]
    properties["missiles"] = [
        {**record(row, ["id", "name", "class", "range_min_km", "range_max_km", "range_max_qualifier", "range_kind",
                        "confidence", "notes"]),
         "source_ids": decode_list(row["source_ids"])}
        for _, row in catalogue.site_missiles(site).iterrows()
    ]
    properties["border_distances"] = [
        {"border_id": row.border_id, "name": row.name, "distance_km": rounded_km(row.distance_km),
         "nearest_point": [round(row.nearest_lon, 7), round(row.nearest_lat, 7)]}
        for row in catalogue.site_border_table(site_id).itertuples()
    ]
    properties["launches"] = site_launch_summary(catalogue, site_id)
    properties["sources"] = [
        record(row, ["id", "title", "publisher", "published_on", "url"])
        for _, row in catalogue.sources_for(catalogue.site_source_ids(site)).iterrows()
    ]
    return {**feature(site.geometry, properties, site_id), "data_version": catalogue.version}


@router.get("/sites/{site_id}/rings", response_class=GeoJSONResponse, summary="Geodesic range rings")
def get_site_rings(
    catalogue: CatalogueDep,
    site_id: SiteId,
    km: Annotated[
        list[Annotated[float, Query(ge=MIN_RADIUS_KM, le=MAX_RADIUS_KM, allow_inf_nan=False)]] | None,
        Query(max_length=MAX_LIST_ITEMS, description="Ring radii in km instead of the site's missile ranges."),
    ] = None,
):
    """Range rings on the WGS84 ellipsoid, cut at ±180°: one per missile (min-range hole included) or per `km`."""
    rings = catalogue.site_rings(site_id, km)
    features = [feature(ring.pop("geometry"), {"site_id": site_id, **ring}) for ring in rings]
    return feature_collection(features, data_version=catalogue.version)
