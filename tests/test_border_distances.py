"""Batched border distances agree with geodesy.nearest_on_line on random points."""

import numpy as np
import pytest
from shapely.geometry import LineString, MultiLineString

from app import geodesy
from app.border_distances import LineIndex, distances_to_line


def _walk(rng, start, vertices, step_m):
    """A wiggly geodesic walk like a land border, with some long straight stretches."""
    points, azimuth = [start], rng.uniform(0, 360)
    for _ in range(vertices - 1):
        azimuth += rng.normal(0, 40)
        step = rng.choice([rng.uniform(*step_m), rng.uniform(5_000, 40_000)], p=[0.9, 0.1])
        points.append(geodesy.destination(*points[-1], azimuth, step))
    return LineString(points)


def _check(line, lons, lats, tolerance_m=0.01):
    d, x, y = distances_to_line(lons, lats, line)
    for lon, lat, got, nx, ny in zip(lons, lats, d, x, y):
        expected, _ = geodesy.nearest_on_line(lon, lat, line)
        assert got == pytest.approx(expected, abs=tolerance_m), (lon, lat)
        assert geodesy.distance_m(lon, lat, nx, ny) == pytest.approx(got, abs=tolerance_m)


def test_agrees_with_nearest_on_line_near_and_far():
    rng = np.random.default_rng(6)
    line = _walk(rng, (126.0, 38.0), 400, (200, 2_000))
    near_lons, near_lats = rng.uniform(124, 131, 300), rng.uniform(35, 41, 300)
    far_lons = rng.uniform(-180, 180, 100)
    far_lats = np.degrees(np.arcsin(rng.uniform(-1, 1, 100)))
    _check(line, np.r_[near_lons, far_lons], np.r_[near_lats, far_lats])


def test_points_on_the_line_and_at_its_vertices():
    rng = np.random.default_rng(7)
    line = _walk(rng, (10.0, 50.0), 100, (100, 1_000))
    xy = np.asarray(line.coords)
    d, _, _ = distances_to_line(xy[:, 0], xy[:, 1], line)
    assert np.all(d < 1e-6)
    mid_lon, mid_lat = geodesy.destination(*xy[3], geodesy._inv(*xy[3], *xy[4])[0][0], 10.0)
    assert distances_to_line([mid_lon], [mid_lat], line)[0][0] < 1e-6


def test_across_the_antimeridian_near_a_pole_and_multipart():
    rng = np.random.default_rng(8)
    line = MultiLineString([
        [(179.0, 70.0), (-179.5, 70.5), (-178.0, 71.0)],
        [(0.0, 89.0), (90.0, 89.0), (180.0, 89.0)],
    ])
    lons = np.r_[rng.uniform(-180, 180, 150), rng.uniform(170, 180, 50)]
    lats = np.r_[rng.uniform(60, 90, 150), rng.uniform(60, 80, 50)]
    _check(line, lons, lats)


def test_empty_input_and_single_vertex_line():
    assert len(LineIndex(LineString([(0, 0), (1, 0)])).distances([], [])[0]) == 0
    with pytest.raises(ValueError):
        distances_to_line([0.0], [100.0], LineString([(0, 0), (1, 0)]))
