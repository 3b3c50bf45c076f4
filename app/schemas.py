"""Request parameter groups, shared by every route, with their bounds and API docs."""

from __future__ import annotations

import dataclasses
import datetime
import inspect
import re
import typing
from dataclasses import dataclass
from typing import Annotated, Literal

import pydantic
from fastapi import Query, Request
from fastapi.exceptions import RequestValidationError

from app.catalogue import Catalogue
from app.queries import BorderBand, Centre, SiteFilter, SitePage
from app.errors import InvalidParameter
from app.geodesy import EARTH_HALF_CIRCUMFERENCE_M

MAX_LIMIT = 1000
MAP_MAX_LIMIT = 100_000
"""A map draws the whole catalogue (sites are sent as one compact array); `/sites` pages stay at MAX_LIMIT."""
MAX_RADIUS_KM = EARTH_HALF_CIRCUMFERENCE_M / 1000
MIN_RADIUS_KM = 0.001
"""The smallest radius (a metre): a ring much smaller collapses below float resolution and cannot be drawn."""
MAX_LIST_ITEMS = 50
ALPHA3_PATTERN = r"^[A-Z]{3}$"
Status = Literal["active", "inactive", "under_construction", "unknown"]
Declared = Literal["undeclared", "declared", "acknowledged", "unknown"]
Latitude = Annotated[float | None, Query(ge=-90, le=90, allow_inf_nan=False, description="Latitude, WGS84 degrees.")]
Longitude = Annotated[
    float | None, Query(ge=-180, le=180, allow_inf_nan=False, description="Longitude, WGS84 degrees.")
]
Name = Annotated[str | None, Query(min_length=1, max_length=200, description="A reference place, by name or id.")]


def _values(description: str):
    """A repeatable string filter (`?x=a&x=b`)."""
    return Query(max_length=MAX_LIST_ITEMS, description=description)


@dataclass
class CentreParams:
    """A point given as `lat` and `lon`, or by a place name with `near`."""

    lat: Latitude = None
    lon: Longitude = None
    near: Name = None

    def resolve(self, catalogue: Catalogue, *, required: bool = False) -> Centre | None:
        """The centre these parameters name, or None; InvalidParameter when half-given or ambiguous."""
        has_point = self.lat is not None or self.lon is not None
        if has_point and self.near is not None:
            raise InvalidParameter("give either lat and lon, or near, not both", parameter="near")
        if has_point and (self.lat is None or self.lon is None):
            raise InvalidParameter("lat and lon must be given together", parameter="lon" if self.lon is None else "lat")
        if self.near is not None:
            return catalogue.place(self.near)
        if has_point:
            return Centre(self.lon, self.lat)
        if required:
            raise InvalidParameter("a point is required: give lat and lon, or near", parameter="lat")
        return None


@dataclass
class FilterParams:
    """Attribute filters on sites; repeat a parameter to accept several values."""

    status: Annotated[list[Status] | None, _values("Current status (derived from the latest observation).")] = None
    declared: Annotated[list[Declared] | None, _values("Declared status.")] = None
    missile_class: Annotated[list[str] | None, _values("Missile class, e.g. SRBM, MRBM, IRBM, ICBM.")] = None
    missile_type: Annotated[list[str] | None, _values("Missile id, e.g. hwasong-5 (see /missiles).")] = None
    facility_type: Annotated[list[str] | None, _values("Facility type, e.g. missile_operating_base.")] = None
    country: Annotated[list[Annotated[str, Query(pattern=ALPHA3_PATTERN)]] | None,
                       _values("ISO 3166 alpha-3 country code, e.g. PRK.")] = None

    def to_filter(self) -> SiteFilter:
        """The catalogue filter these parameters describe."""
        return SiteFilter(**{name: tuple(getattr(self, name) or ()) for name in SiteFilter.__dataclass_fields__})


@dataclass
class RadiusParams:
    """A geodesic radius around the centre."""

    within_km: Annotated[
        float | None,
        Query(ge=MIN_RADIUS_KM, le=MAX_RADIUS_KM, allow_inf_nan=False,
              description="Keep sites within this geodesic (WGS84) distance of the centre, in km."),
    ] = None


@dataclass
class BorderParams:
    """A band of distance to one border, e.g. the first belt: `border=mdl&border_min_km=50&border_max_km=90`."""

    border: Annotated[str | None, Query(min_length=1, max_length=100, description="Border id (see /borders).")] = None
    border_min_km: Annotated[
        float | None, Query(ge=0, le=MAX_RADIUS_KM, allow_inf_nan=False, description="Minimum distance to the border, km.")
    ] = None
    border_max_km: Annotated[
        float | None, Query(ge=0, le=MAX_RADIUS_KM, allow_inf_nan=False, description="Maximum distance to the border, km.")
    ] = None

    def to_band(self) -> BorderBand | None:
        """The band these parameters describe, or None."""
        if self.border is None:
            if self.border_min_km is not None or self.border_max_km is not None:
                raise InvalidParameter("border_min_km and border_max_km need border", parameter="border")
            return None
        if None not in (self.border_min_km, self.border_max_km) and self.border_min_km > self.border_max_km:
            raise InvalidParameter("border_min_km is greater than border_max_km", parameter="border_min_km")
        return BorderBand(self.border, self.border_min_km, self.border_max_km)


@dataclass
class PageParams:
    """Order and paging."""

    sort: Annotated[Literal["distance", "name", "border"] | None, Query(
        description="Order: distance (needs a centre), name, or border: distance to the `border` named, nearest "
                    "first (e.g. the first belt in order from the MDL).")] = None
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size.")] = 100
    offset: Annotated[int, Query(ge=0, le=10_000_000, description="Rows to skip.")] = 0


@dataclass
class MapPageParams(PageParams):
    """Order and paging for a map: up to the whole catalogue in one map."""

    limit: Annotated[int, Query(ge=1, le=MAP_MAX_LIMIT, description="Sites to draw.")] = 100


DAY_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
"""A calendar day, YYYY-MM-DD, and nothing else (no week dates, no timestamps, no `0`)."""


def parse_day(text: str | None, parameter: str) -> datetime.date | None:
    """A YYYY-MM-DD text as a date; InvalidParameter naming the parameter for anything else."""
    if text is None:
        return None
    try:
        if re.fullmatch(DAY_PATTERN, text):
            return datetime.date.fromisoformat(text)
    except ValueError:
        pass
    raise InvalidParameter(f"{parameter} must be a calendar day YYYY-MM-DD, got {text!r}", parameter=parameter)


@dataclass
class AsOfParams:
    """A past day: answer from the catalogue as it was known at the end of that UTC day."""

    as_of: Annotated[str | None, Query(
        pattern=DAY_PATTERN, json_schema_extra={"format": "date"},
        description="YYYY-MM-DD: the catalogue as known at the end of that day (UTC), from the change log; bundled "
                    "sites count from their first dated report, and those with none are listed in `not_dated`.",
    )] = None

    def apply(self, catalogue: Catalogue) -> Catalogue:
        """The catalogue as of the day (itself when none is given); InvalidParameter for a day after today."""
        return catalogue_as_of(catalogue, parse_day(self.as_of, "as_of"))


def catalogue_as_of(catalogue: Catalogue, day: datetime.date | None, parameter: str = "as_of") -> Catalogue:
    """The catalogue as known at the end of a UTC day, refusing days after today."""
    if day is not None and day > datetime.datetime.now(datetime.timezone.utc).date():
        raise InvalidParameter(f"as_of {day.isoformat()} is after today (UTC)", parameter=parameter)
    return catalogue.as_of(day)


def as_of_fields(catalogue: Catalogue) -> dict:
    """What an as_of answer adds: the day, and the sites left out because no report dates them."""
    if catalogue.as_of_day is None:
        return {}
    return {"as_of": catalogue.as_of_day.isoformat(), "not_dated": catalogue.undated_site_ids}


def run_site_query(catalogue: Catalogue, centre: CentreParams, radius: RadiusParams, filters: FilterParams,
                   border: BorderParams, page: PageParams) -> SitePage:
    """The /sites query the parameter groups describe; sorted by distance when there is a centre."""
    where = centre.resolve(catalogue)
    return catalogue.find_sites(
        where=filters.to_filter(), centre=where, within_km=radius.within_km, band=border.to_band(),
        sort=page.sort or ("distance" if where is not None else "name"), limit=page.limit, offset=page.offset,
    )


def _declaring(groups, fields) -> typing.Callable:
    """A function whose signature declares the groups' parameters, as `Depends()` on each would (for API docs)."""
    def declared(**values):
        return values

    declared.__signature__ = inspect.Signature([
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=hint)
        for names in fields for name, hint, default in names])
    return declared


def _is_list(hint) -> bool:
    """Whether an `Annotated[list[...] | None, ...]` parameter takes several values."""
    kind = typing.get_args(hint)[0] if typing.get_origin(hint) is Annotated else hint
    return any(typing.get_origin(member) is list for member in (typing.get_args(kind) or (kind,)))


class QueryGroups:
    """Parameter groups (dataclasses of `Annotated[..., Query(...)]`) parsed in one pydantic validation.

    The same values, bounds and errors as FastAPI's per-parameter validation of `Depends()` on each group, at one
    call instead of one per parameter; `openapi_parameters()` gives the operation's parameters exactly as FastAPI
    documents them (routes pass it as `openapi_extra`)."""

    def __init__(self, *groups: type):
        self.groups = groups
        self.fields = []
        for group in groups:
            hints = typing.get_type_hints(group, include_extras=True)
            self.fields.append([(f.name, hints[f.name], f.default) for f in dataclasses.fields(group)])
        flat = [field for names in self.fields for field in names]
        self._names = [(name, _is_list(hint)) for name, hint, _ in flat]
        self._model = pydantic.create_model(f"{groups[0].__name__}Query",
                                            **{name: (hint, default) for name, hint, default in flat})

    async def __call__(self, request: Request) -> tuple:
        """The groups, filled from the request's query string; RequestValidationError as FastAPI raises it."""
        return self.parse(request.query_params)

    def parse(self, params) -> tuple:
        """The groups, filled from query parameters (a Starlette QueryParams); RequestValidationError when bad."""
        values = {}
        for name, listed in self._names:
            value = params.getlist(name) if listed else params.get(name)
            if value:
                values[name] = value
            elif value == "":
                values[name] = value
        try:
            parsed = self._model.model_validate(values)
        except pydantic.ValidationError as exc:
            raise RequestValidationError([{**error, "loc": ("query", *error["loc"])}
                                          for error in exc.errors(include_url=False)]) from None
        return tuple(group(**{name: getattr(parsed, name) for name, _, _ in names})
                     for group, names in zip(self.groups, self.fields))

    def openapi_parameters(self) -> list[dict]:
        """The parameters, documented by FastAPI as for a route taking `Depends()` on each group."""
        from fastapi import Depends, FastAPI

        app = FastAPI()
        app.get("/")(lambda _=Depends(_declaring(self.groups, self.fields)): None)
        return app.openapi()["paths"]["/"]["get"]["parameters"]


site_query = QueryGroups(CentreParams, RadiusParams, FilterParams, BorderParams, PageParams, AsOfParams)
"""The parameters of /sites as one dependency: (centre, radius, filters, border, page, as_of)."""
radius_query = QueryGroups(CentreParams, RadiusParams)
"""The centre and radius of /sites: OGC sites items take them (`lat`, `lon`, `within_km`) with the same bounds."""
as_of_query = QueryGroups(AsOfParams)
"""The as_of of /sites, which every OGC items request takes too."""


def select_sites(catalogue: Catalogue, centre: CentreParams, radius: RadiusParams, filters: FilterParams,
                 border: BorderParams, page: PageParams):
    """The page of /sites the parameter groups describe, as positions into the snapshot's answers."""
    where = centre.resolve(catalogue)
    return catalogue.answers.select(
        where=filters.to_filter(), centre=where, within_km=radius.within_km, band=border.to_band(),
        sort=page.sort or ("distance" if where is not None else "name"), limit=page.limit, offset=page.offset,
    )


CitySort = Literal["population", "distance", "name"]


@dataclass
class CityParams:
    """Which cities (GeoNames, >= 15,000 people) and in what order: by country and size, paged."""

    city_country: Annotated[list[str] | None, _values("Cities' GeoNames ISO alpha-3 country, e.g. KOR (repeatable).")] = None
    min_population: Annotated[int | None, Query(ge=0, le=10_000_000_000, description="Keep cities of at least this many "
                                                "people.")] = None
    sort: Annotated[CitySort | None, Query(description="population (largest first), distance or name.")] = None
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size.")] = 100
    offset: Annotated[int, Query(ge=0, le=10_000_000, description="Rows to skip.")] = 0

    def countries(self, catalogue: Catalogue) -> tuple[str, ...]:
        """The asked countries, each one the cities layer holds; InvalidParameter otherwise."""
        known = catalogue.city_countries
        for code in self.city_country or ():
            if code not in known:
                raise InvalidParameter(f"no city in country {code!r}: give a GeoNames ISO alpha-3 code such as KOR",
                                       parameter="city_country")
        return tuple(self.city_country or ())

