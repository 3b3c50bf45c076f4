"""Geodesic distances from many points to one polyline at once, with the nearest point on it (pure, no I/O).

The batched counterpart of :func:`app.geodesy.nearest_on_line`, same conventions (segments are the
WGS84 geodesics between consecutive vertices, lon/lat degrees, metres). How:

1. The line is densified: segments longer than 2 km get extra vertices on the same geodesic, so
   the curve is unchanged and every segment is at most ``MAX_SEGMENT_M`` long. Each segment is
   then close to its straight chord in Earth-centred coordinates: a geodesic bends at most
   ``1 / R_min`` (``R_min = b^2 / a``, the smallest radius of curvature on WGS84), so it strays at
   most its sagitta ``L^2 / (8 R_min)`` (8 cm at 2 km) from the chord.
2. Chords bound geodesics both ways, tightly. Below: ``g >= 2 R_max asin(c / 2 R_max)``
   (``R_max = a^2 / b``): by Blaschke's rolling theorem the ellipsoid lies inside the ball of
   radius ``R_max`` touching it at any of its points, so along any curve on it from P the chord
   ``f`` to P grows with ``f' <= sqrt(1 - (f / 2 R_max)^2)``, that of a circle of radius
   ``R_max``. Above (chords up to ``a``): ``g <= 2 R_min asin(c / 2 R_min)`` by Schur's
   comparison theorem (a geodesic's curvature is at most ``1 / R_min``). At 1,000 km the two are
   21 m apart, at 100 km 2 cm: far tighter than ``b * angle`` (0.3 %, 3 km at 1,000 km).
3. A k-d tree on the chords' midpoints and the vertices (metres) gives each point its ``K``
   nearest. A segment whose nearest chord point is inside it is within
   ``sqrt(|P - M|^2 - (chord / 2)^2)`` of P (M its chord's midpoint: half a metre of slack at
   1,000 km, not the half segment a plain ball around M would need), and one whose nearest chord
   point is an end is as far as that vertex. So every segment missing from the ``K`` nearest is at
   least ``sqrt(d_K^2 - (chord_max / 2)^2)`` away, and when that is beyond the upper bound the
   candidates are complete; otherwise (rare) a ball query of that radius collects them all. The
   candidates' exact chord distances, less the sagitta, through the lower bound, keep only the
   segments that could beat the best upper bound (usually one or two per point).
4. On each survivor the foot of the perpendicular on the chord, carried to the same fraction of
   the geodesic (``Geod.fwd``), is measured exactly (``Geod.inv``). Where the spherical
   along-track step from there is over 5 cm (far points: the chord's foot drifts from the
   geodesic's by about ``1e-5 d^3 / (1000 km)^2``), one Newton-like step along the segment (move by
   that step, measure again) takes it to well under a millimetre of the geodesic's foot.

Large batches are cut in two halves run on two threads (``Geod`` and the k-d tree release the GIL).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from app import geodesy

__all__ = ["LineIndex", "MAX_SEGMENT_M", "chord_lower_bound", "chord_upper_bound", "distances_to_line"]

MAX_SEGMENT_M = 2000.0
_A = 6_378_137.0
_F = 1 / 298.257223563
_E2 = _F * (2 - _F)
_R_MAX = _A / (1 - _F)  # a^2 / b: the largest radius of curvature on WGS84 (at the poles)
_R_MIN = _A * (1 - _F) ** 2  # b^2 / a: the smallest (the meridian at the equator)
_R_STEP = 6_371_008.8  # sphere radius for the along-track step (only steers the refinement)
_K = 8  # nearest tree nodes (chord midpoints and vertices) per point before the completeness check
_REFINE_M = 0.01  # move a foot while its along-track step exceeds this
_NEAR_STEPS = 3  # steps for the winning foot of each point
_FAR_M = 1_000_000.0  # beyond this, every candidate segment is walked to its foot before the best is chosen
_FAR_STEPS = 12
_THREADS = 2
_MIN_SPLIT = 20_000  # points in a batch before it is cut between threads


def _ecef(lons, lats) -> np.ndarray:
    """Earth-centred Cartesian coordinates in metres of lon/lat points on the WGS84 surface, shape (n, 3)."""
    lam, phi = np.radians(lons), np.radians(lats)
    sin_phi, cos_phi = np.sin(phi), np.cos(phi)
    n = _A / np.sqrt(1.0 - _E2 * sin_phi**2)
    return np.column_stack([n * cos_phi * np.cos(lam), n * cos_phi * np.sin(lam), n * (1 - _E2) * sin_phi])


def chord_lower_bound(chord):
    """A geodesic distance on WGS84 is at least this, given the straight (3D) distance `chord` in metres.

    ``2 R_max asin(c / 2 R_max)`` with ``R_max = a^2 / b``, less a hair for rounding.

    >>> round(float(chord_lower_bound(1_000_000.0)), 1)
    1001020.2
    """
    c = np.clip(np.asarray(chord, dtype=float), 0.0, 2 * _R_MAX)
    return 2 * _R_MAX * np.arcsin(c / (2 * _R_MAX)) * (1 - 1e-12) - 1e-6


def _lower_chord(distance) -> np.ndarray:
    """The largest chord whose lower bound stays below `distance` (inverse of chord_lower_bound, rounded up)."""
    g = np.asarray(distance, dtype=float)
    half = np.minimum(g / (2 * _R_MAX), np.pi / 2)
    return np.where(g >= np.pi * _R_MAX, np.inf, 2 * _R_MAX * np.sin(half) * (1 + 1e-9) + 1e-5)


def chord_upper_bound(chord):
    """A geodesic distance on WGS84 is at most this, given the chord in metres (inf for chords over `a`).

    ``2 R_min asin(c / 2 R_min)`` with ``R_min = b^2 / a``, plus a hair for rounding. Chords up to
    the equatorial radius only: their geodesics are under 6,700 km, well short of ``pi R_min``,
    the length up to which Schur's theorem applies.

    >>> round(float(chord_upper_bound(1_000_000.0)), 1)
    1001041.0
    """
    c = np.asarray(chord, dtype=float)
    inside = c <= _A
    bound = 2 * _R_MIN * np.arcsin(np.where(inside, c, 0.0) / (2 * _R_MIN)) * (1 + 1e-12) + 1e-6
    return np.where(inside, bound, np.inf)


def _densified(parts: list[np.ndarray]) -> list[np.ndarray]:
    """Each part with extra vertices on its geodesics so no segment exceeds MAX_SEGMENT_M."""
    result = []
    for xy in parts:
        if len(xy) < 2:
            result.append(xy)
            continue
        az, _, length = geodesy._inv(xy[:-1, 0], xy[:-1, 1], xy[1:, 0], xy[1:, 1])
        pieces = np.maximum(np.ceil(length / MAX_SEGMENT_M), 1).astype(int)
        seg = np.repeat(np.arange(len(length)), pieces)
        step = np.arange(len(seg)) - np.repeat(np.cumsum(pieces) - pieces, pieces)
        x, y, _ = geodesy._fwd(xy[seg, 0], xy[seg, 1], az[seg], length[seg] * step / pieces[seg])
        x = np.where(step == 0, xy[seg, 0], geodesy._wrap(x))
        y = np.where(step == 0, xy[seg, 1], np.clip(y, -90.0, 90.0))
        result.append(np.vstack([np.column_stack([x, y]), xy[-1:]]))
    return result


def _segments(parts: list[np.ndarray]):
    """Vertices and segments (start, end indices); a part of one vertex becomes a segment of length zero."""
    lons, lats, start, end = geodesy._segments(parts)
    offsets = np.cumsum([0] + [len(xy) for xy in parts[:-1]])
    single = np.array([o for o, xy in zip(offsets, parts) if len(xy) == 1], dtype=int)
    return lons, lats, np.r_[start, single].astype(int), np.r_[end, single].astype(int)


def _first_per_row(rows: np.ndarray) -> np.ndarray:
    """Indices where a new row starts in an array of sorted row numbers."""
    return np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])


class LineIndex:
    """One polyline (LineString or MultiLineString, lon/lat) prepared for distances from many points."""

    def __init__(self, line):
        parts = _densified(geodesy._line_parts(line))
        self.lons, self.lats, self.start, self.end = _segments(parts)
        self.azimuth, _, self.length = (np.asarray(v) for v in geodesy._inv(
            self.lons[self.start], self.lats[self.start], self.lons[self.end], self.lats[self.end]
        ))
        xyz = _ecef(self.lons, self.lats)
        self.a_xyz = xyz[self.start]
        self.ab = xyz[self.end] - self.a_xyz
        self.ab2 = np.einsum("ij,ij->i", self.ab, self.ab)
        chord = np.sqrt(self.ab2)
        # every point of a segment is within `sagitta` of its chord; the geodesic point at a fraction t of
        # the length is within `slack` of the chord point at the same fraction (sagitta plus arc minus chord)
        self.sagitta = self.length**2 / (8 * _R_MIN) * 1.01 + 1e-6
        self.slack = self.sagitta + np.maximum(self.length - chord, 0.0) + 1e-6
        self.max_sagitta = float(self.sagitta.max())
        self.max_half_chord = float(chord.max()) / 2 * (1 + 1e-12) + 1e-6
        nseg, nvert = len(self.start), len(self.lons)
        self.nseg = nseg
        # tree nodes: the chords' midpoints (ids < nseg), then the vertices (id nseg + v)
        from scipy.spatial import cKDTree  # imported when lines are first measured: not at start-up

        self.tree = cKDTree(np.vstack([self.a_xyz + self.ab / 2, xyz]), leafsize=32)
        self.k = min(_K, nseg + nvert)
        # the segments on either side of each vertex (-1: none)
        self.before, self.after = np.full(nvert, -1), np.full(nvert, -1)
        self.after[self.start[::-1]] = np.arange(nseg)[::-1]
        self.before[self.end] = np.arange(nseg)

    def distances(self, lons, lats) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per point: distance in metres to the line, and the nearest point's lon and lat."""
        lons = np.ascontiguousarray(geodesy._lons(lons, "lons"), dtype=float).ravel()
        lats = np.ascontiguousarray(geodesy._lats(lats, "lats"), dtype=float).ravel()
        n = len(lons)
        if n < _MIN_SPLIT:
            return self._distances(lons, lats)
        # neighbours in space next to each other (quarter-degree cells) make the k-d tree walks cache-friendly
        order = np.argsort(np.floor((lats + 90.0) * 4.0) * 1440.0 + np.floor((lons + 180.0) * 4.0), kind="stable")
        lons, lats = lons[order], lats[order]
        cuts = np.linspace(0, n, _THREADS + 1).astype(int)
        with ThreadPoolExecutor(_THREADS) as pool:
            results = list(pool.map(lambda i: self._distances(lons[cuts[i]:cuts[i + 1]], lats[cuts[i]:cuts[i + 1]]),
                                    range(_THREADS)))
        result = []
        for parts in zip(*results):
            values = np.empty(n)
            values[order] = np.concatenate(parts)
            result.append(values)
        return tuple(result)

    def _candidates(self, rows, nodes) -> tuple[np.ndarray, np.ndarray]:
        """(row, segment) pairs for tree hits: a midpoint's segment, a vertex's segments on both sides."""
        is_mid = nodes < self.nseg
        vertex = nodes[~is_mid] - self.nseg
        vrows = rows[~is_mid]
        rows = np.r_[rows[is_mid], vrows, vrows]
        segs = np.r_[nodes[is_mid], self.before[vertex], self.after[vertex]]
        keep = segs >= 0
        return rows[keep], segs[keep]

    def _chords(self, points, rows, segs) -> tuple[np.ndarray, np.ndarray]:
        """Per (row, segment) pair: fraction along the chord of the foot from the row's point, and its distance."""
        a, ab = self.a_xyz[segs], self.ab[segs]
        pa = points[rows] - a
        t = np.clip(np.einsum("ij,ij->i", pa, ab) / np.maximum(self.ab2[segs], 1e-300), 0.0, 1.0)
        return t, np.linalg.norm(pa - t[:, None] * ab, axis=1)

    def _distances(self, lons, lats) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = len(lons)
        if not n:
            return np.empty(0), np.empty(0), np.empty(0)
        points = _ecef(lons, lats)
        near, nodes = self.tree.query(points, k=self.k)
        near, nodes = near.reshape(n, self.k), nodes.reshape(n, self.k)
        # an upper bound per point from its nearest nodes: a vertex's chord, or a segment point's plus its slack
        mid = nodes < self.nseg
        rows, segs = np.nonzero(mid)[0], nodes[mid]
        t, chord = self._chords(points, rows, segs)
        reach = near.copy()  # the bounds grow with the chord: bound the smallest chord only
        reach[mid] = chord + self.slack[segs]
        upper = chord_upper_bound(reach.min(axis=1))
        far = np.flatnonzero(~np.isfinite(upper))
        if len(far):  # chords over a: the exact distance to the nearest node's vertex
            first = nodes[far, 0]
            vertex = np.where(first >= self.nseg, first - self.nseg, self.start[np.minimum(first, self.nseg - 1)])
            upper[far] = geodesy._inv(lons[far], lats[far], self.lons[vertex], self.lats[vertex])[2]
        # a chord beyond this, less the sagitta, cannot beat the upper bound (the lower bound, inverted per point)
        within = _lower_chord(upper)
        # the segments on either side of a vertex hit that could matter
        vertex_rows, vertex_col = np.nonzero(~mid)
        close = near[vertex_rows, vertex_col] - self.max_sagitta <= within[vertex_rows]
        extra_rows, extra_segs = self._candidates(vertex_rows[close], nodes[vertex_rows[close], vertex_col[close]])
        extra_t, extra_chord = self._chords(points, extra_rows, extra_segs)
        rows, segs, t, chord = np.r_[rows, extra_rows], np.r_[segs, extra_segs], np.r_[t, extra_t], np.r_[chord, extra_chord]
        # segments outside the k nearest nodes are at least this far (chord): enough when over the bound
        if self.k < len(self.tree.data):
            beyond = np.sqrt(np.maximum(near[:, -1] ** 2 - self.max_half_chord**2, 0.0)) - self.max_sagitta
            missing = np.flatnonzero(beyond < within)
            if len(missing):
                radius = np.sqrt((within[missing] + self.max_sagitta) ** 2 + self.max_half_chord**2)
                hits = self.tree.query_ball_point(points[missing], np.minimum(radius, 3 * _A), return_sorted=False)
                counts = np.fromiter((len(h) for h in hits), dtype=np.int64, count=len(missing))
                ball = np.fromiter((v for h in hits for v in h), dtype=np.int64, count=int(counts.sum()))
                extra_rows, extra_segs = self._candidates(np.repeat(missing, counts), ball)
                extra_t, extra_chord = self._chords(points, extra_rows, extra_segs)
                rows, segs = np.r_[rows, extra_rows], np.r_[segs, extra_segs]
                t, chord = np.r_[t, extra_t], np.r_[chord, extra_chord]
        # only segments that could beat the upper bound, each pair once, sorted by row
        keep = chord - self.sagitta[segs] <= within[rows]
        pair, first = np.unique(rows[keep] * self.nseg + segs[keep], return_index=True)
        rows, segs, t = pair // self.nseg, pair % self.nseg, t[keep][first]
        # the chord's foot carried to the geodesic, measured exactly
        s = t * self.length[segs]
        a_lon, a_lat, azimuth = self.lons[self.start[segs]], self.lats[self.start[segs]], self.azimuth[segs]
        x, y, back = geodesy._fwd(a_lon, a_lat, azimuth, s)
        at_end = t >= 1.0
        x = np.where(t <= 0.0, a_lon, np.where(at_end, self.lons[self.end[segs]], geodesy._wrap(x)))
        y = np.where(t <= 0.0, a_lat, np.where(at_end, self.lats[self.end[segs]], np.clip(y, -90.0, 90.0)))
        to_point, _, d = (np.asarray(v) for v in geodesy._inv(x, y, lons[rows], lats[rows]))
        back = np.asarray(back)
        # far away (thousands of km) the chord's foot can drift kilometres from the geodesic's: before choosing,
        # walk to its foot every candidate of those points that its along-track step (how far the foot is,
        # give or take a few per cent) could bring below the best so far
        starts = _first_per_row(rows)
        row_best = np.repeat(np.minimum.reduceat(d, starts), np.diff(np.r_[starts, len(rows)]))
        far = np.flatnonzero(row_best > _FAR_M)
        if len(far):
            ratio = d[far] / _R_STEP
            alpha = np.radians(to_point[far] - back[far] - 180.0)
            along = np.abs(_R_STEP * np.arctan2(np.sin(ratio) * np.cos(alpha), np.cos(ratio)))
            far = far[d[far] - 1.1 * np.minimum(along, self.length[segs[far]]) - 1.0 < row_best[far]]
            self._walk(far, rows, segs, s, x, y, back, to_point, d, lons, lats, _FAR_STEPS)
        # the best per row
        best = np.minimum.reduceat(d, starts)
        winners = np.flatnonzero(d == np.repeat(best, np.diff(np.r_[starts, len(rows)])))
        winners = winners[_first_per_row(rows[winners])]
        # near points: the winner's foot, moved along while its step is measurable
        self._walk(winners, rows, segs, s, x, y, back, to_point, d, lons, lats, _NEAR_STEPS)
        return d[winners], x[winners], y[winners]

    def _walk(self, pairs, rows, segs, s, x, y, back, to_point, d, lons, lats, steps: int) -> None:
        """Move the given pairs' points along their segments toward the foot (Newton-like steps), in place.

        Each step moves by the spherical along-track distance of the point from the current position,
        while that exceeds ``_REFINE_M``; a position is kept only if it measures nearer.
        """
        length = self.length[segs[pairs]]
        a_lon, a_lat, azimuth = self.lons[self.start[segs[pairs]]], self.lats[self.start[segs[pairs]]], self.azimuth[segs[pairs]]
        plon, plat = lons[rows[pairs]], lats[rows[pairs]]
        position, heading_back, bearing, distance = s[pairs], back[pairs], to_point[pairs], d[pairs]
        active = np.arange(len(pairs))
        for _ in range(steps):
            alpha = np.radians(bearing[active] - heading_back[active] - 180.0)
            ratio = distance[active] / _R_STEP
            along = _R_STEP * np.arctan2(np.sin(ratio) * np.cos(alpha), np.cos(ratio))
            moved = np.clip(position[active] + along, 0.0, length[active])
            go = (np.abs(moved - position[active]) > _REFINE_M) & (length[active] > 0)
            active, moved = active[go], moved[go]
            if not len(active):
                break
            nx, ny, nback = geodesy._fwd(a_lon[active], a_lat[active], azimuth[active], moved)
            nx, ny = geodesy._wrap(nx), np.clip(ny, -90.0, 90.0)
            nbearing, _, nd = (np.asarray(v) for v in geodesy._inv(nx, ny, plon[active], plat[active]))
            nearer = nd < distance[active]
            active, moved = active[nearer], moved[nearer]
            nx, ny, nback, nbearing, nd = nx[nearer], ny[nearer], np.asarray(nback)[nearer], nbearing[nearer], nd[nearer]
            position[active], heading_back[active], bearing[active], distance[active] = moved, nback, nbearing, nd
            target = pairs[active]
            s[target], x[target], y[target], back[target], to_point[target], d[target] = moved, nx, ny, nback, nbearing, nd


def distances_to_line(lons, lats, line) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distances in metres from many points to a line, and the nearest points' lons and lats.

    >>> from shapely.geometry import LineString
    >>> d, x, y = distances_to_line([0.5, 180.0], [1.0, 1.0], LineString([(179.5, 0), (-179.5, 0)]))
    >>> round(float(d[1]), 1), round(abs(float(x[1])), 6), round(float(y[1]), 6)
    (110574.4, 180.0, 0.0)
    """
    return line_index(line).distances(lons, lats)


_LINE_INDEXES: dict[int, tuple[object, "LineIndex"]] = {}  # id(line) -> (the line, kept alive so its id stays its own)
LINE_INDEXES_KEPT = 512


def line_index(line) -> "LineIndex":
    """The LineIndex of a line geometry, made once per geometry object (snapshots share their border geometries, so a
    refresh measuring one moved site does not prepare every line again)."""
    kept = _LINE_INDEXES.get(id(line))
    if kept is not None and kept[0] is line:
        return kept[1]
    if len(_LINE_INDEXES) >= LINE_INDEXES_KEPT:
        _LINE_INDEXES.clear()
    index = LineIndex(line)
    _LINE_INDEXES[id(line)] = (line, index)
    return index


@dataclass(frozen=True)
class BorderMatrix:
    """Distances in metres from points (rows) to lines (columns), with the nearest point on each line; NaN where a
    point is not measured against a line (each point is measured only against the lines that matter to it).

    Built once per catalogue snapshot; `updated` measures only the pairs that are new or whose point moved, so a
    one-site change costs one row, not the whole table.
    """

    ids: np.ndarray  # the points' ids, one per row
    lons: np.ndarray
    lats: np.ndarray
    line_ids: tuple[str, ...]
    distance_m: np.ndarray  # (points, lines), NaN where not measured
    nearest_lon: np.ndarray
    nearest_lat: np.ndarray

    @classmethod
    def measure(cls, ids, lons, lats, lines: dict, mask: np.ndarray | None = None) -> "BorderMatrix":
        """Each point measured to each line (`lines`: id -> geometry, in column order) where `mask` (points x lines,
        default all True) says so."""
        lons, lats = np.asarray(lons, dtype=float), np.asarray(lats, dtype=float)
        shape = (len(lons), len(lines))
        mask = np.ones(shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool).reshape(shape)
        distance, near_lon, near_lat = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
        for column, line in enumerate(lines.values()):
            rows = np.flatnonzero(mask[:, column])
            if len(rows):
                measured = distances_to_line(lons[rows], lats[rows], line)
                distance[rows, column], near_lon[rows, column], near_lat[rows, column] = measured
        return cls(np.asarray(ids, dtype=object), lons, lats, tuple(lines), distance, near_lon, near_lat)

    @property
    def measured(self) -> np.ndarray:
        """Which (point, line) pairs were measured."""
        return ~np.isnan(self.distance_m)

    def updated(self, ids, lons, lats, lines: dict, mask: np.ndarray | None = None) -> "BorderMatrix":
        """The matrix for a new set of points and lines: a pair measured before, for a point with the same id at the
        same place and a line of the same id, is kept; every other pair `mask` asks for is measured afresh."""
        ids, lons, lats = np.asarray(ids, dtype=object), np.asarray(lons, dtype=float), np.asarray(lats, dtype=float)
        shape = (len(ids), len(lines))
        mask = np.ones(shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool).reshape(shape)
        old = pd.Index(self.ids).get_indexer(ids)
        same = old >= 0
        same[same] = (self.lons[old[same]] == lons[same]) & (self.lats[old[same]] == lats[same])
        columns = np.array([self.line_ids.index(line_id) if line_id in self.line_ids else -1 for line_id in lines],
                           dtype=int)
        arrays = [np.full(shape, np.nan) for _ in range(3)]
        rows, reused = np.flatnonzero(same), np.flatnonzero(columns >= 0)
        for target, source in zip(arrays, (self.distance_m, self.nearest_lon, self.nearest_lat)):
            target[np.ix_(rows, reused)] = source[np.ix_(old[rows], columns[reused])]  # one gather of the kept block
        arrays[0][~mask] = np.nan  # pairs no longer asked for
        for column, line in enumerate(lines.values()):
            rows = np.flatnonzero(mask[:, column] & np.isnan(arrays[0][:, column]))
            if len(rows):
                measured = distances_to_line(lons[rows], lats[rows], line)
                for target, values in zip(arrays, measured):
                    target[rows, column] = values
        for target in arrays[1:]:
            target[np.isnan(arrays[0])] = np.nan
        return BorderMatrix(ids, lons, lats, tuple(lines), *arrays)
