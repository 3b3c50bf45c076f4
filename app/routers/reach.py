"""/reach: which sites and missiles can reach a target, allowing for how well each site's coordinate is known."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from app.queries import REACH_VERDICTS
from app.formats import feature, feature_collection, reach_pairs, rounded_km, site_properties
from app.routers import CatalogueDep, GeoJSONResponse
from app.schemas import MAX_RADIUS_KM, CentreParams, FilterParams

router = APIRouter(tags=["reach"])


@router.get("/reach", response_class=GeoJSONResponse, summary="Sites that can reach a target")
def reach(
    catalogue: CatalogueDep,
    target: Annotated[CentreParams, Depends()],
    filters: Annotated[FilterParams, Depends()],
    short_km: Annotated[float | None, Query(
        ge=0, le=MAX_RADIUS_KM, allow_inf_nan=False,
        description="Also list the missiles that fall short of the target by at most this many km.")] = None,
):
    """Sites holding a missile whose published range covers the target, each missile with its margin in km as an
    interval (margin ± the site's coordinate precision; null when the precision is unknown) and its verdict."""
    centre = target.resolve(catalogue, required=True)
    where = filters.to_filter()
    pairs = catalogue.reach(centre, where=where, short_km=short_km)
    features = []
    for site_id, group in pairs.groupby("site_id", sort=False):
        site = catalogue.site_row(site_id)
        properties = site_properties(site)
        properties["distance_km"] = rounded_km(group["distance_km"].iloc[0])
        properties["missiles"] = reach_pairs(group, with_site=False)
        features.append(feature(site.geometry, properties, site_id))
    verdicts = {verdict: reach_pairs(pairs[pairs["verdict"] == verdict]) for verdict in REACH_VERDICTS}
    return feature_collection(
        features, target={"lon": centre.lon, "lat": centre.lat, "place_id": centre.place_id}, short_km=short_km,
        verdicts=verdicts, verdict_meanings=REACH_VERDICTS, not_assessed=catalogue.unassessable_site_ids(where),
        data_version=catalogue.version,
    )
