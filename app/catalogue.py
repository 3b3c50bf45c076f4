"""The catalogue in memory: one immutable snapshot of the store's layers with its indexes, brought up to date
from the change log, and the catalogue as of a past day; the questions asked of it are in app.queries."""

from __future__ import annotations

import copy
import datetime
import threading
from collections import OrderedDict
from functools import cached_property

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from app import border_store, history, migrations, regions
from app.border_distances import BorderMatrix
from app.spatial_index import PointIndex
from app.errors import Gone, InvalidParameter, NotFound
from app.storage import as_store
from app.store import EDIT_COLUMNS, TEXT_DTYPE, has_table, read_layer
from app.vocab import DECLARED, LIST_COLUMN_NAMES, STATUSES, decode_list, encode_list

from app.queries import Centre, LaunchTable, Queries, located, record

MISSILE_COLUMNS_ADDED = ("range_max_qualifier",)  # read as NULL from a live file built before the column existed
SITE_COLUMNS_ADDED = ("coord_precision_basis", "coord_precision_reason")  # likewise


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


AS_OF_CACHE_SIZE = 8  # past days kept per snapshot; any reader can ask for any day, so the cache is bounded
INCREMENTAL_LIMIT = 20_000  # changed rows above which a refresh reads the layers whole
EDITABLE = {"site": "sites", "observation": "observations", "source": "sources", "missile": "missiles",
            "place": "places"}  # change-log entity -> layer
LAYER_COLUMNS = {  # columns an older file lacks, read as NULL
    "places": ("aliases",), "sites": SITE_COLUMNS_ADDED, "missiles": MISSILE_COLUMNS_ADDED,
}


class Catalogue(Queries):
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
