"""/reach: which sites and missiles can reach a target."""

from typing import Annotated

from fastapi import APIRouter, Depends

from app.formats import feature, feature_collection, rounded_km, site_properties
from app.routers import CatalogueDep, GeoJSONResponse
from app.schemas import CentreParams, FilterParams

router = APIRouter(tags=["reach"])


@router.get("/reach", response_class=GeoJSONResponse, summary="Sites that can reach a target")
def reach(
    catalogue: CatalogueDep,
    target: Annotated[CentreParams, Depends()],
    filters: Annotated[FilterParams, Depends()],
):
    """Sites holding a missile whose published range covers the target, with each missile's margin in km."""
    centre = target.resolve(catalogue, required=True)
    where = filters.to_filter()
    pairs = catalogue.reach(centre, where=where)
    features = []
    for site_id, group in pairs.groupby("site_id", sort=False):
        properties = site_properties(catalogue.site_row(site_id))
        properties["distance_km"] = rounded_km(group["distance_km"].iloc[0])
        properties["reaching_missiles"] = [
            {"missile_id": row.missile_id, "range_min_km": row.range_min_km, "range_max_km": row.range_max_km,
             "range_kind": row.range_kind, "margin_km": rounded_km(row.margin_km)}
            for row in group.itertuples()
        ]
        features.append(feature(catalogue.site_row(site_id).geometry, properties, site_id))
    return feature_collection(
        features, target={"lon": centre.lon, "lat": centre.lat, "place_id": centre.place_id},
        not_assessed=catalogue.unassessable_site_ids(where), data_version=catalogue.version,
    )
