"""Which lines matter to a site: its country's land borders, its coastline, and the named lines attached to its
country (the MDL and the DMZ edges to KOR and PRK in the bundled catalogue).

A coastline is derived from the `countries` layer: the parts of a country's polygon boundaries that no land border
shares (the land borders are built from the same Natural Earth arcs, so a shared edge has exactly the same two
vertices in both). Distances to it are then measured on WGS84 like any other line (`app.border_distances`). Water
Natural Earth leaves out of every country counts as sea: the Caspian shore is coast.
"""

from __future__ import annotations

import threading

import numpy as np
import shapely

from app.vocab import decode_list

COAST_PREFIX = "coast-"
COAST_KIND = "coastline"
LAND_BORDER_KIND = "land_border"
ATTACHED_TABLE = "attached_borders"
_SEGMENT = np.dtype((np.void, 32))  # a segment's two vertices (four float64) as one comparable value


def coastline_id(country: str) -> str:
    """The id of a country's coastline, e.g. `coast-irn`."""
    return COAST_PREFIX + country.lower()


def _segment_keys(xy: np.ndarray) -> np.ndarray:
    """A line's segments as values that compare equal whichever way a segment runs."""
    a, b = xy[:-1], xy[1:]
    first = ((a[:, 0] < b[:, 0]) | ((a[:, 0] == b[:, 0]) & (a[:, 1] <= b[:, 1])))[:, None]
    pairs = np.ascontiguousarray(np.hstack([np.where(first, a, b), np.where(first, b, a)]))
    return pairs.view(_SEGMENT).ravel()


def coastline(country, land_borders) -> shapely.MultiLineString | None:
    """The edges of a country's (Multi)Polygon that none of its land borders share, merged into lines; None for a
    landlocked country (or one without a polygon).

    >>> square = shapely.Polygon([(0, 0), (1, 0), (1, 1), (0, 1)])
    >>> coastline(square, [shapely.LineString([(1, 0), (1, 1)])]).length
    3.0
    """
    if country is None or country.is_empty:
        return None
    shared = [_segment_keys(shapely.get_coordinates(part)) for line in land_borders if line is not None
              for part in shapely.get_parts(line)]
    shared_keys = np.concatenate(shared) if shared else np.empty(0, dtype=_SEGMENT)
    runs = []
    for ring in shapely.get_rings(shapely.get_parts(country)):
        xy = shapely.get_coordinates(ring)
        if len(xy) < 2:
            continue
        keep = ~np.isin(_segment_keys(xy), shared_keys)
        edges = np.flatnonzero(np.diff(np.r_[0, keep.astype(np.int8), 0]))
        runs += [xy[start:end + 1] for start, end in zip(edges[::2], edges[1::2])]
    if not runs:
        return None
    merged = shapely.line_merge(shapely.MultiLineString(runs))
    return merged if merged.geom_type == "MultiLineString" else shapely.MultiLineString([merged])


class Coastlines:
    """Coastlines derived on first use, one country at a time, kept for every snapshot of the same build."""

    _cache: dict[tuple[str, str], shapely.MultiLineString | None] = {}
    _lock = threading.Lock()

    def __init__(self, build_id: str, countries, land_borders: dict[str, list]):
        self.build_id = build_id
        self.polygons = dict(zip(countries["id"], countries.geometry))
        self.land_borders = land_borders  # country id -> its land border geometries

    def get(self, country: str) -> shapely.MultiLineString | None:
        """A country's coastline (None when landlocked or unknown)."""
        key = (self.build_id, country)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        line = coastline(self.polygons.get(country), self.land_borders.get(country, []))
        with self._lock:
            return self._cache.setdefault(key, line)

    def country_of(self, line_id: str) -> str | None:
        """The country whose coastline an id names (`coast-irn` -> IRN), or None."""
        if not line_id.startswith(COAST_PREFIX):
            return None
        wanted = line_id[len(COAST_PREFIX):]
        return next((c for c in self.polygons if str(c).lower() == wanted), None)


def default_attachments(borders) -> list[tuple[str, str]]:
    """(border id, country) pairs attaching every line that is not a land border to the countries it separates:
    what schema 3 starts the attached_borders table with."""
    return sorted((border_id, country) for border_id, kind, countries in
                  zip(borders["id"], borders["kind"], borders["countries"])
                  if kind != LAND_BORDER_KIND for country in decode_list(countries))


def read_attachments(connection, borders) -> dict[str, tuple[str, ...]]:
    """Country -> the named lines attached to it, from the attached_borders table (a file before schema 3 has
    none: its default then)."""
    has_table = connection.has_table(ATTACHED_TABLE) if hasattr(connection, "has_table") else connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (ATTACHED_TABLE,)).fetchone()
    pairs = connection.execute(f'SELECT border_id, country FROM "{ATTACHED_TABLE}" ORDER BY border_id, country'
                               ).fetchall() if has_table else default_attachments(borders)
    attached: dict[str, list[str]] = {}
    for border_id, country in pairs:
        attached.setdefault(country, []).append(border_id)
    return {country: tuple(ids) for country, ids in attached.items()}
