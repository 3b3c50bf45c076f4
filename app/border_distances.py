"""Geodesic distances from many points to one polyline at once, with the nearest point on it (pure, no I/O).

The batched counterpart of :func:`app.geodesy.nearest_on_line`, same conventions (segments are the
WGS84 geodesics between consecutive vertices, lon/lat degrees, metres). How:

1. The line is densified: segments longer than 2 km get extra vertices on the same geodesic, so
   the curve is unchanged and every segment is at most ``MAX_SEGMENT_M`` long.
2. A k-d tree on the vertices' geocentric unit vectors gives each point its nearest vertex by
   angle; its exact distance ``U`` (``Geod.inv``) bounds the answer from above.
3. Rigorous lower bounds pick the segments that could beat ``U``. A chord is never longer than the
   geodesic and a segment's points lie within half its length of its midpoint, so a ball query
   (Cartesian, metres) for midpoints within ``U + MAX_SEGMENT_M / 2`` finds every such segment.
   Two cheap bounds then drop most of them: ``b * angle`` at the ends (a geodesic on WGS84 is at
   least that long: the nearest-point projection onto the ball of the polar radius ``b`` shortens
   curves), and the 3D distance from the point to the segment's straight chord less the most a
   geodesic can bow away from it (``L^2 / (8 R_min)``). The survivors' ends are measured exactly;
   a segment is refined only if the foot lies inside it (it heads toward the point at A and away
   from it at B, the test :func:`app.geodesy.nearest_on_line` uses) and its triangle bound
   ``(dA + dB - L) / 2`` beats the best distance so far.
4. Refinement: the foot of the perpendicular on each surviving segment by a few Newton-like steps
   (move along by the spherical along-track distance of the point), to well under a millimetre.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from app import geodesy

__all__ = ["LineIndex", "MAX_SEGMENT_M"]

MAX_SEGMENT_M = 2000.0
_A = 6_378_137.0
_F = 1 / 298.257223563
_E2 = _F * (2 - _F)
_B_SAFE = _A * (1 - _F) * (1 - 1e-9)  # the polar radius, a hair smaller: b * angle never exceeds a geodesic
_R_STEP = 6_371_008.8  # sphere radius for the along-track step (only steers the iteration)
_STEPS = 6


def _ecef(lons, lats) -> np.ndarray:
    """Earth-centred Cartesian coordinates in metres of lon/lat points on the WGS84 surface, shape (n, 3)."""
    lam, phi = np.radians(lons), np.radians(lats)
    n = _A / np.sqrt(1.0 - _E2 * np.sin(phi) ** 2)
    return np.column_stack([n * np.cos(phi) * np.cos(lam), n * np.cos(phi) * np.sin(lam), n * (1 - _E2) * np.sin(phi)])


def _to_chords(points, a, b) -> np.ndarray:
    """Straight-line (3D) distances from each point to the straight chord between a and b (rows)."""
    ab = b - a
    t = np.einsum("ij,ij->i", points - a, ab) / np.maximum(np.einsum("ij,ij->i", ab, ab), 1e-300)
    foot = a + np.clip(t, 0.0, 1.0)[:, None] * ab
    return np.linalg.norm(points - foot, axis=1)


def _unit_vectors(lons, lats) -> np.ndarray:
    """Geocentric unit vectors of geodetic lon/lat points on WGS84, shape (n, 3)."""
    lam, phi = np.radians(lons), np.radians(lats)
    n = 1.0 / np.sqrt(1.0 - _E2 * np.sin(phi) ** 2)
    xyz = np.column_stack([n * np.cos(phi) * np.cos(lam), n * np.cos(phi) * np.sin(lam), n * (1 - _E2) * np.sin(phi)])
    return xyz / np.linalg.norm(xyz, axis=1)[:, None]


def _angles(u, v) -> np.ndarray:
    """Angles in radians between rows of unit vectors (stable for tiny angles)."""
    cross = np.linalg.norm(np.cross(u, v), axis=1)
    return np.arctan2(cross, np.einsum("ij,ij->i", u, v))


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


class LineIndex:
    """One polyline (LineString or MultiLineString, lon/lat) prepared for distances from many points."""

    def __init__(self, line):
        parts = _densified(geodesy._line_parts(line))
        self.lons, self.lats, self.start, self.end = geodesy._segments(parts)
        self.azimuth, self.back, self.length = geodesy._inv(
            self.lons[self.start], self.lats[self.start], self.lons[self.end], self.lats[self.end]
        )
        self.units = _unit_vectors(self.lons, self.lats)
        self.ecef = _ecef(self.lons, self.lats)
        # a geodesic bends at most 1/R_min (R_min = a(1-f)^2, the smallest radius of curvature on WGS84), so a
        # segment of length L strays at most L^2 / (8 R_min) from its straight chord
        self.sagitta = self.length**2 / (8 * _A * (1 - _F) ** 2) * 1.01 + 1e-6
        self.tree = cKDTree(self.units)
        # segment midpoints: every point of a segment lies within half its length of its midpoint
        mid_lon, mid_lat, _ = geodesy._fwd(self.lons[self.start], self.lats[self.start], self.azimuth, self.length / 2)
        self.mid_tree = cKDTree(_ecef(geodesy._wrap(mid_lon), np.clip(mid_lat, -90.0, 90.0)))
        self.max_segment = float(self.length.max()) if len(self.length) else 0.0

    def distances(self, lons, lats) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per point: distance in metres to the line, and the nearest point's lon and lat."""
        lons = np.ascontiguousarray(geodesy._lons(lons, "lons"), dtype=float).ravel()
        lats = np.ascontiguousarray(geodesy._lats(lats, "lats"), dtype=float).ravel()
        n = len(lons)
        if not n:
            return np.empty(0), np.empty(0), np.empty(0)
        units = _unit_vectors(lons, lats)
        _, nearest = self.tree.query(units)
        best = np.asarray(geodesy._inv(lons, lats, self.lons[nearest], self.lats[nearest])[2])
        best_x, best_y = self.lons[nearest].copy(), self.lats[nearest].copy()
        if not len(self.start):
            return best, best_x, best_y
        # every vertex whose angle could put one of its segments under the upper bound
        # chord(P, M) <= chord(P, X) + chord(X, M) <= d(P, X) + L / 2 for X on a segment with midpoint M
        radius = (best + self.max_segment / 2.0) * (1 + 1e-12) + 1e-6
        hits = self.mid_tree.query_ball_point(_ecef(lons, lats), radius, return_sorted=False)
        counts = np.fromiter((len(h) for h in hits), dtype=np.int64, count=n)
        segs = np.fromiter((v for h in hits for v in h), dtype=np.int64, count=int(counts.sum()))
        owner = np.repeat(np.arange(n), counts)
        a, b = self.start[segs], self.end[segs]
        bound = (_B_SAFE * (_angles(units[owner], self.units[a]) + _angles(units[owner], self.units[b])) - self.length[segs]) / 2
        keep = bound < best[owner]
        owner, segs, a, b = owner[keep], segs[keep], a[keep], b[keep]
        # a straight line is the shortest path: no point of the segment is nearer than its chord, less the sagitta
        points = _ecef(lons[owner], lats[owner])
        keep = _to_chords(points, self.ecef[a], self.ecef[b]) - self.sagitta[segs] < best[owner]
        owner, segs, a, b = owner[keep], segs[keep], a[keep], b[keep]
        _, toward_a, d_a = geodesy._inv(lons[owner], lats[owner], self.lons[a], self.lats[a])
        _, toward_b, d_b = geodesy._inv(lons[owner], lats[owner], self.lons[b], self.lats[b])
        self._improve(best, best_x, best_y, owner, np.asarray(d_a), self.lons[a], self.lats[a])
        self._improve(best, best_x, best_y, owner, np.asarray(d_b), self.lons[b], self.lats[b])
        # the foot is inside a segment only if it heads toward the point at A and away from it at B
        closer_at_a = np.cos(np.radians(toward_a - self.azimuth[segs])) > 0
        closer_at_b = np.cos(np.radians(toward_b - self.back[segs] - 180.0)) > 0
        bound = (d_a + d_b - self.length[segs]) / 2
        keep = closer_at_a & ~closer_at_b & (bound < best[owner]) & (self.length[segs] > 0)
        owner, segs = owner[keep], segs[keep]
        if len(owner):
            d, x, y = self._feet(lons[owner], lats[owner], segs)
            self._improve(best, best_x, best_y, owner, d, x, y)
        return best, best_x, best_y

    def _feet(self, lon, lat, segs):
        """Distance from each point to its segment's nearest point (interior or end), and that point."""
        a_lon, a_lat = self.lons[self.start[segs]], self.lats[self.start[segs]]
        azimuth, length = self.azimuth[segs], self.length[segs]
        s = length / 2.0
        for _ in range(_STEPS):
            x, y, back = geodesy._fwd(a_lon, a_lat, azimuth, s)
            to_point, _, d = geodesy._inv(x, y, lon, lat)
            alpha = np.radians(to_point - back - 180.0)
            along = _R_STEP * np.arctan2(np.sin(d / _R_STEP) * np.cos(alpha), np.cos(d / _R_STEP))
            s = np.clip(s + along, 0.0, length)
        x, y, _ = geodesy._fwd(a_lon, a_lat, azimuth, s)
        d = np.asarray(geodesy._inv(x, y, lon, lat)[2])
        return d, geodesy._wrap(x), np.clip(y, -90.0, 90.0)

    @staticmethod
    def _improve(best, best_x, best_y, owner, d, x, y) -> None:
        """Lower best[owner] to d where smaller, with the matching point (in place)."""
        order = np.lexsort((d, owner))
        owner, d, x, y = owner[order], d[order], np.asarray(x)[order], np.asarray(y)[order]
        first = np.r_[True, owner[1:] != owner[:-1]]
        owner, d, x, y = owner[first], d[first], x[first], y[first]
        better = d < best[owner]
        owner, d, x, y = owner[better], d[better], x[better], y[better]
        best[owner], best_x[owner], best_y[owner] = d, x, y


def distances_to_line(lons, lats, line) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distances in metres from many points to a line, and the nearest points' lons and lats.

    >>> from shapely.geometry import LineString
    >>> d, x, y = distances_to_line([0.5, 180.0], [1.0, 1.0], LineString([(179.5, 0), (-179.5, 0)]))
    >>> round(float(d[1]), 1), round(abs(float(x[1])), 6), round(float(y[1]), 6)
    (110574.4, 180.0, 0.0)
    """
    return LineIndex(line).distances(lons, lats)
