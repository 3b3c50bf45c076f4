"""Border distances kept in the live file (schema 4's `site_border_distances`): measured when sites are built,
imported or written, read at start-up, so a service never measures what a writer already did.

One row per located site: its id, the point it was measured at, the lines it is measured against (a JSON array)
and, in the same order, the distances in metres and the nearest points' lons and lats (little-endian float64
arrays). The rows belong to the file's build (`build_id`: the borders and coastlines the distances were measured
to); a reader keeps a row only for a site still at that point, and measures whatever is missing, so the table only
ever saves time and never changes an answer.
"""

from __future__ import annotations

import json
import threading

import numpy as np
import pandas as pd

from app import regions
from app.border_distances import BorderMatrix, LineIndex
from app.migrations import BORDER_DISTANCES_TABLE as TABLE
from app.migrations import build_id as file_build_id
from app.vocab import decode_list

_LINES: dict[str, "Lines"] = {}  # build id -> the lines of that build (the borders layer is never edited)
_LINES_LOCK = threading.Lock()


def has_table(connection) -> bool:
    """Whether the store has the table (a GeoPackage of schema 4 and later; PostGIS from its migration 4)."""
    from app.store import has_table as store_has_table

    return store_has_table(connection, TABLE)


class Lines:
    """A build's borders and coastlines, and which of them each country's sites are measured against."""

    def __init__(self, connection, build: str):
        from app.store import read_layer

        self.build_id = build
        self.borders = read_layer(connection, "borders").set_index("id", drop=False)
        land = self.borders[self.borders["kind"] == regions.LAND_BORDER_KIND]
        self.land_ids: dict[str, list[str]] = {}
        land_geometries: dict[str, list] = {}
        for border_id, geometry, countries in zip(land.index, land.geometry, land["countries"]):
            for country in decode_list(countries):
                self.land_ids.setdefault(country, []).append(border_id)
                land_geometries.setdefault(country, []).append(geometry)
        self.coastlines = regions.Coastlines(build, read_layer(connection, "countries"), land_geometries)
        self._indexes: dict[str, LineIndex] = {}  # each line's segment index, built once per process

    def index(self, line_id: str) -> LineIndex:
        """A line's index for measuring many points (built on first use, kept: a write then costs milliseconds)."""
        index = self._indexes.get(line_id)
        if index is None:
            index = self._indexes.setdefault(line_id, LineIndex(self.geometry(line_id)))
        return index

    def for_country(self, country, attached: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
        """The lines a site in the country is measured against (as `Catalogue.lines_for_country`)."""
        country = None if pd.isna(country) else str(country)
        named = [b for b in attached.get(country, ()) if b in self.borders.index]
        coast = [regions.coastline_id(country)] if country and self.coastlines.get(country) is not None else []
        return tuple(dict.fromkeys([*self.land_ids.get(country, ()), *coast, *named]))

    def geometry(self, line_id: str):
        """A border's or a coastline's geometry."""
        if line_id in self.borders.index:
            return self.borders.loc[line_id].geometry
        return self.coastlines.get(self.coastlines.country_of(line_id))


def lines_of(connection) -> Lines:
    """The lines of the file's build (read once per build per process)."""
    build = file_build_id(connection)
    with _LINES_LOCK:
        lines = _LINES.get(build)
    if lines is None:
        lines = Lines(connection, build)
        with _LINES_LOCK:
            lines = _LINES.setdefault(build, lines)
    return lines


def warm(connection, countries) -> None:
    """Read the build's lines and index those the given countries' sites are measured against (what measuring a
    site costs the first time in a process: about a second), before a write takes the lock."""
    if not has_table(connection):
        return
    lines = lines_of(connection)
    attached = regions.read_attachments(connection, lines.borders)
    for country in set(countries):
        for line_id in lines.for_country(country, attached):
            lines.index(line_id)


def write_sites(connection, sites, *, measure: bool = True) -> None:
    """Measure and store the border distances of the given sites, `(id, country, lon, lat)` with lon None when the
    site has no point, replacing what was stored for them; inside the caller's transaction. With `measure=False`
    only their old rows go (a reader measures a site it finds no row for): a single site's write never holds the
    write lock for measuring (with eight writers at once, even milliseconds each made some wait past the busy
    timeout); imports, the build and the migration measure in bulk, having readied the lines first (`warm`)."""
    if not has_table(connection):
        return
    sites = list(sites)
    ids = [site[0] for site in sites]
    for start in range(0, len(ids), 500):
        part = ids[start:start + 500]
        connection.execute(f'DELETE FROM "{TABLE}" WHERE site_id IN ({", ".join("?" * len(part))})', part)
    located = [site for site in sites if site[2] is not None and site[3] is not None]
    if not located or not measure:
        return
    lines = lines_of(connection)
    attached = regions.read_attachments(connection, lines.borders)
    by_lines: dict[tuple[str, ...], list[tuple]] = {}
    for site in located:
        by_lines.setdefault(lines.for_country(site[1], attached), []).append(site)
    rows = []
    for line_ids, group in by_lines.items():
        lons = np.array([site[2] for site in group], dtype=float)
        lats = np.array([site[3] for site in group], dtype=float)
        shape = (len(group), len(line_ids))
        distance, near_lon, near_lat = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
        for column, line_id in enumerate(line_ids):
            distance[:, column], near_lon[:, column], near_lat[:, column] = lines.index(line_id).distances(lons, lats)
        text = json.dumps(list(line_ids))
        rows += [(site[0], float(site[2]), float(site[3]), text, _blob(distance[n]), _blob(near_lon[n]),
                  _blob(near_lat[n]), lines.build_id) for n, site in enumerate(group)]
    connection.executemany(
        f'INSERT INTO "{TABLE}" (site_id, lon, lat, border_ids, distances_m, nearest_lons, nearest_lats, build_id)'
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)


def write_all(connection) -> None:
    """Measure and store every located site's border distances (the build, and a migrated file)."""
    from app.store import ENVELOPE_BYTES

    sites = []
    for site_id, country, blob in connection.execute("SELECT id, country, geom FROM sites ORDER BY fid"):
        point = _point(blob, ENVELOPE_BYTES)
        sites.append((site_id, country, *(point or (None, None))))
    connection.execute(f'DELETE FROM "{TABLE}"')
    write_sites(connection, sites)


def rewrite_countries(connection, countries) -> None:
    """Measure again the sites of the given countries (their lines changed: a named line attached or detached)."""
    from app.store import ENVELOPE_BYTES

    countries = list(countries)
    if not countries or not has_table(connection):
        return
    rows = connection.execute(f"SELECT id, country, geom FROM sites WHERE country IN ({', '.join('?' * len(countries))})",
                              countries).fetchall()
    write_sites(connection, [(site_id, country, *(_point(blob, ENVELOPE_BYTES) or (None, None)))
                             for site_id, country, blob in rows])


def read_matrix(connection, build: str) -> BorderMatrix | None:
    """The stored distances of the build as a BorderMatrix (ids, points and lines as stored), or None when none are."""
    if not has_table(connection):
        return None
    rows = connection.execute(f'SELECT site_id, lon, lat, border_ids, distances_m, nearest_lons, nearest_lats FROM "{TABLE}"'
                              " WHERE build_id = ?", (build,)).fetchall()
    if not rows:
        return None
    groups: dict[str, list[int]] = {}
    for n, row in enumerate(rows):
        groups.setdefault(row[3], []).append(n)
    columns = {text: json.loads(text) for text in groups}
    line_ids = tuple(sorted({line_id for ids in columns.values() for line_id in ids}))
    place = {line_id: n for n, line_id in enumerate(line_ids)}
    shape = (len(rows), len(line_ids))
    arrays = [np.full(shape, np.nan) for _ in range(3)]
    for text, members in groups.items():
        where = np.array([place[line_id] for line_id in columns[text]], dtype=int)
        if not len(where):
            continue
        for target, cell in zip(arrays, (4, 5, 6)):
            values = np.frombuffer(b"".join(rows[n][cell] for n in members), dtype="<f8").reshape(len(members), -1)
            target[np.ix_(np.array(members), where)] = values
    return BorderMatrix(np.array([row[0] for row in rows], dtype=object), np.array([row[1] for row in rows], dtype=float),
                        np.array([row[2] for row in rows], dtype=float), line_ids, *arrays)


def _blob(values: np.ndarray) -> bytes:
    """Floats as little-endian float64 bytes."""
    return np.asarray(values, dtype="<f8").tobytes()


def _point(blob, envelope_bytes) -> tuple[float, float] | None:
    """A GeoPackage point blob's lon and lat (None for NULL or an empty point)."""
    if blob is None:
        return None
    import shapely

    point = shapely.from_wkb(blob[8 + envelope_bytes[(blob[3] >> 1) & 0x07]:])
    if point.is_empty:
        return None
    return float(point.x), float(point.y)
