"""The answer path: per snapshot, each site's GeoJSON feature encoded once (orjson); a request selects, orders and
concatenates.

A feature is stored as a head (`{"type":"Feature","id":..,"geometry":..,"properties":{..` with the site's columns)
and a tail (`,"border_distances_km":{..}}}`), each encoded the first time a page needs it and kept for the
snapshot; a request adds only what depends on it (`distance_km`, `border_distance_km`) between the two. Selection
uses numpy arrays and the snapshot's spatial index, never pandas, for the queries without attribute filters or a
border band (those go through `Catalogue.find_sites`, and still encode from the cache). The answers are the same
JSON as `formats.sites_geojson` and the OGC items built from `formats.site_features`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import orjson

from app import geodesy
from app.queries import _clean, BorderBand, Centre, SiteFilter, SORTS
from app.errors import InvalidParameter
from app.ogc_schemas import PROPERTIES
from app.formats import LIST_COLUMNS, SITE_COLUMNS, feature, rounded_km
from app.vocab import decode_list

if TYPE_CHECKING:
    from app.catalogue import Catalogue

ORDERS_KEPT = 16  # whole orders (positions, distances) of recent queries kept per snapshot
PAGES_KEPT = 64  # pages of features kept per snapshot
SITE_BODIES_KEPT = 4096  # full /sites/{id} answers kept per snapshot
EXTRA_COLUMNS = ("distance_km", "border_distance_km")  # per-request properties, in the order features carry them


@dataclass
class Selection:
    """One page of sites: their positions (into the snapshot's sites), per-request properties, the total matched."""

    positions: np.ndarray
    extras: dict[str, list]
    number_matched: int
    centre: Centre | None = None
    key: tuple | None = None  # the query and page, when the page can be kept for the snapshot


class SiteAnswers:
    """One snapshot's site features as bytes, and the orders and arrays a page is selected with."""

    def __init__(self, catalogue: "Catalogue", carried: "SiteAnswers | None" = None,
                 changed: set[str] | frozenset = frozenset()):
        self.catalogue = catalogue
        sites = catalogue.sites
        self.ids = sites.index.to_numpy(dtype=object)
        self.position = {site_id: n for n, site_id in enumerate(self.ids)}
        self._listed_ogc = frozenset(p.name for p in PROPERTIES["sites"] if p.listed)  # empty lists as null for OGC
        self._lock = threading.Lock()
        self._heads: dict[str, tuple[bytes, bytes]] = {}  # id -> (the /sites head, the OGC head)
        self._tails: dict[str, bytes] = {}
        self._orders: dict[tuple, tuple[np.ndarray, np.ndarray | None]] = {}  # the last queries' orders
        self._pages: dict[tuple, bytes] = {}  # the last pages' features
        self._kept: dict[tuple, object] = {}
        self.site_bodies: dict[str, bytes] = {}  # /sites/{id} answers of this snapshot
        if carried is not None:
            self._heads = {k: v for k, v in carried._heads.items() if k not in changed and k in self.position}
            if carried.catalogue.border_matrix.line_ids == catalogue.border_matrix.line_ids:
                self._tails = {k: v for k, v in carried._tails.items() if k not in changed and k in self.position}

    # --- arrays and orders, built on first use --------------------------------------------------------

    @cached_property
    def ids_casefold(self) -> np.ndarray:
        """Each site's casefolded id (the tie-break of every order)."""
        return np.array([str(i).casefold() for i in self.catalogue.sites["id"]], dtype=str)

    @cached_property
    def name_order(self) -> np.ndarray:
        """Positions of every site by casefolded name, then casefolded id (the default /sites order)."""
        names = np.array([str(n).casefold() for n in self.catalogue.sites["name"]], dtype=str)
        return np.lexsort((self.ids_casefold, names)) if len(names) else np.empty(0, dtype=np.int64)

    @cached_property
    def name_rank(self) -> np.ndarray:
        """Each site's place in the name order."""
        rank = np.empty(len(self.ids), dtype=np.int64)
        rank[self.name_order] = np.arange(len(self.ids))
        return rank

    @cached_property
    def located(self) -> np.ndarray:
        """The position in the sites of each located site, in the spatial index's order."""
        return np.fromiter((self.position[i] for i in self.catalogue._located_ids), dtype=np.int64,
                           count=len(self.catalogue._located_ids))

    @cached_property
    def located_at(self) -> np.ndarray:
        """Each site's row in the located arrays (the spatial index, the border matrix), -1 when unlocated."""
        at = np.full(len(self.ids), -1, dtype=np.int64)
        at[self.located] = np.arange(len(self.located))
        return at

    # --- selection ------------------------------------------------------------------------------------

    def select(self, *, where: SiteFilter = SiteFilter(), centre: Centre | None = None, within_km: float | None = None,
               band: BorderBand | None = None, sort: str = "name", limit: int = 100, offset: int = 0,
               boxes=None) -> Selection:
        """The page `Catalogue.find_sites` would give (then kept to the bbox `boxes` when given, as OGC items do)."""
        if where != SiteFilter() or band is not None:
            return self._select_slow(where, centre, within_km, band, sort, limit, offset, boxes)
        if within_km is not None and centre is None:
            raise InvalidParameter("within_km needs a centre: give lat and lon, or near", parameter="within_km")
        if sort == "distance" and centre is None:
            raise InvalidParameter("sort=distance needs a centre: give lat and lon, or near", parameter="sort")
        if sort == "border":
            raise InvalidParameter("sort=border needs a border: give border (e.g. border=mdl)", parameter="sort")
        if sort not in SORTS:
            raise InvalidParameter(f"unknown sort {sort!r}; allowed: {', '.join(SORTS)}", parameter="sort")
        key = (centre, within_km, sort, None if boxes is None else tuple(map(tuple, boxes)))
        positions, distance = self._ordered(*key)
        page = positions[offset: offset + limit]
        extras = {} if distance is None else {"distance_km": distance[offset: offset + limit].tolist()}
        return Selection(page, extras, len(positions), centre, (*key, offset, limit))

    def _ordered(self, centre: Centre | None, within_km: float | None, sort: str,
                 boxes: tuple | None) -> tuple[np.ndarray, np.ndarray | None]:
        """Every matching site's position in the asked order, with its distance in km when there is a centre (the
        last few answers kept: the next page, or the same view asked again, only slices)."""
        key = (centre, within_km, sort, boxes)
        known = self._orders.get(key)
        if known is not None:
            return known
        distance = None
        if centre is None:
            positions = self.name_order
        else:
            positions, distance = self._near(centre, within_km)
            if sort == "distance":
                order = np.lexsort((self.ids_casefold[positions], distance)) if len(positions) else positions
            else:
                order = np.argsort(self.name_rank[positions], kind="stable")
            positions, distance = positions[order], distance[order]
        if boxes is not None:
            keep = self._in_boxes(boxes)[positions]
            positions = positions[keep]
            distance = None if distance is None else distance[keep]
        with self._lock:
            if len(self._orders) >= ORDERS_KEPT:
                self._orders.pop(next(iter(self._orders)), None)
            self._orders[key] = (positions, distance)
        return positions, distance

    def _near(self, centre: Centre, within_km: float | None) -> tuple[np.ndarray, np.ndarray]:
        """Positions (ascending) of the located sites within the radius (all of them without one), distances in km."""
        catalogue = self.catalogue
        if within_km is None:
            index = catalogue.site_index
            distances = np.asarray(geodesy.distance_m(centre.lon, centre.lat, index.lons, index.lats), dtype=float)
            return self.located, distances / 1000
        at, distances = catalogue.site_index.within(centre.lon, centre.lat, within_km * 1000)
        return self.located[at], distances / 1000

    def _in_boxes(self, boxes) -> np.ndarray:
        """Which sites' points lie in any of the boxes, edges included (as a point intersects a shapely box)."""
        index = self.catalogue.site_index
        at = index.candidates(boxes)  # every point in a box, and the points on the other side of +-180
        lons, lats = index.lons[at], index.lats[at]
        exact = np.zeros(len(at), dtype=bool)
        for min_lon, min_lat, max_lon, max_lat in boxes:
            exact |= (lons >= min_lon) & (lons <= max_lon) & (lats >= min_lat) & (lats <= max_lat)
        inside = np.zeros(len(self.ids), dtype=bool)
        inside[self.located[at[exact]]] = True
        return inside

    def _select_slow(self, where, centre, within_km, band, sort, limit, offset, boxes) -> Selection:
        """A page with attribute filters or a border band, through the catalogue's pandas query."""
        catalogue = self.catalogue
        if boxes is not None:  # OGC items never filter by attributes here; kept for completeness
            found = catalogue.find_sites(where=where, centre=centre, within_km=within_km, band=band, sort=sort,
                                         limit=len(catalogue.sites) + 1)
            positions = np.array([self.position[i] for i in found.sites.index], dtype=np.int64)
            keep = self._in_boxes(boxes)[positions]
            sites = found.sites[keep].iloc[offset: offset + limit]
            matched = int(keep.sum())
        else:
            found = catalogue.find_sites(where=where, centre=centre, within_km=within_km, band=band, sort=sort,
                                         limit=limit, offset=offset)
            sites, matched = found.sites, found.number_matched
        positions = np.array([self.position[i] for i in sites.index], dtype=np.int64)
        extras = {c: sites[c].tolist() for c in EXTRA_COLUMNS if c in sites.columns}
        return Selection(positions, extras, matched, centre)

    # --- encoding -------------------------------------------------------------------------------------

    def features(self, selection: Selection, *, ogc: bool = False) -> bytes:
        """The page's features as the members of a JSON array (no brackets); the last pages asked are kept."""
        if selection.key is None:
            return self._features(selection, ogc)
        key = (*selection.key, ogc)
        body = self._pages.get(key)
        if body is None:
            body = self._features(selection, ogc)
            with self._lock:
                if len(self._pages) >= PAGES_KEPT:
                    self._pages.pop(next(iter(self._pages)), None)
                self._pages[key] = body
        return body

    def _features(self, selection: Selection, ogc: bool) -> bytes:
        """The page's features, concatenated from each site's head, per-request properties and tail."""
        positions = selection.positions.tolist()
        if not positions:
            return b""
        ids = [self.ids[p] for p in positions]
        heads, tails = self._heads_of(positions, ids), self._tails_of(positions, ids)
        which = 1 if ogc else 0
        extras = [(b',"' + name.encode() + b'":', values) for name, values in selection.extras.items()]
        parts = []
        for n, site_id in enumerate(ids):
            parts.append(heads[n][which])
            for key, values in extras:
                parts.append(key + orjson.dumps(rounded_km(values[n])))
            parts.append(tails[n])
        return b"".join(_joined(parts, len(ids), 2 + len(extras)))

    def _heads_of(self, positions: list[int], ids: list[str]) -> list[tuple[bytes, bytes]]:
        """The heads of the given sites, encoding (in one pass over the frame) those not yet encoded."""
        missing = [p for p, i in zip(positions, ids) if i not in self._heads]
        if missing:
            encoded = self._encode_heads(sorted(set(missing)))
            with self._lock:
                self._heads.update(encoded)
        return [self._heads[i] for i in ids]

    def _encode_heads(self, positions: list[int]) -> dict[str, tuple[bytes, bytes]]:
        """Heads for the sites at the given positions, read column by column as `formats.site_features` does."""
        sites = self.catalogue.sites.iloc[positions]
        columns = [c for c in SITE_COLUMNS if c in sites.columns]
        cells = [[_clean(v) for v in sites[c].tolist()] for c in columns]
        lists = [c in LIST_COLUMNS for c in columns]
        encoded = {}
        for i, (site_id, geometry) in enumerate(zip(sites.index, sites.geometry.array)):
            properties = {c: decode_list(values[i]) if is_list else values[i]
                          for c, values, is_list in zip(columns, cells, lists)}
            head = orjson.dumps(feature(geometry, properties, site_id))[:-2]  # open: ...,"properties":{...
            nulled = {k: None if k in self._listed_ogc and v == [] else v for k, v in properties.items()}
            ogc_head = head if nulled == properties else orjson.dumps(feature(geometry, nulled, site_id))[:-2]
            encoded[site_id] = (head, ogc_head)
        return encoded

    def _tails_of(self, positions: list[int], ids: list[str]) -> list[bytes]:
        """Each site's border distances (the lines it is measured against) and the closing braces."""
        matrix, located_at = self.catalogue.border_matrix, self.located_at
        tails = []
        for position, site_id in zip(positions, ids):
            tail = self._tails.get(site_id)
            if tail is None:
                at = located_at[position]
                distances = {} if at < 0 else {
                    line_id: rounded_km(d / 1000) for line_id, d in zip(matrix.line_ids, matrix.distance_m[at])
                    if not np.isnan(d)}
                tail = b',"border_distances_km":' + orjson.dumps(distances) + b"}}"
                self._tails[site_id] = tail
            tails.append(tail)
        return tails

    # --- whole answers --------------------------------------------------------------------------------

    def kept(self, key: tuple, build):
        """A small value (a page's links) kept for the snapshot under `key`, built by `build()` the first time."""
        value = self._kept.get(key)
        if value is None:
            value = build()
            with self._lock:
                if len(self._kept) >= PAGES_KEPT:
                    self._kept.pop(next(iter(self._kept)), None)
                self._kept[key] = value
        return value

    def keep_site_body(self, site_id: str, body: bytes) -> bytes:
        """Keep one site's full answer for this snapshot (a bounded number of them)."""
        with self._lock:
            if len(self.site_bodies) >= SITE_BODIES_KEPT:
                self.site_bodies.clear()
            self.site_bodies[site_id] = body
        return body

    def sites_body(self, selection: Selection, *, limit: int, offset: int, after: dict | None = None) -> bytes:
        """The /sites FeatureCollection: the same members, in the same order, as `formats.sites_geojson`."""
        centre = selection.centre
        head = {"type": "FeatureCollection", "numberMatched": selection.number_matched,
                "numberReturned": len(selection.positions), "limit": limit, "offset": offset,
                "centre": None if centre is None else {"lon": centre.lon, "lat": centre.lat,
                                                       "place_id": centre.place_id},
                "data_version": self.catalogue.version}
        closing = b"]" + (b"," + orjson.dumps(after)[1:] if after else b"}")
        return orjson.dumps(head)[:-1] + b',"features":[' + self.features(selection) + closing

    def items_body(self, selection: Selection, members: bytes) -> bytes:
        """An OGC items FeatureCollection: `type`, the features (empty lists as null), then the other members (a
        JSON object's text)."""
        return b'{"type":"FeatureCollection","features":[' + self.features(selection, ogc=True) + b"]," + members[1:]


def _joined(parts: list[bytes], count: int, per_feature: int):
    """The parts of `count` features, `per_feature` parts each, with a comma between features."""
    for n in range(count):
        if n:
            yield b","
        yield from parts[n * per_feature: (n + 1) * per_feature]
