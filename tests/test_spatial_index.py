"""The spatial index gives exactly the brute-force Geod.inv answer, anywhere on Earth."""

import numpy as np
import pytest
from pyproj import Geod

from app.spatial_index import PointIndex

GEOD = Geod(ellps="WGS84")


def _random_points(rng, n):
    """Uniform on the sphere, plus points on the poles, on +-180 and on row edges."""
    lons = rng.uniform(-180, 180, n)
    lats = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    special_lons = np.array([180.0, -180.0, 180.0, -180.0, 0.0, 0.0, 179.9999999, -179.9999999, 12.0, -45.0])
    special_lats = np.array([0.0, 0.0, 89.9, -89.9, 90.0, -90.0, 10.0, 10.0, 89.0, -1.0])
    return np.concatenate([lons, special_lons]), np.concatenate([lats, special_lats])


def _random_centres(rng, n):
    """Random centres, with the poles, the antimeridian and the near-pole cases well represented."""
    lons = rng.uniform(-180, 180, n)
    lats = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    kind = rng.integers(0, 6, n)
    lats = np.where(kind == 0, rng.choice([90.0, -90.0], n), lats)
    lons = np.where(kind == 1, rng.choice([180.0, -180.0], n), lons)
    lons = np.where(kind == 2, rng.uniform(179.0, 180.0, n) * rng.choice([1, -1], n), lons)
    lats = np.where(kind == 3, rng.uniform(85.0, 90.0, n) * rng.choice([1, -1], n), lats)
    return lons, lats


def test_identical_to_brute_force_on_1000_random_queries():
    rng = np.random.default_rng(20261124)
    lons, lats = _random_points(rng, 20_000)
    index = PointIndex(lons, lats)
    centre_lons, centre_lats = _random_centres(rng, 1_000)
    radii = np.exp(rng.uniform(np.log(1_000.0), np.log(20_000_000.0), 1_000))
    radii[:50] = np.exp(rng.uniform(np.log(1_000.0), np.log(300_000.0), 50))  # plenty of small, sparse answers
    for lon, lat, radius in zip(centre_lons, centre_lats, radii):
        distances = GEOD.inv(np.full_like(lons, lon), np.full_like(lats, lat), lons, lats)[2]
        expected = np.flatnonzero(distances <= radius)
        positions, got = index.within(lon, lat, radius)
        np.testing.assert_array_equal(positions, expected, err_msg=f"centre ({lon}, {lat}), radius {radius}")
        np.testing.assert_array_equal(got, distances[expected])


def test_points_on_the_antimeridian_and_poles_are_found_from_either_side():
    index = PointIndex([180.0, -180.0, 0.0, 77.0], [0.0, 0.0, 90.0, -90.0])
    assert index.within(179.99, 0.0, 5_000)[0].tolist() == [0, 1]
    assert index.within(-179.99, 0.0, 5_000)[0].tolist() == [0, 1]
    assert index.within(-120.0, 89.99, 5_000)[0].tolist() == [2]
    assert index.within(33.0, -89.99, 5_000)[0].tolist() == [3]


def test_empty_index_and_zero_radius():
    assert PointIndex([], []).within(0, 0, 1_000)[0].tolist() == []
    assert PointIndex([10.0], [20.0]).within(10.0, 20.0, 0.0)[0].tolist() == [0]


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="lons"):
        PointIndex([181.0], [0.0])
    with pytest.raises(ValueError, match="same length"):
        PointIndex([1.0, 2.0], [0.0])
    with pytest.raises(ValueError, match="radius_m"):
        PointIndex([1.0], [0.0]).within(0, 0, -1)


def test_cap_boxes_hold_the_exact_bounding_boxes_of_geodesy():
    from app import geodesy
    from app.spatial_index import cap_boxes

    rng = np.random.default_rng(3)
    lons, lats = _random_centres(rng, 300)
    radii = np.exp(rng.uniform(np.log(1_000.0), np.log(20_000_000.0), 300))
    grid_lon, grid_lat = np.meshgrid(np.linspace(-180, 180, 721), np.linspace(-90, 90, 361))
    for lon, lat, radius in zip(lons, lats, radii):
        exact = geodesy.in_boxes(grid_lon, grid_lat, geodesy.bounding_boxes(lon, lat, radius))
        loose = geodesy.in_boxes(grid_lon, grid_lat, cap_boxes(lon, lat, radius))
        assert not (exact & ~loose).any(), (lon, lat, radius)
