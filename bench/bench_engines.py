"""Both engines side by side: the GeoPackage and PostGIS, at 10^3 and 10^5 sites.

``python bench/bench_engines.py`` (``--sizes 1000`` for a short run). A benchmark, not a test: it prints one table of
medians with the PostGIS/GeoPackage ratio and asserts nothing. It starts a throwaway PostgreSQL cluster (as the
tests do). For each size it imports the same synthetic CSV (bench_import's) into a live copy of the bundled
GeoPackage and into a PostGIS database made by `db init` from the bundled one (the import row: the whole
`import_file`), then measures on each engine:

- radius query in-process: within 50 km of a random point in the sites' area, sorted by distance, first 100, as
  GET /sites selects it from the snapshot (and through pandas' `find_sites`), and on the same database `ST_DWithin`
  + `ST_Distance` ordered, first 100, with the count;
- radius query over HTTP: the same as GET /sites on `missile-sites serve --workers 2`, one request at a time;
- writes per second: 8 threads POSTing new sites for a few seconds, and 8 threads calling the store's write directly
  (the engine's ceiling, without HTTP or the wait for the worker's snapshot);
- commit to every worker: from sending a POST until each worker's /health reports its change (an upper bound);
- start-up: from starting the service until /health answers; RSS: each worker's resident memory after the runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import httpx  # noqa: E402
import psycopg  # noqa: E402

from app import edits, store  # noqa: E402
from app.catalogue import Catalogue  # noqa: E402
from app.queries import Centre
from app.importer import import_file  # noqa: E402
from app.models import SiteCreate  # noqa: E402
from app.store_gpkg import GeoPackageStore  # noqa: E402
from app.store_pg import PostGISStore, init_database  # noqa: E402
from bench_import import SOURCE, write_csv  # noqa: E402
from tests.pg import make_cluster  # noqa: E402
from tests.service import EDITOR, Service  # noqa: E402

BUNDLED = REPO / "geodata" / "catalogue.gpkg"
RADIUS_KM = 50.0
AREA = ((124.5, 130.5), (37.8, 42.9))  # bench_import's sites lie here
QUERIES = 40
WRITE_SECONDS = 6.0
WRITERS = 8
VISIBILITY_WRITES = 10


def centres(count: int, seed: int = 5) -> list[tuple[float, float]]:
    """Random query centres in the sites' area."""
    generator = random.Random(seed)
    return [(generator.uniform(*AREA[0]), generator.uniform(*AREA[1])) for _ in range(count)]


def median_ms(call, points) -> float:
    """The median milliseconds of `call(lon, lat)` over the points (after one warm-up call)."""
    call(*points[0])
    times = []
    for lon, lat in points:
        started = time.perf_counter()
        call(lon, lat)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def snapshot_radius_ms(catalogue: Catalogue) -> float:
    """The in-process radius query on a snapshot, as GET /sites selects its page (the answer path)."""
    answers = catalogue.answers
    return median_ms(lambda lon, lat: answers.select(centre=Centre(lon, lat), within_km=RADIUS_KM, sort="distance",
                                                     limit=100), centres(QUERIES))


def find_sites_ms(catalogue: Catalogue) -> float:
    """The same query through `find_sites` (pandas: what filters and exports use)."""
    return median_ms(lambda lon, lat: catalogue.find_sites(centre=Centre(lon, lat), within_km=RADIUS_KM,
                                                           sort="distance", limit=100), centres(QUERIES))


def _per_second(writer, done: list[int], stop: threading.Event) -> float:
    """Run WRITERS threads of `writer(number)` for WRITE_SECONDS; the writes they report in `done`, per second."""
    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(WRITE_SECONDS)
    stop.set()
    for thread in threads:
        thread.join()
    return sum(done) / (time.perf_counter() - started)


def store_writes_per_second(database, *, one_at_a_time: bool) -> float:
    """Created sites per second with WRITERS threads calling the store's write directly (no HTTP, no wait for a
    snapshot): the engine's own ceiling. `one_at_a_time` holds a lock round each write, as the service's single writer
    thread does for the GeoPackage (whose writer connection is not shared between threads)."""
    done, stop, lock = [], threading.Event(), threading.Lock() if one_at_a_time else contextlib.nullcontext()

    def writer(number: int) -> None:
        count = 0
        while not stop.is_set():
            body = SiteCreate(name=f"Store write {number} {count}", country="PRK", facility_type="missile_base",
                              lon=127.0, lat=40.0, coord_confidence="approximate", coord_source_id=SOURCE,
                              source_ids=[SOURCE])
            with lock:
                database.write(lambda connection: edits.create_site(connection, body, "bench"))
            count += 1
        done.append(count)

    return _per_second(writer, done, stop)


def st_dwithin_ms(url: str) -> float:
    """The same radius query in SQL on the database: ST_DWithin on the GiST index, ordered by ST_Distance."""
    sql = ("SELECT id, ST_Distance(geom, c) AS d, count(*) OVER () FROM sites,"
           " (SELECT ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography AS c) AS centre"
           " WHERE retired_at IS NULL AND ST_DWithin(geom, c, %s) ORDER BY d LIMIT 100")
    with psycopg.connect(url, autocommit=True) as connection:
        return median_ms(lambda lon, lat: connection.execute(sql, (lon, lat, RADIUS_KM * 1000)).fetchall(),
                         centres(QUERIES))


def http_radius_ms(base: str) -> float:
    """GET /sites within the radius, one keep-alive connection, one request at a time."""
    with httpx.Client(base_url=base, timeout=60) as client:
        def ask(lon, lat):
            assert client.get("/sites", params={"lat": lat, "lon": lon, "within_km": RADIUS_KM}).status_code == 200
        return median_ms(ask, centres(QUERIES))


def writes_per_second(base: str, label: str) -> float:
    """Created sites per second with WRITERS threads POSTing for WRITE_SECONDS."""
    done, stop = [], threading.Event()

    def writer(number: int) -> None:
        with httpx.Client(base_url=base, timeout=60, headers=EDITOR) as client:
            count = 0
            while not stop.is_set():
                body = {"name": f"Write {label} {number} {count}", "country": "PRK", "facility_type": "missile_base",
                        "lon": 127.0, "lat": 40.0, "coord_confidence": "approximate", "coord_source_id": SOURCE,
                        "source_ids": [SOURCE]}
                response = client.post("/sites", json=body)
                assert response.status_code == 201, response.text[:300]
                count += 1
            done.append(count)

    return _per_second(writer, done, stop)


def _health(base: str) -> tuple[int, int]:
    """(worker pid, newest change id) from /health on a new connection (so any worker may answer)."""
    body = httpx.get(f"{base}/health", timeout=30).json()
    version = str(body["data_version"])
    return body["worker"], int(version.split("+")[1]) if "+" in version else 0


def worker_pids(base: str, workers: int) -> set[int]:
    """The service's worker pids, seen through /health."""
    seen: set[int] = set()
    deadline = time.monotonic() + 30
    while len(seen) < workers and time.monotonic() < deadline:
        seen.add(_health(base)[0])
    return seen


def visibility_ms(base: str, pids: set[int]) -> float:
    """The median ms from sending a POST until every worker's /health reports its change."""
    times = []
    with httpx.Client(base_url=base, timeout=60, headers=EDITOR) as client:
        for number in range(VISIBILITY_WRITES):
            body = {"name": f"Seen {number} {time.time_ns()}", "country": "PRK", "facility_type": "missile_base",
                    "lon": 127.0, "lat": 40.0,
                    "coord_confidence": "approximate", "coord_source_id": SOURCE, "source_ids": [SOURCE]}
            started = time.perf_counter()
            response = client.post("/sites", json=body)
            assert response.status_code == 201, response.text[:300]
            change = response.json()["change"]["id"]
            waiting = set(pids)
            while waiting:
                pid, newest = _health(base)
                if newest >= change:
                    waiting.discard(pid)
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def rss_mb(pids: set[int]) -> float:
    """The median resident memory of the workers, MB."""
    sizes = []
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                sizes.append(int(line.split()[1]) / 1024)
    return statistics.median(sizes)


class Served(Service):
    """`missile-sites serve --workers N`, the documented deployment (its listening socket has TCP_NODELAY)."""

    def command(self) -> list[str]:
        """The CLI's serve command."""
        return [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                "--workers", str(self.workers)]


def serve(label: str, live: Path, **env: str) -> dict:
    """One engine's service figures: start-up, HTTP radius, writes, visibility, RSS."""
    service = Served(live, workers=2, MISSILE_SITES_WRITE_WAIT_S="60", **env)
    started = time.perf_counter()
    service.start(wait_s=600)
    figures = {"start-up s": time.perf_counter() - started}
    try:
        pids = worker_pids(service.base, 2)
        figures["HTTP radius ms"] = http_radius_ms(service.base)
        figures["writes/s (8 writers)"] = writes_per_second(service.base, label)
        figures["commit→every worker ms"] = visibility_ms(service.base, pids)
        figures["RSS per worker MB"] = rss_mb(pids)
    finally:
        service.stop()
    return figures


def run(size: int, cluster, folder: Path) -> dict[str, dict]:
    """Both engines' figures at one size."""
    rows = size - 23  # the bundled catalogue's 23 sites, and the imported ones
    source = write_csv(folder / f"sites-{size}.csv", rows)
    gpkg = store.ensure_live(folder / f"live-{size}.gpkg", BUNDLED)
    started = time.perf_counter()
    import_file(source, gpkg, actor="bench")
    result = {"gpkg": {"import s": time.perf_counter() - started}}
    name = f"bench_{size}"
    with psycopg.connect(cluster.url(), autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    url = cluster.url(name)
    init_database(url, BUNDLED)
    database = PostGISStore(url, poll_s=60)
    try:
        started = time.perf_counter()
        import_file(source, database, actor="bench")
        result["postgis"] = {"import s": time.perf_counter() - started}
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("VACUUM ANALYZE")
        for engine, snapshot in (("gpkg", Catalogue(gpkg)), ("postgis", database.load_snapshot())):
            result[engine]["radius in-process ms"] = snapshot_radius_ms(snapshot)
            result[engine]["find_sites (pandas) ms"] = find_sites_ms(snapshot)
        result["postgis"]["ST_DWithin ms"] = st_dwithin_ms(url)
        result["postgis"]["store writes/s (8 threads)"] = store_writes_per_second(database, one_at_a_time=False)
        geopackage = GeoPackageStore(gpkg)
        try:
            result["gpkg"]["store writes/s (8 threads)"] = store_writes_per_second(geopackage, one_at_a_time=True)
        finally:
            geopackage.close()
    finally:
        database.close()
    result["gpkg"].update(serve("gpkg", gpkg))
    result["postgis"].update(serve("postgis", gpkg, MISSILE_SITES_DATABASE_URL=url))
    return result


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,100000", help="comma-separated site counts")
    sizes = [int(size) for size in parser.parse_args().sizes.split(",")]
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores", flush=True)
    cluster = make_cluster()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-engines-") as folder:
            results = {size: run(size, cluster, Path(folder)) for size in sizes}
    finally:
        cluster.stop()
    print(f"{'sites':>7} {'measure':<26} {'GeoPackage':>11} {'PostGIS':>11} {'PostGIS/GPKG':>13}")
    for size, result in results.items():
        for measure, value in result["postgis"].items():
            if measure == "ST_DWithin ms":
                snapshot = result["postgis"]["radius in-process ms"]
                print(f"{size:>7} {measure:<26} {'':>11} {value:>11.2f} {'':>13}"
                      f"  ST_DWithin/snapshot {value / snapshot:.1f}x")
                continue
            gpkg = result["gpkg"][measure]
            print(f"{size:>7} {measure:<26} {gpkg:>11.2f} {value:>11.2f} {value / gpkg:>13.2f}")
    print(f"radius: {RADIUS_KM:g} km around {QUERIES} random points, sorted by distance, first 100; HTTP on missile-sites"
          f" serve --workers 2; writes: {WRITERS} threads for {WRITE_SECONDS:g} s; commit→every worker: from sending the"
          " POST until each worker's /health has it (median of"
          f" {VISIBILITY_WRITES}); import: the whole import_file of size-23 synthetic sites", flush=True)


if __name__ == "__main__":
    main()
