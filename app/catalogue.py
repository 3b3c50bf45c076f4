"""The catalogue in memory: one consistent snapshot of the GeoPackage's layers, and every query on it."""

from __future__ import annotations

import copy
import datetime
import hashlib
import math
from contextlib import closing
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from app import geodesy, history
from app.border_distances import distances_to_line
from app.spatial_index import PointIndex
from app.errors import Gone, InvalidParameter, NotFound
from app.store import EDIT_COLUMNS, TEXT_DTYPE, connect_readonly, has_table, read_layer
from app.vocab import DECLARED, LIST_COLUMN_NAMES, STATUSES, decode_list

SORTS = ("distance", "name")
BORDER_KINDS_ALWAYS_MEASURED = ("mdl", "dmz_edge")


split_list = decode_list  # a stored list cell (a JSON array) as its items; the name others import


def has_point(geometry) -> bool:
    """Whether a cell holds a real, non-empty geometry (unknown coordinates are NULL or NaN)."""
    return isinstance(geometry, shapely.Geometry) and not geometry.is_empty


def located(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The rows of a frame that have a known coordinate."""
    geometries = frame.geometry.to_numpy()
    return frame[~shapely.is_missing(geometries) & ~shapely.is_empty(geometries)]


def _clean(value):
    """A cell value as JSON-ready Python: NaN and NA become None, numpy scalars become Python."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return _clean(value.item())
    return value


def record(row: pd.Series, columns) -> dict:
    """The given columns of a row as a plain dict of JSON-ready values (list columns as lists)."""
    return {column: decode_list(row[column]) if column in LIST_COLUMN_NAMES else _clean(row[column]) for column in columns}


@dataclass(frozen=True)
class SiteFilter:
    """Attribute filters on sites; each field keeps sites matching any of its values."""

    status: tuple[str, ...] = ()
    declared: tuple[str, ...] = ()
    missile_class: tuple[str, ...] = ()
    missile_type: tuple[str, ...] = ()
    facility_type: tuple[str, ...] = ()
    country: tuple[str, ...] = ()


@dataclass(frozen=True)
class BorderBand:
    """Keep sites whose distance to one border lies in [min_km, max_km]."""

    border_id: str
    min_km: float | None = None
    max_km: float | None = None


@dataclass(frozen=True)
class Centre:
    """A query centre in lon/lat degrees, with the place it was named by, if any."""

    lon: float
    lat: float
    place_id: str | None = None


@dataclass
class SitePage:
    """One page of a site query: the rows, how many matched in all, and the query's centre."""

    sites: gpd.GeoDataFrame
    number_matched: int
    centre: Centre | None = None
    border_distances: dict[str, dict[str, float]] = field(default_factory=dict)


def _with_columns(frame: pd.DataFrame, columns) -> pd.DataFrame:
    """A layer with the given columns added as all-NULL when the file predates them (the bundled build)."""
    missing = [c for c in columns if c not in frame.columns]
    return frame.assign(**{c: pd.Series([None] * len(frame), index=frame.index, dtype=TEXT_DTYPE) for c in missing})


def last_change_id(connection) -> int:
    """The id of the newest recorded change (0 when the file has none or no change log)."""
    if not has_table(connection, "changes"):
        return 0
    return connection.execute("SELECT coalesce(max(id), 0) FROM changes").fetchone()[0]


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes: the data version shown in answers and on maps."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Catalogue:
    """The catalogue's layers in memory, with every site's border distances precomputed."""

    def __init__(self, path: Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"GeoPackage not found: {self.path}")
        self.file_version = file_sha256(self.path)
        with closing(connect_readonly(self.path)) as connection:
            self.missiles = read_layer(connection, "missiles").set_index("id", drop=False)
            self.places = read_layer(connection, "places").set_index("id", drop=False)
            self.borders = read_layer(connection, "borders").set_index("id", drop=False)
            self.countries = read_layer(connection, "countries")  # the maps' vector basemap
            self.reported = read_layer(connection, "reported_distances")
        self._border_ids_by_countries: dict[frozenset, tuple[str, ...]] = {}
        self._load_editable()
        self.site_borders = self._measure_site_borders(self.measured_border_ids)
        self._other_border_km: dict[str, pd.Series] = {}  # bands on borders sites are not measured against
        self._located_ids, self.site_index = self._index_sites()

    def _load_editable(self) -> None:
        """Read the layers analysts edit, in one read transaction: sites (retired apart), observations, sources."""
        with closing(connect_readonly(self.path)) as connection:
            connection.execute("BEGIN")
            sites = _with_columns(read_layer(connection, "sites"), EDIT_COLUMNS["sites"]).set_index("id", drop=False)
            self.observations = _with_columns(read_layer(connection, "observations"), EDIT_COLUMNS["observations"])
            sources = _with_columns(read_layer(connection, "sources"), EDIT_COLUMNS["sources"])
            self.last_change = last_change_id(connection)
            connection.execute("COMMIT")
        retired = sites["retired_at"].notna()
        self.sites, self.retired_sites = sites[~retired], sites[retired]
        self.sources = sources.set_index("id", drop=False)
        self.version = self.file_version if not self.last_change else f"{self.file_version}+{self.last_change}"
        self.as_of_day: datetime.date | None = None
        self.undated_site_ids: list[str] = []
        self._as_of_cache: dict[datetime.date, Catalogue] = {}

    def refreshed(self) -> "Catalogue":
        """A new catalogue with the edited layers read again; unmoved sites keep their border distances."""
        new = self._copy()
        new._load_editable()
        return new._derive_from(self)

    def _copy(self) -> "Catalogue":
        """A shallow copy sharing the fixed layers, with the values derived from sites dropped."""
        new = copy.copy(self)
        for name in ("measured_border_ids", "vocabularies"):
            new.__dict__.pop(name, None)
        return new

    def _derive_from(self, old: "Catalogue") -> "Catalogue":
        """Border distances (reused where a site has not moved) and the spatial index for the new sites."""
        self.site_borders = self._reuse_site_borders(old)
        self._other_border_km = {}
        self._located_ids, self.site_index = self._index_sites()
        return self

    def as_of(self, day: datetime.date | None) -> "Catalogue":
        """The catalogue as it was known at the end of a UTC day (itself when no day is given)."""
        if day is None:
            return self
        if day not in self._as_of_cache:
            self._as_of_cache[day] = self._known_on(day)
        return self._as_of_cache[day]

    def _known_on(self, day: datetime.date) -> "Catalogue":
        """Rebuild sites, observations and sources from the change log; bundled sites count from their first report."""
        instant = history.day_end(day)
        changes = history.read_changes(self.path, up_to_id=self.last_change)
        every_site = pd.concat([self.sites, self.retired_sites])
        site_changes = [c for c in changes if c["entity"] == "site"]
        states = history.state_at(history.site_records(every_site), site_changes, instant)
        observations = history.observations_at(self.observations, day)
        bundled_observations = self.observations[self.observations["recorded_at"].isna()]
        status = history.latest_status(observations)
        kept, undated = [], []
        for site_id, state in states.items():
            if state.get("retired_at") and state["retired_at"] < instant:
                continue
            if state.get("created_at") is None:
                since = history.known_since(state, bundled_observations, self.sources)
                if since is None:
                    undated.append(site_id)
                    continue
                if since > day:
                    continue
            seen, on = status.get(site_id, ("unknown", None))
            kept.append({**state, "current_status": seen, "status_observed_on": on})
        new = self._copy()
        new.sites = history.sites_frame(kept, like=every_site)
        new.retired_sites = every_site.iloc[:0]
        new.observations = observations[observations["site_id"].isin(new.sites.index)]
        new.sources = self._sources_on(instant, [c for c in changes if c["entity"] == "source"])
        new.as_of_day, new.undated_site_ids, new._as_of_cache = day, sorted(undated), {}
        new.version = f"{self.version}@{day.isoformat()}"
        return new._derive_from(self)

    def _sources_on(self, instant: str, changes: list[dict]) -> pd.DataFrame:
        """The sources as they stood before an instant."""
        current = {k: record(row, self.sources.columns) for k, row in self.sources.iterrows()}
        states = history.state_at(current, changes, instant)
        frame = pd.DataFrame(list(states.values()), columns=self.sources.columns)
        return frame.astype(self.sources.dtypes.to_dict()).set_index("id", drop=False)

    def _reuse_site_borders(self, old: "Catalogue") -> pd.DataFrame:
        """Border distances: the old rows for sites at the same point, measured afresh for new or moved sites."""
        if self.measured_border_ids != old.measured_border_ids:
            return self._measure_site_borders(self.measured_border_ids)
        sites = located(self.sites)
        before = located(old.sites).geometry
        common = sites.index.intersection(before.index)
        now, then = sites.geometry.loc[common].to_numpy(), before.loc[common].to_numpy()
        unmoved = (shapely.get_x(now) == shapely.get_x(then)) & (shapely.get_y(now) == shapely.get_y(then))
        same = common[unmoved]
        kept = old.site_borders[old.site_borders["site_id"].isin(same)]
        moved = sites.index.difference(pd.Index(same), sort=False)
        fresh = self._measure_site_borders(self.measured_border_ids, sites.loc[moved]) if len(moved) else kept.iloc[:0]
        order = {site_id: n for n, site_id in enumerate(sites.index)}
        table = pd.concat([kept, fresh], ignore_index=True)
        positions = table["site_id"].map(order).to_numpy() * len(self.measured_border_ids)
        positions += table["border_id"].map({b: n for n, b in enumerate(self.measured_border_ids)}).to_numpy()
        return table.iloc[np.argsort(positions, kind="stable")].reset_index(drop=True)

    def _index_sites(self) -> tuple[np.ndarray, PointIndex]:
        """The located sites' ids and an exact spatial index on their points (same order)."""
        sites = located(self.sites)
        return sites.index.to_numpy(), PointIndex(sites.geometry.x.to_numpy(), sites.geometry.y.to_numpy())

    # --- vocabularies -------------------------------------------------------------------------

    @cached_property
    def measured_border_ids(self) -> tuple[str, ...]:
        """Borders every site is measured against: the MDL, the DMZ edges, and its countries' land borders."""
        site_countries = frozenset(self.sites["country"].dropna())
        if site_countries not in self._border_ids_by_countries:  # shared by every snapshot of this file
            self._border_ids_by_countries[site_countries] = tuple(
                border_id for border_id, kind, countries in zip(self.borders.index, self.borders["kind"],
                                                                self.borders["countries"])
                if kind in BORDER_KINDS_ALWAYS_MEASURED or set(split_list(countries)) & site_countries)
        return self._border_ids_by_countries[site_countries]

    @cached_property
    def vocabularies(self) -> dict[str, tuple[str, ...]]:
        """The values each filter accepts, read from the data."""
        return {
            "status": STATUSES,
            "declared": DECLARED,
            "missile_class": tuple(sorted(set(self.missiles["class"].dropna()) | self._reported_classes())),
            "missile_type": tuple(self.missiles.index),
            "facility_type": tuple(sorted(set(self.sites["facility_type"].dropna()))),
            "country": tuple(sorted(set(self.sites["country"].dropna()))),
        }

    def _reported_classes(self) -> set[str]:
        """Classes named on sites without a missile type (e.g. a reported ICBM unit)."""
        return {item for cell in self.sites["missile_classes"] for item in split_list(cell)}

    # --- lookups ------------------------------------------------------------------------------

    def place(self, name: str, *, parameter: str = "near") -> Centre:
        """A reference place by id or name (case-insensitive) as a query centre."""
        centre = self._centres_by_name.get(name.strip().casefold())
        if centre is not None:
            return centre
        known = ", ".join(sorted(self.places["name"]))
        raise InvalidParameter(f"unknown place {name!r}; known places: {known}", parameter=parameter)

    @cached_property
    def _centres_by_name(self) -> dict[str, Centre]:
        """Each place's centre under its casefolded id and name (ids win over names)."""
        centres = {}
        for place_id, name, point in reversed(list(zip(self.places.index, self.places["name"], self.places.geometry))):
            centres[str(name).casefold()] = Centre(point.x, point.y, place_id)
        for place_id, point in zip(self.places.index, self.places.geometry):
            centres[str(place_id).casefold()] = Centre(point.x, point.y, place_id)
        return centres

    def site_row(self, site_id: str) -> pd.Series:
        """One site's row, or NotFound."""
        if site_id in self.retired_sites.index:
            retired = self.retired_sites.loc[site_id]
            raise Gone(f"site {site_id!r} was retired at {retired['retired_at']} by {retired['retired_by']}",
                       parameter="site_id")
        if site_id not in self.sites.index:
            raise NotFound(f"no site with id {site_id!r}", parameter="site_id")
        return self.sites.loc[site_id]

    def border_row(self, border_id: str, *, parameter: str = "border") -> pd.Series:
        """One border's row, or InvalidParameter naming the known ids."""
        if border_id not in self.borders.index:
            raise InvalidParameter(
                f"unknown border {border_id!r}; known borders include: {', '.join(self.measured_border_ids)}",
                parameter=parameter,
            )
        return self.borders.loc[border_id]

    def check_filter(self, where: SiteFilter) -> None:
        """Raise InvalidParameter for a filter value the catalogue does not know."""
        for name, allowed in self.vocabularies.items():
            for value in getattr(where, name):
                if value not in allowed:
                    raise InvalidParameter(
                        f"unknown {name} {value!r}; allowed: {', '.join(allowed)}", parameter=name
                    )

    # --- border distances ---------------------------------------------------------------------

    def _measure_site_borders(self, border_ids, sites: gpd.GeoDataFrame | None = None) -> pd.DataFrame:
        """Every located site's (or the given sites') distance to each border, with the nearest point on it."""
        sites = located(self.sites) if sites is None else sites
        lons, lats = sites.geometry.x.to_numpy(), sites.geometry.y.to_numpy()
        tables = []
        for order, border_id in enumerate(border_ids):
            distance_m, nearest_lon, nearest_lat = distances_to_line(lons, lats, self.borders.loc[border_id].geometry)
            tables.append(pd.DataFrame({
                "site_id": sites.index, "border_id": border_id, "distance_km": distance_m / 1000,
                "nearest_lon": nearest_lon, "nearest_lat": nearest_lat, "_site": np.arange(len(sites)), "_border": order,
            }))
        columns = ["site_id", "border_id", "distance_km", "nearest_lon", "nearest_lat"]
        if not tables:
            return pd.DataFrame(columns=columns)
        table = pd.concat(tables, ignore_index=True).sort_values(["_site", "_border"], kind="stable")
        return table[columns].reset_index(drop=True)

    def _border_distance(self, point, border_id: str) -> dict:
        """Distance from a point to one border, in km, with the nearest point on it."""
        distance_m, (lon, lat) = geodesy.nearest_on_line(point.x, point.y, self.borders.loc[border_id].geometry)
        return {"border_id": border_id, "distance_km": distance_m / 1000, "nearest_lon": lon, "nearest_lat": lat}

    def border_distances(self, lon: float, lat: float, border_ids=None) -> pd.DataFrame:
        """Distance from any point to each border (the measured set unless ids are given)."""
        ids = list(border_ids or self.measured_border_ids)
        for border_id in ids:
            self.border_row(border_id)
        point = shapely.Point(lon, lat)
        rows = [self._border_distance(point, border_id) for border_id in ids]
        table = pd.DataFrame(rows)
        table["name"] = [self.borders.loc[b, "name"] for b in table["border_id"]]
        return table

    def site_border_distances(self, site_ids) -> dict[str, dict[str, float]]:
        """Each site's distances in km keyed by border id, for the given sites."""
        site_ids = list(site_ids)
        border_ids = self.measured_border_ids
        matrix = self.site_borders["distance_km"].to_numpy().reshape(len(self._located_ids), len(border_ids))
        positions = pd.Index(self._located_ids).get_indexer(site_ids)  # site_borders is in located-site order
        return {site_id: ({} if at < 0 else dict(zip(border_ids, matrix[at].tolist())))
                for site_id, at in zip(site_ids, positions)}

    def _distance_to_border_km(self, border_id: str) -> pd.Series:
        """Every located site's distance in km to one border (measured now if not precomputed)."""
        known = self.site_borders[self.site_borders["border_id"] == border_id]
        if known.empty:
            if border_id not in self._other_border_km:
                measured = self._measure_site_borders([border_id]).set_index("site_id")["distance_km"]
                self._other_border_km.setdefault(border_id, measured)
            return self._other_border_km[border_id]
        return known.set_index("site_id")["distance_km"]

    # --- queries ------------------------------------------------------------------------------

    def _filtered(self, where: SiteFilter, sites: gpd.GeoDataFrame | None = None) -> gpd.GeoDataFrame:
        """The sites (all, or the given ones) matching every attribute filter."""
        self.check_filter(where)
        sites = self.sites if sites is None else sites
        if where == SiteFilter():
            return sites
        mask = pd.Series(True, index=sites.index)
        if where.status:
            mask &= sites["current_status"].isin(where.status)
        if where.declared:
            mask &= sites["declared_status"].isin(where.declared)
        if where.facility_type:
            mask &= sites["facility_type"].isin(where.facility_type)
        if where.country:
            mask &= sites["country"].isin(where.country)
        if where.missile_type:
            mask &= sites["missile_types"].map(lambda v: bool(set(split_list(v)) & set(where.missile_type)))
        if where.missile_class:
            mask &= sites["missile_classes"].map(lambda v: bool(set(split_list(v)) & set(where.missile_class)))
        return sites[mask]

    def find_sites(
        self,
        *,
        where: SiteFilter = SiteFilter(),
        centre: Centre | None = None,
        within_km: float | None = None,
        band: BorderBand | None = None,
        sort: str = "name",
        limit: int = 100,
        offset: int = 0,
    ) -> SitePage:
        """Sites matching the filters, optionally within a geodesic radius and a border-distance band."""
        if within_km is not None and centre is None:
            raise InvalidParameter("within_km needs a centre: give lat and lon, or near", parameter="within_km")
        if sort == "distance" and centre is None:
            raise InvalidParameter("sort=distance needs a centre: give lat and lon, or near", parameter="sort")
        if centre is None:
            sites = self._filtered(where)
        elif within_km is None:
            sites = self._with_distance(self._filtered(where), centre)
        else:
            sites = self._filtered(where, self._within(centre, within_km))
        if band is not None:
            sites = self._in_band(sites, band)
        sites = self._sorted(sites, sort)
        page = sites.iloc[offset : offset + limit]
        return SitePage(page, len(sites), centre, self.site_border_distances(page.index))

    @staticmethod
    def _with_distance(sites: gpd.GeoDataFrame, centre: Centre) -> gpd.GeoDataFrame:
        """The located sites with `distance_km` from the centre."""
        sites = located(sites)
        distances = geodesy.distance_m(centre.lon, centre.lat, sites.geometry.x.values, sites.geometry.y.values)
        return sites.assign(distance_km=np.asarray(distances) / 1000)

    def _within(self, centre: Centre, within_km: float) -> gpd.GeoDataFrame:
        """The sites within a geodesic radius (exact, through the spatial index), with `distance_km`."""
        positions, distances = self.site_index.within(centre.lon, centre.lat, within_km * 1000)
        return self.sites.loc[self._located_ids[positions]].assign(distance_km=distances / 1000)

    def _in_band(self, sites: gpd.GeoDataFrame, band: BorderBand) -> gpd.GeoDataFrame:
        """Sites whose distance to the band's border lies within it, with that distance as a column."""
        self.border_row(band.border_id)
        distance = self._distance_to_border_km(band.border_id).reindex(sites.index)
        mask = distance.notna()
        if band.min_km is not None:
            mask &= distance >= band.min_km
        if band.max_km is not None:
            mask &= distance <= band.max_km
        return sites[mask].assign(border_distance_km=distance[mask])

    @staticmethod
    def _sorted(sites: gpd.GeoDataFrame, sort: str) -> gpd.GeoDataFrame:
        """Sites in the asked order, ties broken by id so pages are stable."""
        if sort not in SORTS:
            raise InvalidParameter(f"unknown sort {sort!r}; allowed: {', '.join(SORTS)}", parameter="sort")
        ids = np.array([str(i).casefold() for i in sites["id"]], dtype=str)
        first = sites["distance_km"].to_numpy() if sort == "distance" else \
            np.array([str(n).casefold() for n in sites["name"]], dtype=str)
        return sites.iloc[np.lexsort((ids, first))] if len(sites) else sites

    # --- one site -----------------------------------------------------------------------------

    def site_missiles(self, site: pd.Series) -> pd.DataFrame:
        """The missile rows attributed to a site."""
        ids = [m for m in split_list(site["missile_types"]) if m in self.missiles.index]
        return self.missiles.loc[ids]

    def site_observations(self, site_id: str) -> pd.DataFrame:
        """A site's dated observations, newest first."""
        rows = self.observations[self.observations["site_id"] == site_id]
        return rows.sort_values(["observed_on", "id"], ascending=[False, True])

    def sources_for(self, ids) -> pd.DataFrame:
        """The source rows for the given ids, in the given order, without duplicates."""
        unique = [i for i in dict.fromkeys(ids) if i in self.sources.index]
        return self.sources.loc[unique]

    def site_source_ids(self, site: pd.Series) -> list[str]:
        """Every source cited by a site, its observations and its missiles."""
        return self.sources_by_site(site.to_frame().T)[site.name]

    def sources_by_site(self, sites: pd.DataFrame) -> dict[str, list[str]]:
        """Each site's cited source ids: its own and its coordinate's, its observations' (newest first), then each
        of its missiles' in turn."""
        observations = self.observations[self.observations["site_id"].isin(sites["id"])]
        by_site: dict[str, list[str]] = {}
        ordered = observations.sort_values(["observed_on", "id"], ascending=[False, True])
        for site_id, source_id in zip(ordered["site_id"], ordered["source_id"]):
            if not pd.isna(source_id):
                by_site.setdefault(site_id, []).append(source_id)
        missile_sources = {m: split_list(ids) for m, ids in zip(self.missiles.index, self.missiles["source_ids"])}
        coord_sources = sites["coord_source_id"] if "coord_source_id" in sites else [None] * len(sites)
        result = {}
        for index, own, coord, site_id, missile_types in zip(sites.index, sites["source_ids"], coord_sources,
                                                              sites["id"], sites["missile_types"]):
            ids = split_list(own) + split_list(coord) + by_site.get(site_id, [])
            for missile_id in split_list(missile_types):
                ids += missile_sources.get(missile_id, [])
            result[index] = ids
        return result

    def site_border_table(self, site_id: str) -> pd.DataFrame:
        """A site's border distances with the nearest border points, nearest first."""
        table = self.site_borders[self.site_borders["site_id"] == site_id].copy()
        table["name"] = [self.borders.loc[b, "name"] for b in table["border_id"]]
        return table.sort_values("distance_km")

    # --- rings and reach ----------------------------------------------------------------------

    def site_rings(self, site_id: str, km: list[float] | None = None) -> list[dict]:
        """Geodesic range rings around a site: one per missile with a published range, or per asked km."""
        site = self.site_row(site_id)
        if not has_point(site.geometry):
            raise InvalidParameter(f"site {site_id!r} has no known coordinate, so it has no rings", parameter="site_id")
        lon, lat = site.geometry.x, site.geometry.y
        if km:
            return [{"radius_km": r, "geometry": geodesy.range_ring(lon, lat, r * 1000)} for r in km]
        rings = []
        for missile_id, missile in self.site_missiles(site).iterrows():
            if pd.isna(missile["range_max_km"]):
                continue
            rings.append({"missile_id": missile_id, "geometry": self._missile_area(lon, lat, missile), **record(
                missile, ["name", "class", "range_min_km", "range_max_km", "range_kind", "confidence", "source_ids"])})
        return rings

    @staticmethod
    def _missile_area(lon: float, lat: float, missile: pd.Series):
        """The area a missile reaches from a point: its max-range disc less its min-range hole."""
        outer_m = float(missile["range_max_km"]) * 1000
        inner = missile["range_min_km"]
        if pd.isna(inner) or float(inner) <= 0:
            return geodesy.range_ring(lon, lat, outer_m)
        return geodesy.annulus(lon, lat, float(inner) * 1000, outer_m)

    def reach(self, target: Centre, *, where: SiteFilter = SiteFilter()) -> pd.DataFrame:
        """Every (site, missile) pair whose published range covers the target, with the margin in km."""
        rows = []
        for site_id, site in located(self._filtered(where)).iterrows():
            distance_km = float(geodesy.distance_m(site.geometry.x, site.geometry.y, target.lon, target.lat)) / 1000
            for missile_id, missile in self.site_missiles(site).iterrows():
                verdict = _reach_verdict(distance_km, missile)
                if verdict is not None:
                    rows.append({"site_id": site_id, "missile_id": missile_id, "distance_km": distance_km, **verdict})
        columns = ["site_id", "missile_id", "distance_km", "range_min_km", "range_max_km", "range_kind", "margin_km"]
        return pd.DataFrame(rows, columns=columns).sort_values(["margin_km", "site_id", "missile_id"],
                                                               ascending=[False, True, True], ignore_index=True)

    def unassessable_site_ids(self, where: SiteFilter = SiteFilter()) -> list[str]:
        """Sites matching the filters whose reach cannot be judged: no coordinate or no published range."""
        unknown = []
        for site_id, site in self._filtered(where).iterrows():
            ranges = self.site_missiles(site)["range_max_km"]
            if not has_point(site.geometry) or ranges.isna().all():
                unknown.append(site_id)
        return unknown

    # --- data quality -------------------------------------------------------------------------

    def check_reported(self, tolerance_km: float = 5.0) -> pd.DataFrame:
        """Computed distances beside those the sources report, and whether each agrees or is explained.

        A reported distance of a retired site, or of a site without a coordinate, cannot be checked: its row has
        no computed distance, `ok` False and `unchecked` saying why (None on every checked row).
        """
        rows = []
        for item in self.reported.itertuples():
            unchecked = self._unchecked_because(item.site_id)
            computed = math.nan if unchecked else self._computed_to(self.sites.loc[item.site_id], item.target_kind,
                                                                    item.target_id)
            difference = computed - float(item.reported_km)
            explanation = _clean(getattr(item, "explanation", None))
            rows.append({
                "site_id": item.site_id, "target_id": item.target_id, "reported_km": float(item.reported_km),
                "computed_km": computed, "difference_km": difference,
                "ok": not unchecked and (abs(difference) <= tolerance_km or bool(explanation)),
                "explanation": explanation, "unchecked": unchecked,
            })
        return pd.DataFrame(rows, columns=["site_id", "target_id", "reported_km", "computed_km", "difference_km", "ok",
                                           "explanation", "unchecked"])

    def _unchecked_because(self, site_id: str) -> str | None:
        """Why a site's reported distances cannot be checked (retired, unknown, no coordinate), or None."""
        if site_id in self.retired_sites.index:
            return "site retired"
        if site_id not in self.sites.index:
            return "no such site"
        return None if has_point(self.sites.loc[site_id].geometry) else "site has no coordinate"

    def _computed_to(self, site: pd.Series, target_kind: str, target_id: str) -> float:
        """A site's computed distance in km to a place or a border."""
        if target_kind == "border":
            return self._border_distance(site.geometry, target_id)["distance_km"]
        place = self.places.loc[target_id].geometry
        return float(geodesy.distance_m(site.geometry.x, site.geometry.y, place.x, place.y)) / 1000


def _reach_verdict(distance_km: float, missile: pd.Series) -> dict | None:
    """The range facts and margin when a missile covers a distance, else None."""
    max_km, min_km = missile["range_max_km"], missile["range_min_km"]
    if pd.isna(max_km) or distance_km > float(max_km):
        return None
    if not pd.isna(min_km) and distance_km < float(min_km):
        return None
    return {
        "range_min_km": _clean(min_km), "range_max_km": float(max_km),
        "range_kind": missile["range_kind"], "margin_km": float(max_km) - distance_km,
    }
