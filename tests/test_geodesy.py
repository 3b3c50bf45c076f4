"""app.geodesy against published WGS84 values, brute force and invariants (property tests are derandomised)."""

import math

import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pyproj import Geod
from shapely.geometry import LineString, MultiLineString, Point, Polygon

from app.geodesy import (
    EARTH_HALF_CIRCUMFERENCE_M,
    annulus,
    bounding_boxes,
    destination,
    distance_m,
    in_boxes,
    nearest_on_line,
    range_ring,
    within_radius,
)

GEOD = Geod(ellps="WGS84")
H = EARTH_HALF_CIRCUMFERENCE_M


def checks(n: int):
    """Deterministic hypothesis settings with `n` examples and no deadline."""
    return settings(max_examples=n, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


def wrap(lon):
    """Longitude reduced to [-180, 180)."""
    return (np.asarray(lon) + 180.0) % 360.0 - 180.0


def inv(lon, lat, lons, lats):
    """Brute-force distances in metres from one point to many, straight from Geod.inv."""
    lons, lats = np.atleast_1d(np.asarray(lons, dtype=float)), np.atleast_1d(np.asarray(lats, dtype=float))
    return GEOD.inv(np.full(lons.shape, float(lon)), np.full(lons.shape, float(lat)), lons, lats)[2]


def fwd(lon, lat, azimuths, distances):
    """Destinations from one point, straight from Geod.fwd."""
    azimuths = np.atleast_1d(np.asarray(azimuths, dtype=float))
    distances = np.broadcast_to(np.asarray(distances, dtype=float), azimuths.shape).copy()
    n = azimuths.shape
    lons, lats, _ = GEOD.fwd(np.full(n, float(lon)), np.full(n, float(lat)), azimuths, distances)
    return lons, lats


# --- known answers ----------------------------------------------------------------------------

# Karney's GeodTest cases as shipped in GeographicLib's geodtest.c (WGS84):
# lat1, lon1, azi1, lat2, lon2 (unrolled), azi2, s12.
GEODTEST = [
    (35.60777, -139.44815, 111.098748429560326, -11.17491, -69.95921, 129.289270889708762, 8935244.5604818305),
    (55.52454, 106.05087, 22.020059880982801, 77.03196, 197.18234, 109.112041110671519, 4105086.1713924406),
    (-21.97856, 142.59065, -32.44456876433189, 41.84138, 98.56635, -41.84359951440466, 8394328.894657671),
    (-66.99028, 112.2363, 173.73491240878403, -12.70631, 285.90344, 2.512956620913668, 11150344.2312080241),
    (-17.42761, 173.34268, -159.033557661192928, -15.84784, 5.93557, -20.787484651536988, 16076603.1631180673),
    (32.84994, 48.28919, 150.492927788121982, -56.28556, 202.29132, 48.113449399816759, 16727068.9438164461),
    (6.96833, 52.74123, 92.581585386317712, -7.39675, 206.17291, 90.721692165923907, 17102477.2496958388),
    (-50.56724, -16.30485, -105.439679907590164, -33.56571, -94.97412, -47.348547835650331, 6455670.5118668696),
    (-87.85331, 85.66836, -65.120313040242748, 66.48646, 16.09921, -4.888658719272296, 17286615.3147144645),
    (-19.79938, -174.47484, 71.167275780171533, -11.99349, -154.35109, 65.589099775199228, 2319004.8601169389),
    (-25.72959, -144.90758, -153.647468693117198, -57.70581, -269.17879, -48.343983158876487, 9413446.7452453107),
    (-29.47124, 95.14681, -163.779130441688382, -27.46601, -69.15955, -15.909335945554969, 13487015.8381145492),
]


@pytest.mark.parametrize("lat1, lon1, azi1, lat2, lon2, azi2, s12", GEODTEST)
def test_geodtest_inverse(lat1, lon1, azi1, lat2, lon2, azi2, s12):
    assert distance_m(lon1, lat1, float(wrap(lon2)), lat2) == pytest.approx(s12, abs=1e-6)


@pytest.mark.parametrize("lat1, lon1, azi1, lat2, lon2, azi2, s12", GEODTEST)
def test_geodtest_direct(lat1, lon1, azi1, lat2, lon2, azi2, s12):
    lon, lat = destination(lon1, lat1, azi1, s12)
    assert lat == pytest.approx(lat2, abs=1e-11)
    assert float(wrap(lon - lon2)) == pytest.approx(0.0, abs=1e-11)
    assert -180.0 <= lon <= 180.0


@pytest.mark.parametrize(
    "name, lon1, lat1, lon2, lat2, expected_m, tolerance_m",
    [
        ("1 degree of the equator (a * pi / 180)", 0, 0, 1, 0, 111_319.490793, 1e-6),
        ("meridian quadrant", 0, 0, 0, 90, 10_001_965.729, 1e-3),
        ("half circumference pole to pole", 0, 90, 0, -90, 20_003_931.459, 1e-3),
        ("equatorial antipodes go over a pole", 0, 0, 180, 0, 20_003_931.459, 1e-3),
        ("JFK to LHR, GeodSolve manual", -73.8, 40.6, -0.5, 51.6, 5_551_759.400319, 1e-6),
        ("JFK to CDG, GeodSolve0", -73.8, 40.6, 2.55, 49.01666667, 5_853_226, 0.5),
        ("Wellington to Salamanca, GeographicLib docs", 174.81, -41.32, -5.50, 40.96, 19_959_679.267, 1e-3),
        ("near antipodal, GeodSolve6", 0, 88.202499451857, 179.981022032992859592,
         -88.202499451857, 20_003_898.214, 5e-4),
        ("near antipodal, GeodSolve6", 0, 89.262080389218, 179.992207982775375662,
         -89.262080389218, 20_003_925.854, 5e-4),
        ("near antipodal, GeodSolve9", 0, 56.320923501171, 179.664747671772880215,
         -56.320923501171, 19_993_558.287, 5e-4),
        ("near antipodal, GeodSolve10", 0, 52.784459512564, 179.634407464943777557, -52.784459512563990912,
         19_991_596.095, 5e-4),
        ("near antipodal, GeodSolve11", 0, 48.522876735459, 179.599720456223079643, -48.52287673545898293,
         19_989_144.774, 5e-4),
        ("same meridian at +-180", 180, 10, -180, 10, 0.0, 1e-9),
        ("one pole, two longitudes", 17, 90, -123, 90, 0.0, 1e-9),
    ],
)
def test_published_distances(name, lon1, lat1, lon2, lat2, expected_m, tolerance_m):
    assert distance_m(lon1, lat1, lon2, lat2) == pytest.approx(expected_m, abs=tolerance_m), name


def test_half_circumference_constant():
    assert EARTH_HALF_CIRCUMFERENCE_M == pytest.approx(2 * 10_001_965.729, abs=1e-3)
    assert distance_m(0, 90, 0, -90) == pytest.approx(EARTH_HALF_CIRCUMFERENCE_M, abs=1e-6)


def test_perth_direct_published():
    lon, lat = destination(115.74, -32.06, 225, 20_000e3)
    assert (round(lat, 8), round(lon, 8)) == (32.11195529, -63.95925278)


def haversine_m(lon1, lat1, lon2, lat2, radius=6_371_008.8):
    """The spherical formula the module must not use: here only to show how wrong it is."""
    p1, p2, dl = math.radians(lat1), math.radians(lat2), math.radians(lon2 - lon1)
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * radius * math.asin(math.sqrt(h))


@pytest.mark.parametrize(
    "lon1, lat1, lon2, lat2, published_m, haversine_error_over_m",
    [
        (0, 0, 1, 0, 111_319.490793, 120),  # a degree of equator: the sphere is 124 m short
        (0, 0, 0, 1, 110_574.389, 600),  # a degree of meridian at the equator: 621 m long
        (0, 0, 0, 90, 10_001_965.729, 5_000),  # quadrant: ~6.7 km long
        (-73.8, 40.6, -0.5, 51.6, 5_551_759.400319, 2_000),  # JFK-LHR: ~2.5 km long
    ],
)
def test_haversine_is_not_good_enough(lon1, lat1, lon2, lat2, published_m, haversine_error_over_m):
    assert abs(haversine_m(lon1, lat1, lon2, lat2) - published_m) > haversine_error_over_m
    assert distance_m(lon1, lat1, lon2, lat2) == pytest.approx(published_m, abs=1e-3)


def test_distance_broadcasts_and_returns_floats_for_scalars():
    assert isinstance(distance_m(0, 0, 1, 0), float)
    d = distance_m(0, 0, np.array([[1.0, 2.0], [3.0, 4.0]]), 0)
    assert d.shape == (2, 2)
    assert d[0, 0] == pytest.approx(111_319.490793, abs=1e-6)
    assert distance_m([], [], [], []).shape == (0,)
    lon, lat = destination(0, 0, [0, 90, 180], 1000.0)
    assert lon.shape == lat.shape == (3,)
    assert isinstance(destination(0, 0, 0, 1000.0)[0], float)


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: distance_m(0, 91, 0, 0), "lat1"),
        (lambda: distance_m(0, 0, 180.5, 0), "lon2"),
        (lambda: distance_m(float("nan"), 0, 0, 0), "lon1"),
        (lambda: distance_m(0, 0, 0, [0, float("inf")]), "lat2"),
        (lambda: distance_m("x", 0, 0, 0), "lon1"),
        (lambda: destination(0, -90.5, 0, 1), "lat"),
        (lambda: destination(0, 0, float("nan"), 1), "azimuth_deg"),
        (lambda: destination(0, 0, 0, float("inf")), "distance_m"),
        (lambda: range_ring(0, 0, 0), "radius_m"),
        (lambda: range_ring(0, 0, -5), "radius_m"),
        (lambda: range_ring(0, 0, H + 1), "radius_m"),
        (lambda: range_ring(0, 0, float("nan")), "radius_m"),
        (lambda: range_ring(200, 0, 1000), "lon"),
        (lambda: range_ring(0, 0, 1000, vertices=3), "vertices"),
        (lambda: annulus(0, 0, 2000, 1000), "inner_m"),
        (lambda: annulus(0, 0, 0, 1000), "inner_m"),
        (lambda: annulus(0, 0, 10, H * 2), "outer_m"),
        (lambda: bounding_boxes(0, 0, -1), "radius_m"),
        (lambda: within_radius(0, 0, [0, 190], [0, 0], 10), "lons"),
        (lambda: within_radius(0, 0, [0], [95], 10), "lats"),
        (lambda: in_boxes([0], [float("nan")], []), "lats"),
        (lambda: nearest_on_line(0, 0, Point(0, 0)), "line"),
        (lambda: nearest_on_line(0, 0, LineString()), "line"),
        (lambda: nearest_on_line(0, 0, LineString([(0, 0), (0, 95)])), "line latitudes"),
        (lambda: nearest_on_line(0, 100, LineString([(0, 0), (1, 0)])), "lat"),
    ],
)
def test_invalid_inputs_raise_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


# --- hypothesis strategies --------------------------------------------------------------------

lons = st.floats(-180, 180)
lats = st.floats(-90, 90)
near_pole_lats = st.floats(80, 90).flatmap(lambda v: st.sampled_from([v, -v]))
edge_lons = st.sampled_from([-180.0, 180.0, 179.999, -179.999, 179.5, -179.5])
centres = st.one_of(
    st.tuples(lons, lats),
    st.tuples(lons, st.sampled_from([90.0, -90.0])),
    st.tuples(edge_lons, lats),
    st.tuples(lons, near_pole_lats),
    st.tuples(edge_lons, near_pole_lats),
)


# --- distance invariants ----------------------------------------------------------------------


@checks(60)
@given(lons, lats, lons, lats)
def test_distance_is_symmetric(lon1, lat1, lon2, lat2):
    assert distance_m(lon1, lat1, lon2, lat2) == pytest.approx(distance_m(lon2, lat2, lon1, lat1), abs=1e-6)
    assert 0.0 <= distance_m(lon1, lat1, lon2, lat2) <= H + 1e-6


@checks(40)
@given(lats, lons, lats)
def test_antimeridian_is_one_meridian(lat, lon2, lat2):
    assert distance_m(180, lat, -180, lat) == pytest.approx(0.0, abs=1e-6)
    assert distance_m(180, lat, lon2, lat2) == pytest.approx(distance_m(-180, lat, lon2, lat2), abs=1e-6)
    # a short hop across +-180 is short, not most of the way round the world
    assert distance_m(179.9, lat, -179.9, lat) == pytest.approx(distance_m(-0.1, lat, 0.1, lat), abs=1e-6)


@checks(40)
@given(lons, lons, lons, lats)
def test_every_longitude_at_a_pole_is_one_point(lon_a, lon_b, lon, lat):
    for pole in (90.0, -90.0):
        assert distance_m(lon_a, pole, lon_b, pole) == pytest.approx(0.0, abs=1e-6)
        assert distance_m(lon, lat, lon_a, pole) == pytest.approx(distance_m(lon, lat, lon_b, pole), abs=1e-6)
    assert distance_m(0.1, 89.9, 179.9, 89.9) < 25_000  # over the pole, not round a parallel


@checks(60)
@given(lons, lats, st.floats(0, 360), st.floats(0, 19_000_000))
def test_destination_round_trip(lon, lat, azimuth, distance):
    lon2, lat2 = destination(lon, lat, azimuth, distance)
    assert -180.0 <= lon2 <= 180.0 and -90.0 <= lat2 <= 90.0
    assert distance_m(lon, lat, lon2, lat2) == pytest.approx(distance, abs=1e-6)


# --- range rings ------------------------------------------------------------------------------

RING_RADII_M = [1_000.0, 300_000.0, 5_000_000.0, 15_000_000.0, 20_000_000.0]


def parts(geometry):
    """The polygons of a Polygon or MultiPolygon."""
    return list(getattr(geometry, "geoms", [geometry]))


def check_ring(geometry, lon, lat, radius, rng):
    """Every property a range ring must have; returns the largest vertex error in metres (non-cut, cut)."""
    assert geometry.is_valid and not geometry.is_empty
    assert geometry.geom_type in ("Polygon", "MultiPolygon")
    assert all(shapely.is_ccw(p.exterior) for p in parts(geometry))
    assert all(not shapely.is_ccw(ring) for p in parts(geometry) for ring in p.interiors)
    xy = shapely.get_coordinates(geometry)
    assert (np.abs(xy[:, 0]) <= 180).all() and (np.abs(xy[:, 1]) <= 90).all()
    assert shapely.covers(geometry, Point(lon, lat))
    # every vertex is on the ring: those from the forward problem to 1 mm, those cut at +-180 to 1 m;
    # only the pole-closing vertices (lat +-90) are exempt
    ring = np.abs(xy[:, 1]) < 90
    error = np.abs(inv(lon, lat, xy[ring, 0], xy[ring, 1]) - radius)
    cut = np.abs(xy[ring, 0]) == 180
    assert (error[~cut] <= 1e-3).all(), error[~cut].max()
    assert (error[cut] <= 1.0).all(), error[cut].max()
    # a pole is inside iff it is within the radius
    for pole in (90.0, -90.0):
        pole_m = inv(lon, lat, 0.0, pole)[0]
        if abs(pole_m - radius) > 1.0:
            assert shapely.covers(geometry, Point(rng.uniform(-180, 180), pole)) == (pole_m <= radius)
    # points at 0.99 r are inside, at 1.01 r outside (measured again: past ~19,970 km a forward
    # geodesic may have crossed the cut locus, so its end may be nearer than it travelled)
    azimuths = rng.uniform(0, 360, 64)
    for factor in (0.99, 1.01):
        if factor * radius >= H:
            continue
        x, y = fwd(lon, lat, azimuths, factor * radius)
        d = inv(lon, lat, x, y)
        clear = np.abs(d - radius) > 0.005 * radius
        assert (shapely.covers(geometry, shapely.points(x, y))[clear] == (d <= radius)[clear]).all()
    return error[~cut].max(initial=0.0), error[cut].max(initial=0.0)


@pytest.mark.parametrize("radius", RING_RADII_M)
@checks(80)
@given(centre=centres, seed=st.integers(0, 2**32 - 1))
def test_range_ring_properties(radius, centre, seed):
    lon, lat = centre
    check_ring(range_ring(lon, lat, radius), lon, lat, radius, np.random.default_rng(seed))


@pytest.mark.parametrize(
    "lon, lat, radius",
    [
        (0, 0, 10_001_965.729312724),  # through both poles: a hemisphere
        (10, 0, 10_001_965.729312724),
        (0, 45, 5_017_021.351334979),  # through the north pole
        (-180, -45, 5_017_021.351334979),  # through the south pole, centred on the antimeridian
        (0, 0, 19_971_000.0),  # just past pi * b: the first geodesics stop being shortest
        (33, 10, 19_990_000.0),
        (0, 0, H - 1.0),  # the world minus a lens of a metre around the antipode
        (180, 90, 500_000.0),
        (0, 89.9999, 1.0),
        (179.9999, -89.9999, 12_000_000.0),
    ],
)
def test_range_ring_special_cases(lon, lat, radius):
    check_ring(range_ring(lon, lat, radius), lon, lat, radius, np.random.default_rng(0))


def test_range_ring_shapes():
    assert range_ring(0, 0, H).equals(Polygon([(-180, -90), (180, -90), (180, 90), (-180, 90)]))
    icbm = range_ring(127.0, 39.0, 15_000_000)  # from Korea: the world minus a cap around the antipode
    antipode = (-53.0, -39.0)
    assert icbm.geom_type == "Polygon" and len(icbm.interiors) == 1
    assert not icbm.covers(Point(antipode)) and icbm.covers(Point(0, 90)) and icbm.covers(Point(0, -90))
    split = range_ring(179.5, 10, 300_000)
    assert split.geom_type == "MultiPolygon" and len(split.geoms) == 2
    assert sorted(g.bounds[0] for g in split.geoms)[0] == -180 and max(g.bounds[2] for g in split.geoms) == 180
    cap = range_ring(0, 89, 500_000)
    assert cap.geom_type == "Polygon" and cap.bounds[0] == -180 and cap.bounds[2] == 180 and cap.bounds[3] == 90
    assert len(shapely.get_coordinates(range_ring(0, 0, 1000, vertices=12))) >= 13


def test_range_ring_cut_vertices_are_bisected_not_interpolated():
    lon, lat, radius = 179.0, 60.0, 2_000_000.0
    xy = shapely.get_coordinates(range_ring(lon, lat, radius))
    cut = xy[np.abs(xy[:, 0]) == 180]
    assert len(cut) >= 4  # two crossings, each on both sides
    assert np.abs(inv(lon, lat, cut[:, 0], cut[:, 1]) - radius).max() < 1e-3


@checks(40)
@given(centre=centres, radii=st.tuples(st.floats(1_000, 19_000_000), st.floats(1_000, 19_000_000)))
def test_annulus_is_ring_minus_hole(centre, radii):
    inner, outer = sorted(radii)
    assume(outer - inner > 0.02 * outer)
    lon, lat = centre
    shape = annulus(lon, lat, inner, outer)
    assert shape.is_valid and all(shapely.is_ccw(p.exterior) for p in parts(shape))
    assert not shape.covers(Point(lon, lat)) or inner == 0
    azimuths = np.linspace(0, 360, 24, endpoint=False)
    for distance, inside in ((0.5 * inner, False), ((inner + outer) / 2, True), (1.01 * outer, False)):
        if distance >= H:
            continue
        x, y = fwd(lon, lat, azimuths, distance)
        d = inv(lon, lat, x, y)
        expected = (d >= inner) & (d <= outer)
        clear = (np.abs(d - inner) > 0.01 * inner) & (np.abs(d - outer) > 0.005 * outer)
        assert (shapely.covers(shape, shapely.points(x, y))[clear] == expected[clear]).all(), inside


# --- bounding boxes and radius queries --------------------------------------------------------


@checks(150)
@given(centre=centres, radius=st.floats(0, 21_000_000), seed=st.integers(0, 2**32 - 1))
def test_bounding_boxes_never_miss(centre, radius, seed):
    lon, lat = centre
    rng = np.random.default_rng(seed)
    boxes = bounding_boxes(lon, lat, radius)
    assert all(-180 <= b[0] <= b[2] <= 180 and -90 <= b[1] <= b[3] <= 90 for b in boxes)
    azimuths = np.r_[rng.uniform(0, 360, 300), np.arange(0, 360, 0.25)]
    distances = np.r_[rng.uniform(0, 1, 300) * radius, np.full(1440, radius)]
    x, y = fwd(lon, lat, azimuths, distances)
    assert in_boxes(x, y, boxes).all()


@checks(40)
@given(lon=lons, lat=st.floats(-80, 80), radius=st.floats(1_000, 3_000_000))
def test_bounding_boxes_are_tight(lon, lat, radius):
    assume(inv(lon, lat, 0, 90)[0] > radius and inv(lon, lat, 0, -90)[0] > radius)
    boxes = bounding_boxes(lon, lat, radius)
    x, y = fwd(lon, lat, np.linspace(0, 360, 14_401), radius)
    assert min(b[1] for b in boxes) == pytest.approx(y.min(), abs=2e-6)
    assert max(b[3] for b in boxes) == pytest.approx(y.max(), abs=2e-6)
    width = sum(b[2] - b[0] for b in boxes) / 2
    assert width == pytest.approx(np.abs(wrap(x - lon)).max(), abs=2e-6)


def test_bounding_boxes_shapes():
    assert len(bounding_boxes(179.5, 0, 111_319.49)) == 2
    assert bounding_boxes(0, 89.5, 100_000) == [(-180.0, pytest.approx(88.6047, abs=1e-4), 180.0, 90.0)]
    assert bounding_boxes(0, -89.5, 100_000)[0][1] == -90.0
    assert bounding_boxes(0, 0, 15_000_000) == [(-180.0, -90.0, 180.0, 90.0)]
    assert in_boxes([180.0, -180.0], [0.0, 0.0], [(170.0, -1.0, 180.0, 1.0)]).tolist() == [True, True]
    assert in_boxes([-180.0], [0.0], [(-180.0, -1.0, -170.0, 1.0)]).tolist() == [True]
    assert in_boxes([0.0], [0.0], []).tolist() == [False]


def random_points(rng, lon, lat, radius, n):
    """Uniform points on the globe, points hugging the circle, and points near +-180 and the poles."""
    z = rng.uniform(-1, 1, n)
    x0, y0 = rng.uniform(-180, 180, n), np.degrees(np.arcsin(z))
    x1, y1 = fwd(lon, lat, rng.uniform(0, 360, n), radius * rng.uniform(0.999, 1.001, n))
    x2, y2 = rng.choice([-180.0, 180.0, 179.9999, -179.9999], n), rng.uniform(-90, 90, n)
    x3, y3 = rng.uniform(-180, 180, n), rng.choice([-1.0, 1.0], n) * rng.uniform(89, 90, n)
    return np.r_[x0, x1, x2, x3], np.r_[y0, y1, y2, y3]


@checks(100)
@given(centre=centres, radius=st.floats(0, 20_500_000), seed=st.integers(0, 2**32 - 1))
def test_within_radius_matches_brute_force(centre, radius, seed):
    lon, lat = centre
    x, y = random_points(np.random.default_rng(seed), lon, lat, min(radius, H), 200)
    mask, distances = within_radius(lon, lat, x, y, radius)
    brute = inv(lon, lat, x, y)
    assert (mask == (brute <= radius)).all()
    computed = ~np.isnan(distances)
    assert np.allclose(distances[computed], brute[computed], atol=1e-6, rtol=0)
    assert computed[mask].all()


def test_within_radius_shapes_and_seoul():
    mask, d = within_radius(126.98, 37.57, np.array([], dtype=float), np.array([], dtype=float), 150_000)
    assert mask.shape == d.shape == (0,)
    mask, d = within_radius(126.98, 37.57, [127.0, 150.0], [37.6, 0.0], 150_000)
    assert mask.tolist() == [True, False] and np.isnan(d[1])


# --- nearest point on a line ------------------------------------------------------------------


def brute_nearest(lon, lat, line, coarse_m=1_000.0):
    """Distance from a point to a line by dense sampling of each geodesic segment: 1 km, then 1 m near the minimum."""
    best = math.inf
    for part in getattr(line, "geoms", [line]):
        xy = np.asarray(part.coords)
        for (x1, y1), (x2, y2) in zip(xy[:-1], xy[1:]):
            azimuth, _, length = GEOD.inv(x1, y1, x2, y2)
            if length == 0:
                best = min(best, inv(lon, lat, x1, y1)[0])
                continue
            s = np.r_[np.arange(0.0, length, coarse_m), length]
            d = inv(lon, lat, *fwd(x1, y1, np.full(s.shape, azimuth), s))
            near = s[d <= d.min() + coarse_m]  # the minimum lies within half a step of these
            fine = np.arange(max(near.min() - coarse_m, 0.0), min(near.max() + coarse_m, length), 1.0)
            fine = np.r_[fine, min(near.max() + coarse_m, length)]
            best = min(best, d.min(), inv(lon, lat, *fwd(x1, y1, np.full(fine.shape, azimuth), fine)).min())
    return best


def polyline(rng, start, vertices, step_m):
    """A random geodesic walk from `start`."""
    points, azimuth = [start], rng.uniform(0, 360)
    for _ in range(vertices - 1):
        azimuth += rng.normal(0, 40)
        points.append(destination(*points[-1], azimuth, rng.uniform(*step_m)))
    return points


line_starts = st.one_of(
    st.tuples(lons, st.floats(-70, 70)),
    st.tuples(st.sampled_from([179.8, -179.8, 180.0]), st.floats(-70, 70)),  # crossing +-180
    st.tuples(lons, near_pole_lats),  # near and over the poles
)


@checks(60)
@given(start=line_starts, vertices=st.integers(2, 12), multi=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_nearest_on_line_matches_dense_sampling(start, vertices, multi, seed):
    rng = np.random.default_rng(seed)
    points = polyline(rng, start, vertices, (1_000, 400_000))
    line = LineString(points)
    if multi:
        line = MultiLineString([points, polyline(rng, points[-1], 3, (1_000, 200_000))])
    # a query point up to 2,000 km from a random point of the line
    anchor = points[rng.integers(len(points))]
    lon, lat = destination(*anchor, rng.uniform(0, 360), rng.uniform(0, 2_000_000))
    d, (x, y) = nearest_on_line(lon, lat, line)
    brute = brute_nearest(lon, lat, line)
    assert d <= brute + 1e-3  # never worse than sampling
    assert brute - d <= 10.0  # and within 10 m of the exact value
    assert distance_m(lon, lat, x, y) == pytest.approx(d, abs=1e-3)
    assert -180 <= x <= 180 and -90 <= y <= 90


def test_nearest_on_line_known_answers():
    d, (x, y) = nearest_on_line(0.5, 1, LineString([(0, 0), (1, 0)]))
    assert d == pytest.approx(distance_m(0.5, 1, 0.5, 0), abs=1e-3) and (x, y) == pytest.approx((0.5, 0), abs=1e-9)
    d, (x, y) = nearest_on_line(180, 1, LineString([(179.5, 0), (-179.5, 0)]))  # across +-180
    assert d == pytest.approx(distance_m(180, 1, 180, 0), abs=1e-3) and abs(x) == pytest.approx(180, abs=1e-9)
    d, (x, y) = nearest_on_line(3, 0, LineString([(0, 0), (1, 0)]))  # beyond the end: the end vertex
    assert (x, y) == (1.0, 0.0) and d == pytest.approx(2 * 111_319.490793, abs=1e-3)
    over_pole = LineString([(0, 89.5), (180, 89.5)])  # the geodesic runs over the pole, not along the parallel
    d, (x, y) = nearest_on_line(30, 89.9, over_pole)
    assert y > 89.9 and d == pytest.approx(brute_nearest(30, 89.9, over_pole, coarse_m=10.0), abs=1e-2)
    d, _ = nearest_on_line(0, 0, LineString([(0, 0), (0, 0)]))
    assert d == 0.0


def test_nearest_on_line_long_border():
    rng = np.random.default_rng(7)
    border = LineString(polyline(rng, (126.0, 38.0), 3_000, (200, 2_000)))
    for distance in (0.0, 25_000.0, 2_000_000.0):
        lon, lat = destination(127.0, 38.5, 150.0, distance)
        d, _ = nearest_on_line(lon, lat, border)
        brute = brute_nearest(lon, lat, border, coarse_m=100.0)
        assert -1e-6 <= brute - d <= 10.0
