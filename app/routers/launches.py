"""/sites/{site_id}/launches: dated missile flight tests (CNS database) at or near a site, by year and missile."""

import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from app.catalogue import Catalogue
from app.queries import launch_counts, record
from app.formats import rounded_km
from app.routers import CatalogueDep
from app.errors import InvalidParameter, StorageUnavailable
from app.schemas import MAX_RADIUS_KM, MIN_RADIUS_KM, AsOfParams, parse_day

router = APIRouter(tags=["launches"])
SiteId = Annotated[str, Path(min_length=1, max_length=200, description="Site id, e.g. kittaeryong-missile-base.")]
ATTRIBUTION = ("CNS North Korea Missile Test Database (James Martin Center for Nonproliferation Studies, for NTI), as "
               "redistributed by nagix/nk-missile-tests (Apache-2.0)")
LAUNCH_FIELDS = ["id", "launched_on", "time_utc", "missile_id", "cns_missile", "missile_name", "cns_class", "cns_facility",
                 "facility_name", "site_id", "outcome", "apogee_km", "distance_flown_km", "source_id"]


def launch_record(row, *, description: bool = False) -> dict:
    """A launch as JSON: its fields, its point (null where the database did not report the site) and its distance."""
    item = record(row, LAUNCH_FIELDS + (["description"] if description else []))
    geometry = row.geometry
    item["point"] = None if geometry is None or geometry.is_empty else [geometry.x, geometry.y]
    if "distance_km" in row.index:
        item["distance_km"] = rounded_km(row["distance_km"])
    return item


def site_launch_summary(catalogue: Catalogue, site_id: str) -> list[dict] | None:
    """The launches at a site's own facility, oldest first, for `/sites/{site_id}`; None (unknown) when the file was
    built before the launches layer existed."""
    try:
        rows = catalogue.site_launches(site_id)
    except StorageUnavailable:
        return None
    return [launch_record(row) for _, row in rows.iterrows()]


@router.get("/sites/{site_id}/launches", summary="Launches at or near a site, by year and missile")
def get_site_launches(
    catalogue: CatalogueDep,
    site_id: SiteId,
    as_of: Annotated[AsOfParams, Depends()],
    within_km: Annotated[float | None, Query(
        ge=MIN_RADIUS_KM, le=MAX_RADIUS_KM, allow_inf_nan=False,
        description="Also every located launch within this geodesic distance of the site, km (default: only the "
                    "launches the data places at the site's own facility)."),
    ] = None,
):
    """Flight tests from the CNS database at the site (and within `within_km` of it), oldest first, with counts by
    year and missile; launches whose site was not reported have no point and never fall within a distance. `as_of`
    keeps the launches that had happened by the end of that day (the site itself as it stands now)."""
    day = parse_day(as_of.as_of, "as_of")
    if day is not None and day > datetime.datetime.now(datetime.timezone.utc).date():
        raise InvalidParameter(f"as_of {day.isoformat()} is after today (UTC)", parameter="as_of")
    rows = catalogue.site_launches(site_id, within_km=within_km, as_of=day)
    unlocated = int(catalogue.launches_known(day).geometry.isna().sum())
    return {
        "site_id": site_id, "within_km": within_km, "count": len(rows), "by_year_and_missile": launch_counts(rows),
        "launches": [launch_record(row, description=True) for _, row in rows.iterrows()],
        "not_located": unlocated, "source": ATTRIBUTION, "data_version": catalogue.version,
        **({"as_of": day.isoformat()} if day else {}),
    }
