"""The catalogue in memory: one consistent snapshot of the GeoPackage's layers, and every query on it."""

from __future__ import annotations

import copy
import datetime
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from app import border_store, geodesy, history, migrations, regions
from app.border_distances import BorderMatrix
from app.spatial_index import PointIndex
from app.errors import Gone, InvalidParameter, NotFound, StorageUnavailable
from app.storage import as_store, store_errors
from app.store import EDIT_COLUMNS, ENVELOPE_BYTES, TEXT_DTYPE, has_table, read_layer
from app.vocab import DECLARED, LIST_COLUMN_NAMES, STATUSES, decode_list, encode_list

SORTS = ("distance", "name", "border")
MISSILE_COLUMNS_ADDED = ("range_max_qualifier",)  # read as NULL from a live file built before the column existed
SITE_COLUMNS_ADDED = ("coord_precision_basis", "coord_precision_reason")  # likewise
CITY_COLUMNS = ("id", "name", "country", "population", "source_id")


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


REACH_VERDICTS = {  # verdict -> what it says, in the order answers list them
    "reaches": "reaches, even if the coordinate is off by its full precision the wrong way",
    "reaches_unless_coordinate_errs": "reaches from the stated point, but not if the coordinate errs against it",
    "reaches_precision_unknown": "reaches from the stated point; the coordinate's precision is unknown",
    "reaches_only_if_coordinate_errs": "falls short from the stated point; reaches only if the coordinate errs its way",
    "falls_short": "falls short by at most short_km from the stated point (and beyond the coordinate's precision, "
                   "where known)",
}
REACH_COLUMNS = ["site_id", "missile_id", "distance_km", "range_min_km", "range_max_km", "range_kind", "margin_km",
                 "precision_km", "margin_low_km", "margin_high_km", "verdict"]
RING_CACHE_SIZE = 4096  # range areas kept per (site point, missile range): deterministic, so shared by snapshots
AS_OF_CACHE_SIZE = 8  # past days kept per snapshot; any reader can ask for any day, so the cache is bounded
INCREMENTAL_LIMIT = 20_000  # changed rows above which a refresh reads the layers whole
EDITABLE = {"site": "sites", "observation": "observations", "source": "sources", "missile": "missiles",
            "place": "places"}  # change-log entity -> layer
LAYER_COLUMNS = {  # columns an older file lacks, read as NULL
    "places": ("aliases",), "sites": SITE_COLUMNS_ADDED, "missiles": MISSILE_COLUMNS_ADDED,
}


class Catalogue:
    """The catalogue's layers in memory, with every site's border distances precomputed."""

    def __init__(self, source):
        self.store = as_store(source)  # a Store, or the path of a GeoPackage
        self.path = getattr(self.store, "path", None)
        self.store_name = self.path.name if self.path is not None else self.store.label
        if self.path is not None and not self.path.is_file():
            raise FileNotFoundError(f"GeoPackage not found: {self.path}")
        with self.store.reading() as connection:
            self.build_id = migrations.build_id(connection)
            self.borders = read_layer(connection, "borders").set_index("id", drop=False)
            self.countries = read_layer(connection, "countries")  # the maps' vector basemap and the coastlines
            self.reported = read_layer(connection, "reported_distances")
            launches = LaunchTable.of(read_layer(connection, "launches")) if has_table(connection, "launches") else None
            self._set_editable(*self._read_editable(connection))
            self._read_fixed(connection)
            stored = border_store.read_matrix(connection, self.build_id)  # what writers measured: kept, not redone
        self.coastlines = regions.Coastlines(self.build_id, self.countries, self._land_borders_by_country)
        # layers no edit touches, shared by every snapshot: launches (small) read now, cities on first use; None when
        # the file was built before the layer existed
        self._fixed_layers: dict[str, object] = {"launches": launches}
        self._fixed_lock = threading.Lock()
        self._index_sites(stored)

    def _read_fixed(self, connection) -> None:
        """The named lines attached to each country (read again on a whole refresh: an operator may change them)."""
        self.attached_borders = regions.read_attachments(connection, self.borders)

    @staticmethod
    def _read_editable(connection, ids: dict[str, list[str]] | None = None) -> tuple[dict[str, pd.DataFrame], int]:
        """The layers analysts edit by table (all rows, or only the given ids per layer) and the last change id."""
        layers = {}
        for table in EDITABLE.values():
            wanted = None if ids is None else ids.get(table, [])
            frame = read_layer(connection, table, ids=wanted)
            frame = _with_columns(frame, LAYER_COLUMNS.get(table, ()) + EDIT_COLUMNS[table])
            layers[table] = frame.set_index("id", drop=False)
        return layers, last_change_id(connection)

    def _set_editable(self, layers: dict[str, pd.DataFrame], last_change: int) -> None:
        """Take the edited layers (sites with the retired ones, in file order) and the change id they include."""
        all_sites = layers["sites"]
        self.all_sites, self.last_change = all_sites, last_change
        retired = all_sites["retired_at"].notna()
        self.sites, self.retired_sites = all_sites[~retired], all_sites[retired]
        self.observations = layers["observations"].reset_index(drop=True)
        self.sources, self.missiles, self.places = layers["sources"], layers["missiles"], layers["places"]
        self.version = self.build_id if not last_change else f"{self.build_id}+{last_change}"
        self.as_of_day: datetime.date | None = None
        self.undated_site_ids: list[str] = []
        self._as_of_cache: OrderedDict[datetime.date, Catalogue] = OrderedDict()
        self._as_of_lock = threading.Lock()

    def refreshed(self, connection=None) -> "Catalogue":
        """A new catalogue with the edited layers read again whole; unmoved sites keep their border distances.
        Reads through `connection` when given (inside its open read transaction)."""
        if connection is None:
            with self.store.reading() as connection:
                return self.refreshed(connection)
        new = self._copy()
        new._set_editable(*self._read_editable(connection))
        new._read_fixed(connection)
        return new._derive_from(self)

    def advanced(self, connection=None) -> "Catalogue":
        """A new catalogue with the rows changed since this one applied, read by id as the change log names them
        (the layers are read whole only when the log cannot say what changed); `self` when nothing did.
        Reads through `connection` when given (inside its open read transaction)."""
        if connection is None:
            with self.store.reading() as connection:
                return self.advanced(connection)
        changed = self._changed_ids(connection)
        if changed is None:
            return self.refreshed(connection)
        fresh, last_change = self._read_editable(connection, changed)
        if last_change == self.last_change:
            return self
        current = {"sites": self.all_sites, "observations": self.observations.set_index("id", drop=False),
                   "sources": self.sources, "missiles": self.missiles, "places": self.places}
        new = self._copy()
        new._set_editable({table: _upsert(current[table], fresh[table]) for table in current}, last_change)
        new._derive_from(self)
        if "answers" in self.__dict__:  # features of the sites no change touched are kept
            from app.answers import SiteAnswers
            new.__dict__["answers"] = SiteAnswers(new, carried=self.answers, changed=set(fresh["sites"].index))
        return new

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
            if entity == "missile":  # a missile's class re-derives the missile classes of the sites holding it
                changed.setdefault("sites", []).extend(self._sites_holding(entity_id))
        return {table: list(dict.fromkeys(ids)) for table, ids in changed.items()}

    def _sites_holding(self, missile_id: str) -> list[str]:
        """The ids of the sites (retired ones too) whose missile_types list the missile."""
        cells = self.all_sites["missile_types"]
        return [site_id for site_id, cell in zip(cells.index, cells) if missile_id in decode_list(cell)]

    def _copy(self) -> "Catalogue":
        """A shallow copy sharing the fixed layers, with the values derived from sites dropped."""
        new = copy.copy(self)
        for name in ("measured_border_ids", "vocabularies", "_centres_by_name", "_lines_by_country", "answers"):
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
        changes = history.read_changes(self.store, up_to_id=self.last_change)
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
        for entity, table in (("source", "sources"), ("missile", "missiles"), ("place", "places")):
            setattr(new, table, _layer_on(getattr(self, table), [c for c in changes if c["entity"] == entity], instant))
        new.as_of_day, new.undated_site_ids = day, sorted(undated)
        new._as_of_cache, new._as_of_lock = OrderedDict(), threading.Lock()
        new.version = f"{self.version}@{day.isoformat()}"
        return new._derive_from(self)

    def _index_sites(self, borders: BorderMatrix | None) -> None:
        """The located sites' ids, an exact spatial index on their points and their border distances (same order),
        each site measured against the lines that matter to its country; rows of `borders` are kept for sites at the
        same point."""
        sites = located(self.sites)
        lons, lats = shapely.get_x(sites.geometry.to_numpy()), shapely.get_y(sites.geometry.to_numpy())
        self._located_ids = sites.index.to_numpy()
        self._located_position = pd.Index(self._located_ids)
        self.site_index = PointIndex(lons, lats)
        lines = {b: self.line_row(b).geometry for b in self.measured_border_ids}
        column = {line_id: n for n, line_id in enumerate(lines)}
        mask = np.zeros((len(sites), len(lines)), dtype=bool)
        countries = sites["country"].to_numpy(dtype=object)
        for country in pd.unique(countries):
            rows = np.flatnonzero(countries == country) if not pd.isna(country) else np.flatnonzero(pd.isna(countries))
            mask[np.ix_(rows, [column[b] for b in self.lines_for_country(country)])] = True
        self.border_matrix = BorderMatrix.measure(self._located_ids, lons, lats, lines, mask) if borders is None else \
            borders.updated(self._located_ids, lons, lats, lines, mask)
        self._other_border_km: dict[str, pd.Series] = {}  # bands on borders sites are not measured against
        self.__dict__.pop("site_borders", None)

    @cached_property
    def answers(self):
        """This snapshot's site features as bytes and the orders pages are selected in (app.answers)."""
        from app.answers import SiteAnswers
        return SiteAnswers(self)

    @cached_property
    def site_borders(self) -> pd.DataFrame:
        """Every located site's distance to each line it is measured against, with the nearest point on it, one row
        per pair, in located-site then line order."""
        matrix = self.border_matrix
        rows, columns = np.nonzero(matrix.measured)
        return pd.DataFrame({
            "site_id": matrix.ids[rows].astype(object),
            "border_id": np.array(matrix.line_ids, dtype=object)[columns] if len(columns) else np.empty(0, object),
            "distance_km": matrix.distance_m[rows, columns] / 1000, "nearest_lon": matrix.nearest_lon[rows, columns],
            "nearest_lat": matrix.nearest_lat[rows, columns],
        })

    # --- the lines that matter to each site ---------------------------------------------------

    @cached_property
    def _land_borders_by_country(self) -> dict[str, list]:
        """Each country's land border geometries (shared by every snapshot of the file)."""
        by_country: dict[str, list] = {}
        land = self.borders[self.borders["kind"] == regions.LAND_BORDER_KIND]
        for geometry, countries in zip(land.geometry, land["countries"]):
            for country in decode_list(countries):
                by_country.setdefault(country, []).append(geometry)
        return by_country

    @cached_property
    def _land_border_ids_by_country(self) -> dict[str, tuple[str, ...]]:
        """Each country's land border ids (shared by every snapshot of the file)."""
        by_country: dict[str, list[str]] = {}
        land = self.borders[self.borders["kind"] == regions.LAND_BORDER_KIND]
        for border_id, countries in zip(land.index, land["countries"]):
            for country in decode_list(countries):
                by_country.setdefault(country, []).append(border_id)
        return {country: tuple(ids) for country, ids in by_country.items()}

    @cached_property
    def _lines_by_country(self) -> dict[str, tuple[str, ...]]:
        """Memo of lines_for_country for this snapshot (its attachments may differ from another's)."""
        return {}

    def lines_for_country(self, country) -> tuple[str, ...]:
        """The lines a site in the country is measured against: its land borders, its coastline (none when
        landlocked) and the named lines attached to the country."""
        country = None if pd.isna(country) else str(country)
        if country not in self._lines_by_country:
            attached = [b for b in self.attached_borders.get(country, ()) if b in self.borders.index]
            coast = [regions.coastline_id(country)] if country and self.coastlines.get(country) is not None else []
            self._lines_by_country[country] = tuple(dict.fromkeys(
                [*self._land_border_ids_by_country.get(country, ()), *coast, *attached]))
        return self._lines_by_country[country]

    @cached_property
    def measured_border_ids(self) -> tuple[str, ...]:
        """Every line some site is measured against (each site only against those of its country), sorted."""
        countries = self.sites["country"].dropna().unique()
        return tuple(sorted({b for country in countries for b in self.lines_for_country(country)}))

    def line_row(self, line_id: str) -> pd.Series | None:
        """A border of the borders layer, or a derived coastline, as a row; None for an unknown id."""
        if line_id in self.borders.index:
            return self.borders.loc[line_id]
        country = self.coastlines.country_of(line_id)
        geometry = self.coastlines.get(country) if country is not None else None
        if geometry is None:
            return None
        named = self.countries[self.countries["id"] == country].iloc[0]
        return pd.Series({"id": line_id, "name": f"{named['name']} coastline", "kind": regions.COAST_KIND,
                          "countries": encode_list([country]), "source_id": named["source_id"],
                          "source_version": "derived from the countries layer: edges no land border shares",
                          "geometry": geometry}, name=line_id)

    def map_borders(self, site_ids) -> gpd.GeoDataFrame:
        """The lines a map of these sites carries: every land border (drawn as context) and each line the sites are
        measured against (a named line only where attached to a drawn site's country; coastlines are carried for
        their names, not drawn)."""
        measured = self.site_border_distances(site_ids)
        land = self.borders.index[self.borders["kind"] == regions.LAND_BORDER_KIND]
        return self.lines_frame([*land, *sorted({b for lines in measured.values() for b in lines})])

    def lines_frame(self, line_ids) -> gpd.GeoDataFrame:
        """The rows of the given borders and coastlines (unknown ids left out), in the given order."""
        ids, stored = list(dict.fromkeys(line_ids)), self._border_ids
        derived = [row for row in (self.line_row(i) for i in ids if i not in stored) if row is not None]
        columns = list(self.borders.columns)
        frame = pd.DataFrame([row.reindex(columns) for row in derived], columns=columns)
        derived_frame = gpd.GeoDataFrame(frame, geometry="geometry", crs=self.borders.crs).set_index("id", drop=False)
        stored_frame = self.borders.loc[[i for i in ids if i in stored], columns]  # one slice, not a row at a time
        if derived_frame.empty:
            return stored_frame
        order = [i for i in ids if i in stored or i in derived_frame.index]
        return pd.concat([stored_frame, derived_frame]).loc[order]

    @cached_property
    def _border_ids(self) -> frozenset:
        """The ids of the borders layer."""
        return frozenset(self.borders.index)

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
        return {item for cell in self.sites["missile_classes"] for item in decode_list(cell)}

    # --- lookups ------------------------------------------------------------------------------

    def place(self, name: str, *, parameter: str = "near") -> Centre:
        """A reference place by id, name or alias (case-insensitive) as a query centre."""
        centre = self._centres_by_name.get(name.strip().casefold())
        if isinstance(centre, Centre):
            return centre
        if centre is not None:
            raise InvalidParameter(f"{name!r} is an alias of more than one place ({', '.join(centre)}); give its id",
                                   parameter=parameter)
        known = ", ".join(sorted(self.places["name"]))
        raise InvalidParameter(f"unknown place {name!r}; known places: {known}", parameter=parameter)

    @cached_property
    def _centres_by_name(self) -> dict[str, Centre | tuple[str, ...]]:
        """Each place's centre under its casefolded aliases, then names, then ids (ids win over names, names over
        aliases); an alias shared by several places maps to their ids instead."""
        centres: dict[str, Centre | tuple[str, ...]] = {}
        owners: dict[str, list[str]] = {}
        points = dict(zip(self.places.index, self.places.geometry))
        for place_id, aliases in zip(self.places.index, self.places["aliases"]):
            for alias in decode_list(aliases):
                owners.setdefault(alias.casefold(), []).append(place_id)
        for key, ids in owners.items():
            ids = list(dict.fromkeys(ids))
            centres[key] = Centre(points[ids[0]].x, points[ids[0]].y, ids[0]) if len(ids) == 1 else tuple(ids)
        for place_id, name in reversed(list(zip(self.places.index, self.places["name"]))):
            centres[str(name).casefold()] = Centre(points[place_id].x, points[place_id].y, place_id)
        for place_id, point in points.items():
            centres[str(place_id).casefold()] = Centre(point.x, point.y, place_id)
        return centres

    def site_row(self, site_id: str) -> pd.Series:
        """One site's row; Gone for a retired site, NotFound for an unknown one."""
        self.refuse_retired(site_id)
        if site_id not in self.sites.index:
            raise NotFound(f"no site with id {site_id!r}", parameter="site_id")
        return self.sites.loc[site_id]

    def refuse_retired(self, site_id: str, *, parameter: str = "site_id") -> None:
        """Gone (410) when the site was retired: its id is known, its site no longer served."""
        if site_id in self.retired_sites.index:
            retired = self.retired_sites.loc[site_id]
            raise Gone(f"site {site_id!r} was retired at {retired['retired_at']} by {retired['retired_by']}",
                       parameter=parameter)

    def border_row(self, border_id: str, *, parameter: str = "border") -> pd.Series:
        """One border's (or coastline's) row, or InvalidParameter naming the known ids."""
        row = self.line_row(border_id)
        if row is None:
            raise InvalidParameter(
                f"unknown border {border_id!r}; known borders include: {', '.join(self.measured_border_ids)}",
                parameter=parameter,
            )
        return row

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
        distance_m, (lon, lat) = geodesy.nearest_on_line(point.x, point.y, self.border_row(border_id).geometry)
        return {"border_id": border_id, "distance_km": distance_m / 1000, "nearest_lon": lon, "nearest_lat": lat}

    def border_distances(self, lon: float, lat: float, border_ids=None) -> pd.DataFrame:
        """Distance from any point to each border (the measured set unless ids are given)."""
        ids = list(border_ids or self.measured_border_ids)
        for border_id in ids:
            self.border_row(border_id)
        point = shapely.Point(lon, lat)
        rows = [self._border_distance(point, border_id) for border_id in ids]
        table = pd.DataFrame(rows, columns=["border_id", "distance_km", "nearest_lon", "nearest_lat"])
        table["name"] = [self.border_row(b)["name"] for b in table["border_id"]]
        return table

    def site_border_distances(self, site_ids) -> dict[str, dict[str, float]]:
        """Each site's distances in km keyed by border id, for the given sites: the lines it is measured against."""
        site_ids = list(site_ids)
        matrix = self.border_matrix
        positions = self._located_position.get_indexer(site_ids)
        measured = matrix.measured
        return {site_id: ({} if at < 0 else {line_id: matrix.distance_m[at, n] / 1000
                                             for n, line_id in enumerate(matrix.line_ids) if measured[at, n]})
                for site_id, at in zip(site_ids, positions)}

    def _distance_to_border_km(self, border_id: str) -> pd.Series:
        """Every located site's distance in km to one line (measured now, and kept, where not precomputed)."""
        matrix = self.border_matrix
        known = np.full(len(matrix.ids), np.nan)
        if border_id in matrix.line_ids:
            known = matrix.distance_m[:, matrix.line_ids.index(border_id)]
            if not np.isnan(known).any():  # every site is measured against it
                return pd.Series(known / 1000, index=matrix.ids)
        if border_id not in self._other_border_km:
            known, missing = known.copy(), np.isnan(known)
            if missing.any():
                other = BorderMatrix.measure(matrix.ids[missing], matrix.lons[missing], matrix.lats[missing],
                                             {border_id: self.border_row(border_id).geometry})
                known[missing] = other.distance_m[:, 0]
            self._other_border_km.setdefault(border_id, pd.Series(known / 1000, index=matrix.ids))
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
            mask &= sites["missile_types"].map(lambda v: bool(set(decode_list(v)) & set(where.missile_type)))
        if where.missile_class:
            mask &= sites["missile_classes"].map(lambda v: bool(set(decode_list(v)) & set(where.missile_class)))
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
        if sort == "border" and band is None:
            raise InvalidParameter("sort=border needs a border: give border (e.g. border=mdl)", parameter="sort")
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
        if sort in ("distance", "border"):
            first = sites["distance_km" if sort == "distance" else "border_distance_km"].to_numpy()
        else:
            first = np.array([str(n).casefold() for n in sites["name"]], dtype=str)
        return sites.iloc[np.lexsort((ids, first))] if len(sites) else sites

    # --- one site -----------------------------------------------------------------------------

    def site_missiles(self, site: pd.Series) -> pd.DataFrame:
        """The missile rows attributed to a site."""
        ids = [m for m in decode_list(site["missile_types"]) if m in self.missiles.index]
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
        missile_sources = {m: decode_list(ids) for m, ids in zip(self.missiles.index, self.missiles["source_ids"])}
        coord_sources = sites["coord_source_id"] if "coord_source_id" in sites else [None] * len(sites)
        result = {}
        for index, own, coord, site_id, missile_types in zip(sites.index, sites["source_ids"], coord_sources,
                                                              sites["id"], sites["missile_types"]):
            ids = decode_list(own) + decode_list(coord) + by_site.get(site_id, [])
            for missile_id in decode_list(missile_types):
                ids += missile_sources.get(missile_id, [])
            result[index] = ids
        return result

    def site_border_table(self, site_id: str) -> pd.DataFrame:
        """A site's border distances with the nearest border points, nearest first."""
        matrix, at = self.border_matrix, self._located_position.get_indexer([site_id])[0]
        rows = [] if at < 0 else [
            {"site_id": site_id, "border_id": border_id, "distance_km": matrix.distance_m[at, n] / 1000,
             "nearest_lon": matrix.nearest_lon[at, n], "nearest_lat": matrix.nearest_lat[at, n],
             "name": self.border_row(border_id)["name"]} for n, border_id in enumerate(matrix.line_ids)
            if matrix.measured[at, n]]
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
                missile, ["name", "class", "range_min_km", "range_max_km", "range_max_qualifier", "range_kind", "confidence",
                          "source_ids"])})
        return rings

    @staticmethod
    def _missile_area(lon: float, lat: float, missile: pd.Series):
        """The area a missile reaches from a point: its max-range disc less its min-range hole."""
        inner = missile["range_min_km"]
        inner_m = 0.0 if pd.isna(inner) or float(inner) <= 0 else float(inner) * 1000
        return _range_area(float(lon), float(lat), inner_m, float(missile["range_max_km"]) * 1000)

    def reach(self, target: Centre, *, where: SiteFilter = SiteFilter(), short_km: float | None = None) -> pd.DataFrame:
        """Every (site, missile) pair whose published range covers the target, allowing for the site's coordinate
        precision, with the margin in km as an interval and a verdict (see REACH_VERDICTS); with `short_km`, also
        the pairs that fall short by at most that many km. Sorted by verdict, then by margin, largest first."""
        rows = []
        for site_id, site in located(self._filtered(where)).iterrows():
            distance_km = float(geodesy.distance_m(site.geometry.x, site.geometry.y, target.lon, target.lat)) / 1000
            precision_km = float(site["coord_precision_m"]) / 1000 if not pd.isna(site["coord_precision_m"]) else None
            for missile_id, missile in self.site_missiles(site).iterrows():
                verdict = _reach_verdict(distance_km, missile, precision_km, short_km)
                if verdict is not None:
                    rows.append({"site_id": site_id, "missile_id": missile_id, "distance_km": distance_km, **verdict})
        table = pd.DataFrame(rows, columns=REACH_COLUMNS)
        table["order"] = table["verdict"].map(list(REACH_VERDICTS).index)
        return table.sort_values(["order", "margin_km", "site_id", "missile_id"], ascending=[True, False, True, True],
                                 ignore_index=True).drop(columns="order")

    def unassessable_site_ids(self, where: SiteFilter = SiteFilter()) -> list[str]:
        """Sites matching the filters whose reach cannot be judged: no coordinate or no published range."""
        unknown = []
        for site_id, site in self._filtered(where).iterrows():
            ranges = self.site_missiles(site)["range_max_km"]
            if not has_point(site.geometry) or ranges.isna().all():
                unknown.append(site_id)
        return unknown


    # --- cities ----------------------------------------------------------------------------

    @property
    def city_table(self) -> CityTable:
        """The cities layer, read on first use and shared by every snapshot of this file; StorageUnavailable when the
        file was built before the layer existed."""
        with self._fixed_lock:
            if "cities" not in self._fixed_layers:
                try:
                    with self.store.reading() as connection:
                        self._fixed_layers["cities"] = read_cities(connection) if has_table(connection, "cities") else None
                except (*store_errors(), OSError) as exc:  # the file deleted, replaced or unreadable under the service
                    raise StorageUnavailable(f"the cities layer of {self.store_name} cannot be read: {exc}") from exc
            if self._fixed_layers["cities"] is None:
                raise StorageUnavailable(f"{self.store_name} has no cities layer (it was built before cities were "
                                         "bundled): serve a catalogue built by this version")
            return self._fixed_layers["cities"]

    @property
    def city_countries(self) -> frozenset[str]:
        """The countries the cities layer holds."""
        return frozenset(self.city_table.frame["country"].unique())

    def city_row(self, city_id: str) -> pd.Series:
        """One city's row, or NotFound."""
        frame = self.city_table.frame
        if city_id not in frame.index:
            raise NotFound(f"no city with id {city_id!r} (ids are GeoNames ids, e.g. 1835848 for Seoul)",
                           parameter="city_id")
        return frame.loc[city_id]

    def find_cities(self, *, centre: Centre | None = None, within_km: float | None = None, country: tuple[str, ...] = (),
                    min_population: int | None = None, sort: str | None = None) -> pd.DataFrame:
        """Cities, optionally within a geodesic radius of a centre (with `distance_km`), by country and size; sorted by
        distance when there is a centre, else by population."""
        if within_km is not None and centre is None:
            raise InvalidParameter("within_km needs a centre: give lat and lon, or near", parameter="within_km")
        sort = sort or ("distance" if centre is not None else "population")
        if sort == "distance" and centre is None:
            raise InvalidParameter("sort=distance needs a centre: give lat and lon, or near", parameter="sort")
        table = self.city_table
        if centre is None:
            rows = table.frame
        elif within_km is None:
            distances = geodesy.distance_m(centre.lon, centre.lat, table.index.lons, table.index.lats)
            rows = table.frame.assign(distance_km=np.asarray(distances) / 1000)
        else:
            positions, distances = table.index.within(centre.lon, centre.lat, within_km * 1000)
            rows = table.frame.iloc[positions].assign(distance_km=distances / 1000)
        if country:
            rows = rows[rows["country"].isin(country)]
        if min_population is not None:
            rows = rows[rows["population"] >= min_population]
        return _sorted_cities(rows, sort)

    def cities_in_range(self, site_ids, *, missile_types: tuple[str, ...] = (),
                        missile_classes: tuple[str, ...] = ()) -> CitiesInRange:
        """The cities each site's missiles (or only the given ones) reach on WGS84 (min-range holes honoured), with the
        people in them per missile class and per missile; sites without a coordinate or a published range are listed as
        not assessed."""
        table, pairs, not_assessed = self.city_table, [], []
        for site_id in dict.fromkeys(site_ids):
            site = self.site_row(site_id)
            missiles = self.site_missiles(site)
            if missile_types:
                missiles = missiles[missiles.index.isin(missile_types)]
            if missile_classes:
                missiles = missiles[missiles["class"].isin(missile_classes)]
            ranged = missiles[missiles["range_max_km"].notna()]
            if not has_point(site.geometry) or ranged.empty:
                not_assessed.append(site_id)
                continue
            pairs += self._site_city_pairs(site, ranged, table)
        columns = ["city_id", "site_id", "missile_id", "class", "distance_km", "range_min_km", "range_max_km",
                   "range_max_qualifier", "margin_km", "coord_precision_m", "certain"]
        frame = pd.concat(pairs, ignore_index=True) if pairs else pd.DataFrame(columns=columns)
        population = table.frame["population"]
        return CitiesInRange(frame, _people(frame, "class", population), _people(frame, "missile_id", population),
                             [s for s in dict.fromkeys(site_ids) if s not in not_assessed], not_assessed)

    @staticmethod
    def _site_city_pairs(site: pd.Series, missiles: pd.DataFrame, table: CityTable) -> list[pd.DataFrame]:
        """One frame per missile: the cities within its range from the site, with the margin and whether the site's
        coordinate precision could change the answer (`certain`: inside by more than the precision on every side)."""
        positions, distances = table.index.within(site.geometry.x, site.geometry.y,
                                                  float(missiles["range_max_km"].max()) * 1000)
        distance_km = distances / 1000
        precision = site.get("coord_precision_m")
        precision_km = float(precision) / 1000 if precision is not None and not pd.isna(precision) else math.nan
        frames = []
        for missile_id, missile in missiles.iterrows():
            low = 0.0 if pd.isna(missile["range_min_km"]) else float(missile["range_min_km"])
            high = float(missile["range_max_km"])
            inside = (distance_km <= high) & (distance_km >= low)
            kept = distance_km[inside]
            margin = high - kept
            certain = (margin >= precision_km) & ((kept - low >= precision_km) | (low == 0))
            frames.append(pd.DataFrame({
                "city_id": table.frame.index[positions[inside]], "site_id": site.name, "missile_id": missile_id,
                "class": missile["class"], "distance_km": kept, "range_min_km": _clean(missile["range_min_km"]),
                "range_max_km": high, "range_max_qualifier": _clean(missile.get("range_max_qualifier")),
                "margin_km": margin, "coord_precision_m": _clean(precision), "certain": certain,
            }))
        return frames

    def cities_reached(self, result: CitiesInRange, *, sort: str = "population") -> pd.DataFrame:
        """One row per city reached: its attributes, its nearest reaching site and that distance, the best margin."""
        table = self.city_table
        if result.pairs.empty:
            empty = table.frame.iloc[:0]
            return empty.assign(distance_km=pd.Series(dtype=float), site_id=pd.Series(dtype=object),
                                margin_km=pd.Series(dtype=float))
        ordered = result.pairs.sort_values(["distance_km", "site_id", "missile_id"], kind="stable")
        grouped = ordered.groupby("city_id", sort=False)
        summary = pd.DataFrame({"distance_km": grouped["distance_km"].first(), "site_id": grouped["site_id"].first(),
                                "margin_km": grouped["margin_km"].max()})
        return _sorted_cities(table.frame.loc[summary.index].join(summary), sort)


    # --- launches (CNS flight tests): a fixed layer, read once per file on first use ---------------------------------

    @property
    def launch_table(self) -> LaunchTable:
        """Every launch of the file (read with the other layers, shared by every snapshot); StorageUnavailable when the
        file was built before the layer existed."""
        table = self._fixed_layers["launches"]
        if table is None:
            raise StorageUnavailable(f"{self.store_name} has no launches layer (it was built before launches were "
                                     "bundled): serve a catalogue built by this version")
        return table

    @property
    def launches(self) -> pd.DataFrame:
        """The launches known by the end of this snapshot's as_of day, or all of them."""
        return self.launches_known(self.as_of_day)

    def launches_known(self, day: datetime.date | None) -> pd.DataFrame:
        """The launches that had happened by the end of a day (a partial date counts from its period's last day: a
        launch dated 1991-07 is known from 1991-07-31), or all of them."""
        frame = self.launch_table.frame
        if day is None:
            return frame
        return frame[frame["launched_on"].map(_period_end) <= day]

    def site_launches(self, site_id: str, *, within_km: float | None = None,
                      as_of: datetime.date | None = None) -> pd.DataFrame:
        """The launches at a site's own facility (matched by the data), and with `within_km` every located launch within
        that geodesic distance of the site, with `distance_km`; oldest first; only those known by `as_of` (or by this
        snapshot's day) when given."""
        site = self.site_row(site_id)
        table, known = self.launch_table, self.launches_known(as_of or self.as_of_day)
        matched = known[known["site_id"] == site_id]
        if within_km is None:
            rows = matched
        else:
            if not has_point(site.geometry):
                raise InvalidParameter(f"site {site_id!r} has no known coordinate, so nothing is within a distance of it",
                                       parameter="within_km")
            positions, distances = table.index.within(site.geometry.x, site.geometry.y, within_km * 1000)
            near = table.located.iloc[positions].assign(distance_km=distances / 1000)
            rows = pd.concat([near[near.index.isin(known.index)], matched[~matched.index.isin(near.index)]])
        if "distance_km" not in rows.columns or rows["distance_km"].isna().any():
            rows = rows.assign(distance_km=self._launch_distances(site, rows))
        order = self.launch_table.frame.index.get_indexer(rows.index)  # file order: by date, then as CNS lists them
        return rows.iloc[np.lexsort((order, rows["launched_on"].to_numpy(dtype=str)))]

    @staticmethod
    def _launch_distances(site: pd.Series, rows: pd.DataFrame) -> np.ndarray:
        """Each launch's geodesic distance in km from the site (NaN where either has no point)."""
        if not has_point(site.geometry) or rows.empty:
            return np.full(len(rows), np.nan)
        located_rows = ~shapely.is_missing(rows.geometry.to_numpy())
        result = np.full(len(rows), np.nan)
        if located_rows.any():
            points = rows.geometry.to_numpy()[located_rows]
            result[located_rows] = np.asarray(geodesy.distance_m(site.geometry.x, site.geometry.y, shapely.get_x(points),
                                                                 shapely.get_y(points))) / 1000
        return result

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


def _layer_on(layer: pd.DataFrame, changes: list[dict], instant: str) -> pd.DataFrame:
    """A layer (sources, missiles or places) as its rows stood before an instant, from the change log: rows created
    later left out, changed rows as they were; a point layer's records carry lon/lat."""
    located = isinstance(layer, gpd.GeoDataFrame)
    columns = [c for c in layer.columns if c != "geometry"]
    current = {}
    for key, row in layer.iterrows():
        current[key] = record(row, columns)
        if located:
            current[key].update(lon=row.geometry.x, lat=row.geometry.y)
    states = list(history.state_at(current, changes, instant).values())
    cells = [{c: (encode_list(decode_list(state.get(c))) if c in LIST_COLUMN_NAMES else state.get(c)) for c in columns}
             for state in states]
    frame = pd.DataFrame(cells, columns=columns).astype(layer[columns].dtypes.to_dict())
    if located:
        frame = gpd.GeoDataFrame(frame, geometry=[shapely.Point(s["lon"], s["lat"]) for s in states], crs=layer.crs)
    return frame.set_index("id", drop=False)


def _reach_verdict(distance_km: float, missile: pd.Series, precision_km: float | None,
                   short_km: float | None = None) -> dict | None:
    """The range facts, the margin (max range less the distance) with its interval (± the coordinate's precision;
    None when unknown) and the verdict for a missile at a distance; None when it is not listed: it cannot reach,
    whatever the coordinate's error, and does not fall short by at most `short_km` (no range: never listed)."""
    max_km, min_km = missile["range_max_km"], missile["range_min_km"]
    if pd.isna(max_km):
        return None
    max_km, min_km = float(max_km), 0.0 if pd.isna(min_km) else float(min_km)
    margin = max_km - distance_km
    at_point = min_km <= distance_km <= max_km
    if precision_km is None:
        verdict = "reaches_precision_unknown" if at_point else None
    elif min_km <= distance_km - precision_km and distance_km + precision_km <= max_km:
        verdict = "reaches"
    elif at_point:
        verdict = "reaches_unless_coordinate_errs"
    elif distance_km - precision_km <= max_km and distance_km + precision_km >= min_km:
        verdict = "reaches_only_if_coordinate_errs"
    else:
        verdict = None
    if verdict is None and short_km is not None and 0 < -margin <= short_km:
        verdict = "falls_short"
    if verdict is None:
        return None
    return {
        "range_min_km": _clean(missile["range_min_km"]), "range_max_km": max_km, "range_kind": missile["range_kind"],
        "margin_km": margin, "precision_km": precision_km,
        "margin_low_km": None if precision_km is None else margin - precision_km,
        "margin_high_km": None if precision_km is None else margin + precision_km, "verdict": verdict,
    }

# --- cities (GeoNames, >= 15,000 people): a fixed layer, read once per file on first use --------------------------


@dataclass(frozen=True)
class CityTable:
    """The cities layer in memory: a frame indexed by id (population an int64, lon/lat floats) and a spatial index."""

    frame: pd.DataFrame
    index: PointIndex

    @property
    def populations(self) -> np.ndarray:
        """Every city's population, in frame order."""
        return self.frame["population"].to_numpy()


def read_cities(connection) -> CityTable:
    """The cities layer as a CityTable (the points decoded in bulk from their GeoPackage blobs)."""
    rows = connection.execute("SELECT id, name, country, population, source_id, geom FROM cities ORDER BY fid").fetchall()
    blobs = [row[5] for row in rows]
    points = shapely.from_wkb([blob[8 + ENVELOPE_BYTES[(blob[3] >> 1) & 0x07]:] for blob in blobs])
    frame = pd.DataFrame.from_records([row[:5] for row in rows], columns=CITY_COLUMNS)
    frame["population"] = frame["population"].astype("int64")
    frame["lon"], frame["lat"] = shapely.get_x(points), shapely.get_y(points)
    frame = frame.set_index("id", drop=False)
    return CityTable(frame, PointIndex(frame["lon"].to_numpy(), frame["lat"].to_numpy()))


@dataclass
class CitiesInRange:
    """Cities within range of some sites' missiles: every reaching (city, site, missile) pair, and people per class and
    per missile (each city counted once per class or missile, however many sites reach it)."""

    pairs: pd.DataFrame
    by_class: list[dict]
    by_missile: list[dict]
    site_ids: list[str]
    not_assessed: list[str]


CITY_SORTS = ("population", "distance", "name")


def _sorted_cities(rows: pd.DataFrame, sort: str) -> pd.DataFrame:
    """Cities by population (largest first), distance or name; ties broken by id so pages are stable."""
    if sort not in CITY_SORTS:
        raise InvalidParameter(f"unknown sort {sort!r}; allowed: {', '.join(CITY_SORTS)}", parameter="sort")
    if rows.empty:
        return rows
    ids = np.array([str(i) for i in rows["id"]], dtype=str)
    if sort == "population":
        first = -rows["population"].to_numpy()
    elif sort == "distance":
        first = rows["distance_km"].to_numpy()
    else:
        first = np.array([str(n).casefold() for n in rows["name"]], dtype=str)
    return rows.iloc[np.lexsort((ids, first))]


def _people(pairs: pd.DataFrame, key: str, population: pd.Series) -> list[dict]:
    """Per value of `key` (a class or a missile): the cities reached and the people in them, each city once, and the
    same for the pairs that stay inside whichever way the site's coordinate errs (`certain`)."""
    rows = []
    for value, group in pairs.groupby(key, sort=True):
        every = group["city_id"].unique()
        sure = group.loc[group["certain"].astype(bool), "city_id"].unique()
        rows.append({key: value, "cities": int(len(every)), "population": int(population.loc[every].sum()),
                     "cities_certain": int(len(sure)), "population_certain": int(population.loc[sure].sum())})
    return rows


@dataclass(frozen=True)
class LaunchTable:
    """The launches layer in memory (indexed by id, in file order) and a spatial index over the located ones."""

    frame: gpd.GeoDataFrame
    located: gpd.GeoDataFrame
    index: PointIndex

    @classmethod
    def of(cls, frame: gpd.GeoDataFrame) -> "LaunchTable":
        """The table of a launches layer as read_layer gives it."""
        frame = frame.set_index("id", drop=False)
        points = located(frame)
        return cls(frame, points, PointIndex(shapely.get_x(points.geometry.to_numpy()),
                                             shapely.get_y(points.geometry.to_numpy())))


def _period_end(text: str) -> datetime.date:
    """The last day of a partial ISO date's period (`2016` -> 2016-12-31, `1991-07` -> 1991-07-31)."""
    parts = [int(p) for p in str(text).split("-")]
    if len(parts) == 3:
        return datetime.date(*parts)
    if len(parts) == 2:
        following = datetime.date(parts[0] + parts[1] // 12, parts[1] % 12 + 1, 1)
        return following - datetime.timedelta(days=1)
    return datetime.date(parts[0], 12, 31)


def launch_counts(launches: pd.DataFrame) -> list[dict]:
    """Launches counted by year and missile (the catalogue's missile id where one matches, else the database's)."""
    if launches.empty:
        return []
    keys = pd.DataFrame({
        "year": launches["launched_on"].astype(str).str[:4],
        "missile": [m if isinstance(m, str) else f"cns:{c}" for m, c in zip(launches["missile_id"], launches["cns_missile"])],
        "missile_name": launches["missile_name"].astype(str),
    })
    counts = keys.groupby(["year", "missile", "missile_name"], sort=True).size()
    return [{"year": year, "missile": missile, "missile_name": name, "launches": int(n)}
            for (year, missile, name), n in counts.items()]

