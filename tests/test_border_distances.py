"""Batched border distances agree with geodesy.nearest_on_line on random points."""

import numpy as np
import pytest
from shapely.geometry import LineString, MultiLineString

from app import geodesy
from app.border_distances import LineIndex, _ecef, chord_lower_bound, chord_upper_bound, distances_to_line


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


def test_chord_bounds_hold_from_a_metre_to_the_antipode():
    rng = np.random.default_rng(9)
    n = 200_000
    lons, lats = rng.uniform(-180, 180, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    far_lons, far_lats = geodesy.destination(lons, lats, rng.uniform(0, 360, n), np.exp(rng.uniform(0, np.log(2.0e7), n)))
    g = geodesy.distance_m(lons, lats, far_lons, far_lats)
    chord = np.linalg.norm(_ecef(lons, lats) - _ecef(far_lons, far_lats), axis=1)
    assert np.all(chord_lower_bound(chord) <= g)
    upper = chord_upper_bound(chord)
    assert np.all(upper >= g)
    assert np.isfinite(upper).sum() > n // 3  # chords up to a are bounded above, the rest are not
    at_1000_km = (g > 0.99e6) & (g < 1.01e6)
    assert np.all(upper[at_1000_km] - chord_lower_bound(chord[at_1000_km]) < 25.0)  # tight: the reason for them


def test_far_points_and_antipodes_of_the_line():
    rng = np.random.default_rng(10)
    line = _walk(rng, (127.0, 38.0), 150, (300, 3_000))
    xy = np.asarray(line.coords)[rng.integers(0, 150, 60)]
    antipodes_lon, antipodes_lat = geodesy._wrap(xy[:, 0] + 180.0 + rng.normal(0, 0.5, 60)), -xy[:, 1] + rng.normal(0, 0.5, 60)
    lons = np.r_[antipodes_lon, rng.uniform(-180, 180, 60)]
    lats = np.r_[np.clip(antipodes_lat, -90, 90), rng.uniform(-60, 60, 60)]
    _check(line, lons, lats)


def test_many_short_segments_seen_from_afar_need_the_ball_query():
    # 8 nearest nodes cover a few hundred metres of this line; at 500 to 1,500 km the candidates span kilometres
    rng = np.random.default_rng(11)
    lons, lats = geodesy.destination(100.0, 20.0, 30.0, np.arange(0, 300_000, 150.0))
    line = LineString(np.column_stack([lons, lats]))
    p_lons, p_lats = geodesy.destination(101.0, 21.0, rng.choice([120.0, 300.0], 60), rng.uniform(5e5, 1.5e6, 60))
    _check(line, p_lons, p_lats)


def test_a_large_batch_split_between_threads_matches_one_piece():
    rng = np.random.default_rng(12)
    index = LineIndex(_walk(rng, (126.0, 38.0), 200, (200, 2_000)))
    lons, lats = rng.uniform(120, 135, 30_000), rng.uniform(30, 45, 30_000)
    together = index.distances(lons, lats)
    apart = index._distances(lons, lats)
    for a, b in zip(together, apart):
        np.testing.assert_array_equal(a, b)


def test_a_part_of_zero_length_counts():
    line = MultiLineString([[(10.0, 10.0), (10.5, 10.0)], [(20.0, 20.0), (20.0, 20.0)]])
    d, x, y = distances_to_line([20.1], [20.0], line)
    assert d[0] == pytest.approx(geodesy.distance_m(20.1, 20.0, 20.0, 20.0), abs=1e-6)
    assert (x[0], y[0]) == (20.0, 20.0)


def test_a_matrix_measures_only_the_pairs_asked_and_an_update_equals_a_fresh_measure():
    from app.border_distances import BorderMatrix

    lines = {"a": LineString([(0, 0), (1, 1)]), "b": LineString([(10, 0), (10, 5)])}
    ids, lons, lats = ["p", "q", "r"], [0.5, 5.0, 9.0], [0.0, 1.0, 2.0]
    mask = np.array([[True, False], [True, True], [False, True]])
    matrix = BorderMatrix.measure(ids, lons, lats, lines, mask)
    assert (matrix.measured == mask).all()
    assert matrix.distance_m[0, 0] == pytest.approx(distances_to_line([0.5], [0.0], lines["a"])[0][0])
    # q moves, r leaves, s arrives, a line "c" is added and "a" no longer asked of p
    lines2 = {"b": lines["b"], "c": LineString([(0, 10), (5, 10)]), "a": lines["a"]}
    ids2, lons2, lats2 = ["q", "s", "p"], [5.5, 3.0, 0.5], [1.0, 3.0, 0.0]
    mask2 = np.array([[True, True, True], [False, True, True], [True, False, False]])
    updated = matrix.updated(ids2, lons2, lats2, lines2, mask2)
    fresh = BorderMatrix.measure(ids2, lons2, lats2, lines2, mask2)
    assert updated.line_ids == ("b", "c", "a") and (updated.measured == mask2).all()
    for name in ("distance_m", "nearest_lon", "nearest_lat"):
        assert np.allclose(getattr(updated, name), getattr(fresh, name), equal_nan=True), name
