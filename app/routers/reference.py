"""Reference tables: /missiles, /places, /borders, /borders/distance, /health."""

from typing import Annotated

import os

from fastapi import APIRouter, Depends, Query, Request

from app.catalogue import record, split_list
from app.errors import StorageUnavailable
from app.formats import feature, feature_collection, rounded_km
from app.routers import CatalogueDep, GeoJSONResponse
from app.schemas import MAX_LIST_ITEMS, CentreParams

router = APIRouter()
MISSILE_COLUMNS = ["id", "name", "aliases", "class", "range_min_km", "range_max_km", "range_max_qualifier", "range_kind",
                   "confidence", "source_ids", "notes"]


@router.get("/missiles", tags=["reference"], summary="Missile systems and their published ranges")
def list_missiles(catalogue: CatalogueDep):
    """Every missile with its class, range (blank where no figure is published), kind of range and sources."""
    items = []
    for _, row in catalogue.missiles.iterrows():
        item = record(row, MISSILE_COLUMNS)
        item["aliases"], item["source_ids"] = split_list(item["aliases"]), split_list(item["source_ids"])
        items.append(item)
    return {"missiles": items, "data_version": catalogue.version}


@router.get("/places", response_class=GeoJSONResponse, tags=["reference"], summary="Reference places")
def list_places(catalogue: CatalogueDep):
    """The places `near=` accepts, with their sources."""
    features = [
        feature(row.geometry, record(row, [c for c in row.index if c != "geometry"]), place_id)
        for place_id, row in catalogue.places.iterrows()
    ]
    return feature_collection(features, data_version=catalogue.version)


@router.get("/borders", tags=["borders"], summary="Border lines")
def list_borders(catalogue: CatalogueDep):
    """Every border's id, name, kind and source (the lines themselves are in the GeoPackage)."""
    columns = [c for c in catalogue.borders.columns if c != "geometry"]
    items = [record(row, columns) for _, row in catalogue.borders.iterrows()]
    return {"borders": items, "measured_for_sites": list(catalogue.measured_border_ids)}


@router.get("/borders/distance", tags=["borders"], summary="Distance from a point to the borders")
def border_distance(
    catalogue: CatalogueDep,
    point: Annotated[CentreParams, Depends()],
    border: Annotated[
        list[Annotated[str, Query(min_length=1, max_length=100)]] | None,
        Query(max_length=MAX_LIST_ITEMS, description="Border ids; default: the borders sites are measured against."),
    ] = None,
):
    """Geodesic distance from a point to each border, with the nearest point on it, nearest first."""
    centre = point.resolve(catalogue, required=True)
    table = catalogue.border_distances(centre.lon, centre.lat, border).sort_values("distance_km")
    return {
        "point": {"lon": centre.lon, "lat": centre.lat, "place_id": centre.place_id},
        "borders": [
            {"border_id": row.border_id, "name": row.name, "distance_km": rounded_km(row.distance_km),
             "nearest_point": [round(row.nearest_lon, 7), round(row.nearest_lat, 7)]}
            for row in table.itertuples()
        ],
    }


@router.get("/health", tags=["service"], summary="Liveness and data version")
def health(request: Request, catalogue: CatalogueDep):
    """OK with the number of sites, the data version and the answering worker's process id; 503 when the live file
    was deleted or replaced under the service."""
    problem = request.app.state.live.problem
    if problem is not None:
        raise StorageUnavailable(problem)
    return {"status": "ok", "sites": len(catalogue.sites), "data_version": catalogue.version, "worker": os.getpid()}
