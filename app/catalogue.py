"""The catalogue in memory: one consistent snapshot of the GeoPackage's layers, and every query on it."""

from __future__ import annotations

import copy
import datetime
import math
import threading
from collections import OrderedDict
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from app import geodesy, history, migrations
from app.border_distances import BorderMatrix
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


def _upsert(frame: pd.DataFrame, fresh: pd.DataFrame) -> pd.DataFrame:
    """`frame` (indexed by id, in file order) with `fresh`'s rows in place of its own and new ones after, as a
    whole read of the layer would give them."""
    if fresh.empty:
        return frame
    replaced = frame.index.isin(fresh.index)
    kept = frame[~replaced]
    if kept.empty:
        return fresh
    position = pd.Series(np.arange(len(frame), dtype=float), index=frame.index)
    fresh_position = position.reindex(fresh.index).to_numpy()
    appended = np.arange(len(fresh), dtype=float) + len(frame)
    order = np.concatenate([position.to_numpy()[~replaced], np.where(np.isnan(fresh_position), appended, fresh_position)])
    combined = pd.concat([kept, fresh.astype(kept.dtypes.to_dict())])
    return combined.iloc[np.argsort(order, kind="stable")]


def last_change_id(connection) -> int:
    """The id of the newest recorded change (0 when the file has none or no change log)."""
    if not has_table(connection, "changes"):
        return 0
    return connection.execute("SELECT coalesce(max(id), 0) FROM changes").fetchone()[0]


@contextmanager
def reading(path: Path):
    """A read-only connection holding one read transaction: every query in the block sees the same commit."""
    with closing(connect_readonly(path)) as connection:
        connection.execute("BEGIN")
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the read transaction starts here
        try:
            yield connection
        finally:
            connection.execute("COMMIT")


RING_CACHE_SIZE = 4096  # range areas kept per (site point, missile range): deterministic, so shared by snapshots
AS_OF_CACHE_SIZE = 8  # past days kept per snapshot; any reader can ask for any day, so the cache is bounded
INCREMENTAL_LIMIT = 20_000  # changed rows above which a refresh reads the layers whole
EDITABLE = {"site": "sites", "observation": "observations", "source": "sources"}  # change-log entity -> layer


class Catalogue:
    """The catalogue's layers in memory, with every site's border distances precomputed."""

    def __init__(self, path: Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"GeoPackage not found: {self.path}")
        with reading(self.path) as connection:
            self.build_id = migrations.build_id(connection)
            self.missiles = read_layer(connection, "missiles").set_index("id", drop=False)
            self.places = read_layer(connection, "places").set_index("id", drop=False)
            self.borders = read_layer(connection, "borders").set_index("id", drop=False)
            self.countries = read_layer(connection, "countries")  # the maps' vector basemap
            self.reported = read_layer(connection, "reported_distances")
            self._set_editable(*self._read_editable(connection))
        self._border_ids_by_countries: dict[frozenset, tuple[str, ...]] = {}
        self._index_sites(None)

    @staticmethod
    def _read_editable(connection, ids: dict[str, list[str]] | None = None) -> tuple:
        """The layers analysts edit (all rows, or only the given ids per layer) and the last change id."""
        layers = {}
        for table in EDITABLE.values():
            wanted = None if ids is None else ids.get(table, [])
            frame = read_layer(connection, table, ids=wanted)
            layers[table] = _with_columns(frame, EDIT_COLUMNS[table]).set_index("id", drop=False)
        return layers["sites"], layers["observations"], layers["sources"], last_change_id(connection)

    def _set_editable(self, all_sites, observations, sources, last_change: int) -> None:
        """Take the edited layers (sites with the retired ones, in file order) and the change id they include."""
        self.all_sites, self.last_change = all_sites, last_change
        retired = all_sites["retired_at"].notna()
        self.sites, self.retired_sites = all_sites[~retired], all_sites[retired]
        self.observations = observations.reset_index(drop=True)
        self.sources = sources
        self.version = self.build_id if not last_change else f"{self.build_id}+{last_change}"
        self.as_of_day: datetime.date | None = None
        self.undated_site_ids: list[str] = []
        self._as_of_cache: OrderedDict[datetime.date, Catalogue] = OrderedDict()
        self._as_of_lock = threading.Lock()

    def refreshed(self, connection=None) -> "Catalogue":
        """A new catalogue with the edited layers read again whole; unmoved sites keep their border distances.
        Reads through `connection` when given (inside its open read transaction)."""
        if connection is None:
            with reading(self.path) as connection:
                return self.refreshed(connection)
        new = self._copy()
        new._set_editable(*self._read_editable(connection))
        return new._derive_from(self)

    def advanced(self, connection=None) -> "Catalogue":
        """A new catalogue with the rows changed since this one applied, read by id as the change log names them
        (the layers are read whole only when the log cannot say what changed); `self` when nothing did.
        Reads through `connection` when given (inside its open read transaction)."""
        if connection is None:
            with reading(self.path) as connection:
                return self.advanced(connection)
        changed = self._changed_ids(connection)
        if changed is None:
            return self.refreshed(connection)
        sites, observations, sources, last_change = self._read_editable(connection, changed)
        if last_change == self.last_change:
            return self
        new = self._copy()
        new._set_editable(_upsert(self.all_sites, sites),
                          _upsert(self.observations.set_index("id", drop=False), observations),
                          _upsert(self.sources, sources), last_change)
        return new._derive_from(self)

    def _changed_ids(self, connection) -> dict[str, list[str]] | None:
        """The ids per layer changed after this snapshot's last change; None when the layers must be read whole
        (a commit that left no change record, an entity outside the edited layers, or very many rows)."""
        if not has_table(connection, "changes"):
            return None
        rows = connection.execute("SELECT entity, entity_id, site_id FROM changes WHERE id > ? LIMIT ?",
                                  (self.last_change, INCREMENTAL_LIMIT + 1)).fetchall()
        if not rows or len(rows) > INCREMENTAL_LIMIT or any(entity not in EDITABLE for entity, _, _ in rows):
            return None
        changed: dict[str, list[str]] = {}
        for entity, entity_id, site_id in rows:
            changed.setdefault(EDITABLE[entity], []).append(entity_id)
            if site_id is not None and entity != "site":  # an observation re-derives its site's status
                changed.setdefault("sites", []).append(site_id)
        return {table: list(dict.fromkeys(ids)) for table, ids in changed.items()}

    def _copy(self) -> "Catalogue":
        """A shallow copy sharing the fixed layers, with the values derived from sites dropped."""
        new = copy.copy(self)
        for name in ("measured_border_ids", "vocabularies"):
            new.__dict__.pop(name, None)
        return new

    def _derive_from(self, old: "Catalogue") -> "Catalogue":
        """Border distances (kept for sites that have not moved) and the spatial index for the new sites."""
        self._index_sites(old.border_matrix)
        return self

    def as_of(self, day: datetime.date | None) -> "Catalogue":
        """The catalogue as it was known at the end of a UTC day (itself when no day is given)."""
        if day is None:
            return self
        with self._as_of_lock:
            if day in self._as_of_cache:
                self._as_of_cache.move_to_end(day)
                return self._as_of_cache[day]
        past = self._known_on(day)
        with self._as_of_lock:
            self._as_of_cache[day] = past
            while len(self._as_of_cache) > AS_OF_CACHE_SIZE:
                self._as_of_cache.popitem(last=False)
        return past

    def _known_on(self, day: datetime.date) -> "Catalogue":
        """Rebuild sites, observations and sources from the change log; bundled sites count from their first report."""
        instant = history.day_end(day)
        changes = history.read_changes(self.path, up_to_id=self.last_change)
        every_site = self.all_sites
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
        new.all_sites = new.sites
        new.observations = observations[observations["site_id"].isin(new.sites.index)]
        new.sources = self._sources_on(instant, [c for c in changes if c["entity"] == "source"])
        new.as_of_day, new.undated_site_ids = day, sorted(undated)
        new._as_of_cache, new._as_of_lock = OrderedDict(), threading.Lock()
        new.version = f"{self.version}@{day.isoformat()}"
        return new._derive_from(self)

    def _sources_on(self, instant: str, changes: list[dict]) -> pd.DataFrame:
        """The sources as they stood before an instant."""
        current = {k: record(row, self.sources.columns) for k, row in self.sources.iterrows()}
        states = history.state_at(current, changes, instant)
        frame = pd.DataFrame(list(states.values()), columns=self.sources.columns)
        return frame.astype(self.sources.dtypes.to_dict()).set_index("id", drop=False)

    def _index_sites(self, borders: BorderMatrix | None) -> None:
        """The located sites' ids, an exact spatial index on their points and their border distances (same order);
        rows of `borders` are kept for sites at the same point."""
        sites = located(self.sites)
        lons, lats = shapely.get_x(sites.geometry.to_numpy()), shapely.get_y(sites.geometry.to_numpy())
        self._located_ids = sites.index.to_numpy()
        self._located_position = pd.Index(self._located_ids)
        self.site_index = PointIndex(lons, lats)
        lines = {b: self.borders.loc[b].geometry for b in self.measured_border_ids}
        self.border_matrix = BorderMatrix.measure(self._located_ids, lons, lats, lines) if borders is None else \
            borders.updated(self._located_ids, lons, lats, lines)
        self._other_border_km: dict[str, pd.Series] = {}  # bands on borders sites are not measured against
        self.__dict__.pop("site_borders", None)

    @cached_property
    def site_borders(self) -> pd.DataFrame:
        """Every located site's distance to each measured border with the nearest point on it, one row per pair, in
        located-site then border order."""
        matrix = self.border_matrix
        sites, borders = matrix.distance_m.shape
        return pd.DataFrame({
            "site_id": np.repeat(matrix.ids, borders).astype(object), "border_id": np.tile(np.array(matrix.line_ids,
                                                                                                  dtype=object), sites),
            "distance_km": matrix.distance_m.ravel() / 1000, "nearest_lon": matrix.nearest_lon.ravel(),
            "nearest_lat": matrix.nearest_lat.ravel(),
        })

    # --- vocabularies -------------------------------------------------------------------------

    @cached_property
    def measured_border_ids(self) -> tuple[str, ...]:
        """Borders every site is measured against: the MDL, the DMZ edges, and its countries' land borders."""
        site_countries = frozenset(self.sites["country"].dropna().unique())
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
        matrix = self.border_matrix
        positions = self._located_position.get_indexer(site_ids)
        return {site_id: ({} if at < 0 else dict(zip(matrix.line_ids, (matrix.distance_m[at] / 1000).tolist())))
                for site_id, at in zip(site_ids, positions)}

    def _distance_to_border_km(self, border_id: str) -> pd.Series:
        """Every located site's distance in km to one border (measured now if not precomputed)."""
        matrix = self.border_matrix
        if border_id in matrix.line_ids:
            return pd.Series(matrix.distance_m[:, matrix.line_ids.index(border_id)] / 1000, index=self._located_ids)
        if border_id not in self._other_border_km:
            other = BorderMatrix.measure(matrix.ids, matrix.lons, matrix.lats,
                                         {border_id: self.borders.loc[border_id].geometry})
            self._other_border_km.setdefault(border_id, pd.Series(other.distance_m[:, 0] / 1000, index=matrix.ids))
        return self._other_border_km[border_id]

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
        matrix, at = self.border_matrix, self._located_position.get_indexer([site_id])[0]
        rows = [] if at < 0 else [
            {"site_id": site_id, "border_id": border_id, "distance_km": matrix.distance_m[at, n] / 1000,
             "nearest_lon": matrix.nearest_lon[at, n], "nearest_lat": matrix.nearest_lat[at, n],
             "name": self.borders.loc[border_id, "name"]} for n, border_id in enumerate(matrix.line_ids)]
        columns = ["site_id", "border_id", "distance_km", "nearest_lon", "nearest_lat", "name"]
        return pd.DataFrame(rows, columns=columns).sort_values("distance_km", kind="stable")

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
        inner = missile["range_min_km"]
        inner_m = 0.0 if pd.isna(inner) or float(inner) <= 0 else float(inner) * 1000
        return _range_area(float(lon), float(lat), inner_m, float(missile["range_max_km"]) * 1000)

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


@lru_cache(maxsize=RING_CACHE_SIZE)
def _range_area(lon: float, lat: float, inner_m: float, outer_m: float):
    """The geodesic disc (or annulus when inner_m > 0) around a point: kept per (point, range), shapes are immutable."""
    if inner_m <= 0:
        return geodesy.range_ring(lon, lat, outer_m)
    return geodesy.annulus(lon, lat, inner_m, outer_m)


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
