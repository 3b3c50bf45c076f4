"""The questions asked of a catalogue snapshot: sites near a point or a border, their sources and rings, reach,
cities in range, launches and the reported distances; with the value types queries are made of."""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass, field
from functools import lru_cache

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from app import geodesy
from app.border_distances import BorderMatrix
from app.spatial_index import PointIndex
from app.errors import InvalidParameter, NotFound, StorageUnavailable
from app.storage import store_errors
from app.store import ENVELOPE_BYTES, has_table
from app.vocab import LIST_COLUMN_NAMES, decode_list


SORTS = ("distance", "name", "border")
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


class Queries:
    """The queries over a snapshot's layers and indexes (`Catalogue` holds them and inherits these)."""

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
