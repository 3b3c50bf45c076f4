"""An exact spatial index for geodesic radius queries over many lon/lat points (pure numpy, no I/O).

Points are sorted by a key made of their 1-degree latitude row and their longitude, so the points
of one row inside a longitude interval are one contiguous slice found by ``np.searchsorted``. A
query takes boxes that hold the whole disc (:func:`cap_boxes`: right across +-180 and over the
poles), gathers the slices of every row each box touches (slightly widened, then filtered exactly
with :func:`app.geodesy.in_boxes`, so no candidate is ever lost to rounding), and measures only the
candidates with ``Geod.inv``: the answer is identical to a brute-force scan.

:func:`cap_boxes` is a closed-form, slightly looser and much cheaper stand-in for
:func:`app.geodesy.bounding_boxes` (microseconds instead of most of a millisecond): a geodesic on
WGS84 is at least ``b * angle`` long (the nearest-point projection onto the ball of the polar
radius ``b`` shortens curves, and the ellipsoid lies outside that ball), so every point within
``r`` metres has a geocentric position within ``r / b`` radians of the centre's: a spherical cap,
whose latitude and longitude extents are exact formulas.
"""

from __future__ import annotations

import numpy as np

from app import geodesy

__all__ = ["PointIndex", "cap_boxes"]

_ROW_DEG = 1.0  # latitude rows one degree high
_ROWS = int(180 / _ROW_DEG)
_ROW_STRIDE = 1000.0  # key = row * stride + (lon + 180): rows never overlap (lon + 180 <= 360)
_SLACK_DEG = 1e-6  # widen each key interval: float rounding of the key is about 3e-11


_A = 6_378_137.0
_F = 1 / 298.257223563
_E2 = _F * (2 - _F)
_B_SAFE = _A * (1 - _F) * (1 - 1e-9)  # the polar radius, a hair smaller
_CAP_PAD_RAD = 1e-9  # about 6 mm: more than float rounding in the formulas below


def cap_boxes(lon: float, lat: float, radius_m: float) -> list[tuple[float, float, float, float]]:
    """Lon/lat boxes ``(min_lon, min_lat, max_lon, max_lat)`` whose union holds every point within `radius_m`.

    Same contract as :func:`app.geodesy.bounding_boxes` (two boxes across +-180, one box to the
    pole over a pole), a little looser (about 0.3 % of the radius), in closed form.

    >>> [tuple(round(v, 3) for v in b) for b in cap_boxes(179.5, 0, 111_319.490793)]  # across +-180
    [(178.497, -1.01, 180.0, 1.01), (-180.0, -1.01, -179.497, 1.01)]
    >>> [tuple(round(v, 3) for v in b) for b in cap_boxes(0, 89.5, 100_000)]  # holds the north pole
    [(-180.0, 88.605, 180.0, 90.0)]
    """
    theta = radius_m / _B_SAFE + _CAP_PAD_RAD
    if theta >= np.pi:
        return [(-180.0, -90.0, 180.0, 90.0)]
    psi = np.arctan((1 - _E2) * np.tan(np.radians(lat))) if abs(lat) < 90.0 else np.radians(lat)
    top, bottom = psi + theta, psi - theta
    to_lat = lambda g: float(np.degrees(np.arctan(np.tan(g) / (1 - _E2))))  # noqa: E731 geocentric -> geodetic
    max_lat = 90.0 if top >= np.pi / 2 else min(to_lat(top) + 1e-7, 90.0)
    min_lat = -90.0 if bottom <= -np.pi / 2 else max(to_lat(bottom) - 1e-7, -90.0)
    if top >= np.pi / 2 or bottom <= -np.pi / 2:
        return [(-180.0, min_lat, 180.0, max_lat)]
    half = float(np.degrees(np.arcsin(min(np.sin(theta) / np.cos(psi), 1.0)))) + 1e-7
    return geodesy.lon_span_boxes(lon, half, min_lat, max_lat)


def _rows(lats) -> np.ndarray:
    """The latitude row of each latitude (monotone in latitude)."""
    return np.clip(np.floor((np.asarray(lats, dtype=float) + 90.0) / _ROW_DEG), 0, _ROWS - 1).astype(np.int64)


def _normal_lons(lons) -> np.ndarray:
    """Longitudes with 180 written as -180 (the same meridian), so each key lies in [0, 360)."""
    lons = np.asarray(lons, dtype=float)
    return np.where(lons == 180.0, -180.0, lons)


class PointIndex:
    """Lon/lat points (degrees) indexed for exact geodesic radius queries; built once, read-only.

    >>> index = PointIndex([127.0, 128.0, 140.0, 180.0], [37.6, 37.5, 35.0, 0.0])
    >>> positions, d = index.within(127.0, 37.5, 100_000)
    >>> positions.tolist(), d.round(0).tolist()
    ([0, 1], [11099.0, 88425.0])
    >>> index.within(-179.9, 0.0, 20_000)[0].tolist()  # across the antimeridian
    [3]
    """

    def __init__(self, lons, lats):
        self.lons = np.ascontiguousarray(geodesy._lons(lons, "lons"), dtype=float).ravel()
        self.lats = np.ascontiguousarray(geodesy._lats(lats, "lats"), dtype=float).ravel()
        if self.lons.shape != self.lats.shape:
            raise ValueError(f"lons and lats must have the same length; got {self.lons.size} and {self.lats.size}")
        keys = _rows(self.lats) * _ROW_STRIDE + (_normal_lons(self.lons) + 180.0)
        self._order = np.argsort(keys, kind="stable")
        self._keys = keys[self._order]
        self._lons_sorted = self.lons[self._order]
        self._lats_sorted = self.lats[self._order]

    def __len__(self) -> int:
        return int(self.lons.size)

    def candidates(self, boxes) -> np.ndarray:
        """Positions (into the points as given, ascending) of every point inside any of the boxes."""
        lows, highs = [], []
        for min_lon, min_lat, max_lon, max_lat in boxes:
            rows = np.arange(_rows(min_lat), _rows(max_lat) + 1) * _ROW_STRIDE
            lows.append(rows + (min_lon + 180.0 - _SLACK_DEG))
            highs.append(rows + (max_lon + 180.0 + _SLACK_DEG))
            if max_lon >= 180.0:  # points stored at -180 are also at +180
                lows.append(rows - _SLACK_DEG)
                highs.append(rows + _SLACK_DEG)
        if not lows:
            return np.empty(0, dtype=np.int64)
        starts = np.searchsorted(self._keys, np.concatenate(lows), side="left")
        stops = np.searchsorted(self._keys, np.concatenate(highs), side="right")
        keep = stops > starts
        starts, stops = starts[keep], stops[keep]
        if not len(starts):
            return np.empty(0, dtype=np.int64)
        lengths = stops - starts
        offsets = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
        slots = np.unique(np.arange(int(lengths.sum())) + offsets)  # slices may overlap (the +-180 twin)
        exact = geodesy.in_boxes(self._lons_sorted[slots], self._lats_sorted[slots], boxes)
        return np.sort(self._order[slots[exact]])

    def within(self, lon, lat, radius_m) -> tuple[np.ndarray, np.ndarray]:
        """Positions of the points within `radius_m` metres of (lon, lat), ascending, and their distances in metres.

        Exact: the same points and distances as ``Geod.inv`` from the centre to every point.
        """
        lon, lat = geodesy._point(lon, lat)
        radius = geodesy._scalar(geodesy._floats(radius_m, "radius_m"), "radius_m")
        if radius < 0:
            raise ValueError(f"radius_m must be >= 0; got {radius!r}")
        positions = self.candidates(cap_boxes(lon, lat, radius))
        if not len(positions):
            return positions, np.empty(0)
        distances = np.asarray(geodesy._inv(lon, lat, self.lons[positions], self.lats[positions])[2])
        inside = distances <= radius
        return positions[inside], distances[inside]
