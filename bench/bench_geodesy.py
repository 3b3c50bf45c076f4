"""Timings of app.geodesy on realistic sizes: ``python bench/bench_geodesy.py``."""

import time

import numpy as np
from shapely.geometry import LineString

from app.geodesy import destination, distance_m, nearest_on_line, range_ring, within_radius


def timed(label: str, call, repeat: int = 5) -> None:
    """Print the best wall time of `repeat` calls."""
    best = min(_once(call) for _ in range(repeat))
    print(f"{label:<55} {best * 1000:9.2f} ms")


def _once(call) -> float:
    """Wall time of one call in seconds."""
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def border(vertices: int, seed: int = 7) -> LineString:
    """A wiggly geodesic walk of `vertices` vertices, 0.2-2 km apart, like a land border."""
    rng = np.random.default_rng(seed)
    points, azimuth = [(126.0, 38.0)], 80.0
    for _ in range(vertices - 1):
        azimuth += rng.normal(0, 40)
        points.append(destination(*points[-1], azimuth, rng.uniform(200, 2_000)))
    return LineString(points)


def main() -> None:
    """Run every timing."""
    rng = np.random.default_rng(0)
    lons, lats = rng.uniform(-180, 180, 100_000), np.degrees(np.arcsin(rng.uniform(-1, 1, 100_000)))
    timed("distance_m, 100,000 pairs", lambda: distance_m(127.0, 37.5, lons, lats))
    timed("within_radius 150 km, 100,000 points", lambda: within_radius(127.0, 37.5, lons, lats, 150_000))
    line = border(3_000)
    for distance in (0.0, 50_000.0, 2_000_000.0):
        point = destination(127.0, 38.5, 150.0, distance)
        label = f"nearest_on_line, 3,000 vertices, {distance / 1000:,.0f} km away"
        timed(label, lambda p=point: nearest_on_line(*p, line))
    for radius in (1_000.0, 300_000.0, 5_000_000.0, 15_000_000.0, 19_990_000.0):
        timed(f"range_ring Seoul {radius / 1000:,.0f} km", lambda r=radius: range_ring(126.98, 37.57, r))
    timed("range_ring at the antimeridian near the pole, 3,000 km", lambda: range_ring(180.0, 80.0, 3_000_000))


if __name__ == "__main__":
    main()
