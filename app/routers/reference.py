"""Reference tables: /missiles, /places (each whole or one by id), /borders, /borders/distance, /health."""

from typing import Annotated

import os

import pandas as pd

from fastapi import APIRouter, Depends, Path, Query, Request

from app.queries import record
from app.errors import NotFound, StorageUnavailable
from app.formats import feature, feature_collection, rounded_km
from app.routers import CatalogueDep, GeoJSONResponse
from app.schemas import MAX_LIST_ITEMS, CentreParams
from app.store import EDIT_COLUMNS

router = APIRouter()
MISSILE_COLUMNS = ["id", "name", "aliases", "class", "range_min_km", "range_max_km", "range_max_qualifier", "range_kind",
                   "confidence", "source_ids", "notes"]


MissileId = Annotated[str, Path(min_length=1, max_length=200, description="Missile id, e.g. hwasong-12.")]
PlaceId = Annotated[str, Path(min_length=1, max_length=200, description="Place id, e.g. hagatna.")]


def _missile_item(row) -> dict:
    """A missile row as JSON: the reference columns, then who added or changed it and when."""
    return record(row, [*MISSILE_COLUMNS, *(c for c in EDIT_COLUMNS["missiles"] if c in row.index)])


@router.get("/missiles", tags=["reference"], summary="Missile systems and their published ranges")
def list_missiles(catalogue: CatalogueDep):
    """Every missile with its class, range (blank where no figure is published), kind of range and sources."""
    items = [_missile_item(row) for _, row in catalogue.missiles.iterrows()]
    return {"missiles": items, "data_version": catalogue.version}


@router.get("/missiles/{missile_id}", tags=["reference"], summary="One missile system")
def get_missile(catalogue: CatalogueDep, missile_id: MissileId):
    """A missile with its class, range, kind of range and sources."""
    if missile_id not in catalogue.missiles.index:
        raise NotFound(f"no missile with id {missile_id!r}", parameter="missile_id")
    return {**_missile_item(catalogue.missiles.loc[missile_id]), "data_version": catalogue.version}


def _place_feature(place_id: str, row) -> dict:
    """A place row as a GeoJSON feature."""
    return feature(row.geometry, record(row, [c for c in row.index if c != "geometry"]), place_id)


@router.get("/places", response_class=GeoJSONResponse, tags=["reference"], summary="Reference places")
def list_places(catalogue: CatalogueDep):
    """The places `near=` accepts (by id, name or alias), with their sources."""
    features = [_place_feature(place_id, row) for place_id, row in catalogue.places.iterrows()]
    return feature_collection(features, data_version=catalogue.version)


@router.get("/places/{place_id}", response_class=GeoJSONResponse, tags=["reference"], summary="One reference place")
def get_place(catalogue: CatalogueDep, place_id: PlaceId):
    """A place with its aliases and source."""
    if place_id not in catalogue.places.index:
        raise NotFound(f"no place with id {place_id!r}", parameter="place_id")
    return {**_place_feature(place_id, catalogue.places.loc[place_id]), "data_version": catalogue.version}


@router.get("/borders", tags=["borders"], summary="Border lines")
def list_borders(catalogue: CatalogueDep):
    """Every border's id, name, kind and source (the lines themselves are in the GeoPackage), the coastlines of the
    sites' countries, the named lines attached to each country, and the lines sites are measured against."""
    columns = [c for c in catalogue.borders.columns if c != "geometry"]
    coastlines = [b for b in catalogue.measured_border_ids if b not in catalogue.borders.index]
    lines = pd.concat([catalogue.borders, catalogue.lines_frame(coastlines)])
    items = [record(row, columns) for _, row in lines.iterrows()]
    return {"borders": items, "attached": {country: list(ids) for country, ids in catalogue.attached_borders.items()},
            "measured_for_sites": list(catalogue.measured_border_ids)}


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
