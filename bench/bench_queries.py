"""Radius queries, border distances, maps, the HTTP API and start-up, at catalogue sizes 10^3 to 10^6.

``python bench/bench_queries.py`` (``--sizes 1000,100000`` to skip the million). A benchmark, not a
test: it prints tables of medians and 95th percentiles, and asserts nothing. Synthetic catalogues
are in memory and seeded (uniform on the sphere); radius queries are centred on random catalogue
points. Methods compared for radius queries:

- ``index``: :class:`app.spatial_index.PointIndex` (exact; what the service uses),
- ``brute``: ``Geod.inv`` from the centre to every point (exact),
- ``naive``: a geopandas filter on Web Mercator distances (``to_crs(3857).distance``): the common
  shortcut, wrong away from the equator and across +-180; timed only, labelled naive,
- ``postgis``: ``ST_DWithin`` on a geography column with a GiST index, when PostGIS is installed (exact on the
  spheroid, its default; and ``pg sphere``, ``use_spheroid => false``).
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app import geodesy  # noqa: E402
from app.border_distances import LineIndex  # noqa: E402
from app.spatial_index import PointIndex  # noqa: E402

BUNDLED = REPO / "geodata" / "catalogue.gpkg"
RADII_KM = (300, 3_000)


# --- helpers ----------------------------------------------------------------------------------


def times_ms(call, repeat: int) -> np.ndarray:
    """Wall times in ms of `repeat` calls (call receives the repetition number)."""
    result = []
    for i in range(repeat):
        start = time.perf_counter()
        call(i)
        result.append((time.perf_counter() - start) * 1000)
    return np.array(result)


def stats(ms: np.ndarray) -> tuple[float, float]:
    """Median and 95th percentile."""
    return float(np.median(ms)), float(np.percentile(ms, 95))


def table(title: str, header: list[str], rows: list[list]) -> None:
    """Print an aligned text table."""
    print(f"\n## {title}\n")
    cells = [header] + [[c if isinstance(c, str) else f"{c:,.3f}" for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for n, row in enumerate(cells):
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if n == 0:
            print("  ".join("-" * w for w in widths))
    sys.stdout.flush()


def synthetic(n: int, seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """`n` points uniform on the sphere."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-180, 180, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))


def korea_points(n: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """`n` points around the Korean peninsula, where the measured borders are."""
    rng = np.random.default_rng(seed)
    return rng.uniform(124.0, 131.0, n), rng.uniform(33.0, 43.0, n)


# --- PostGIS ----------------------------------------------------------------------------------


def _pg_tool(name: str) -> str | None:
    """A PostgreSQL program: on the PATH, or in Debian's /usr/lib/postgresql/<version>/bin (not on the PATH there)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    return candidates[-1] if candidates else None


def postgis_available() -> bool:
    """Whether psql, initdb, pg_ctl and the PostGIS extension files are installed."""
    if not all(_pg_tool(tool) for tool in ("psql", "pg_ctl", "initdb")):
        return False
    dirs = glob.glob("/usr/share/postgresql/*/extension") + glob.glob("/usr/local/share/postgresql/extension")
    if shutil.which("pg_config"):
        sharedir = subprocess.run(["pg_config", "--sharedir"], capture_output=True, text=True).stdout.strip()
        dirs.append(os.path.join(sharedir, "extension"))
    return any(os.path.exists(os.path.join(d, "postgis.control")) for d in dirs)


POSTGIS_HOWTO = """PostGIS not installed: the postgis column is skipped. To include it (as root, Debian 12):
    apt-get install -y postgresql postgis
then run the bench again: it finds initdb and pg_ctl in /usr/lib/postgresql/<version>/bin and runs its own
throw-away cluster on a Unix socket in a temporary folder (as the package's `postgres` user when run as root,
since initdb refuses root), roughly:
    runuser -u postgres -- /usr/lib/postgresql/15/bin/initdb -D /tmp/pgbench/data -U postgres
    runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D /tmp/pgbench/data -o "-k /tmp/pgbench -p 54329 -c listen_addresses=''" -w start
    psql -h /tmp/pgbench -p 54329 -U postgres -c 'CREATE EXTENSION postgis'"""


class PostGIS:
    """A throw-away PostgreSQL cluster with PostGIS, driven through psql."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="pgbench")
        self.port = str(_free_port())
        self.as_owner = []  # initdb and the server refuse to run as root: run them as Debian's postgres user
        if os.geteuid() == 0:
            import pwd

            owner = pwd.getpwnam("postgres")
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
            self.as_owner = ["runuser", "-u", "postgres", "--"]
        self.pg_ctl = _pg_tool("pg_ctl")
        subprocess.run([*self.as_owner, _pg_tool("initdb"), "-D", f"{self.dir}/data", "-U", "postgres", "-A", "trust"],
                       check=True, capture_output=True)
        options = f"-k {self.dir} -p {self.port} -c listen_addresses='' -c shared_buffers=256MB"
        subprocess.run([*self.as_owner, self.pg_ctl, "-D", f"{self.dir}/data", "-o", options, "-w", "-l",
                        f"{self.dir}/log", "start"], check=True, capture_output=True)
        self.sql("CREATE EXTENSION postgis")
        self.version = self.sql("SELECT postgis_full_version()", tuples=True).strip().split(" ")[0:2]
        self.server = self.sql("SHOW server_version", tuples=True).strip()

    def sql(self, text: str, *, tuples: bool = False) -> str:
        command = [_pg_tool("psql"), "-h", self.dir, "-p", self.port, "-U", "postgres", "-q", "-v", "ON_ERROR_STOP=1",
                   *(["-t", "-A"] if tuples else []), "-f", "-"]
        return subprocess.run(command, input=text, check=True, capture_output=True, text=True).stdout

    def load(self, lons, lats) -> None:
        path = f"{self.dir}/points.csv"
        np.savetxt(path, np.column_stack([lons, lats]), delimiter=",", fmt="%.9f")
        self.sql(f"DROP TABLE IF EXISTS pts; CREATE TABLE pts (lon float8, lat float8);"
                 f"\\copy pts FROM '{path}' CSV\n"
                 "ALTER TABLE pts ADD COLUMN g geography(Point, 4326);"
                 "UPDATE pts SET g = ST_SetSRID(ST_MakePoint(lon, lat), 4326)::geography;"
                 "CREATE INDEX ON pts USING gist (g); VACUUM ANALYZE pts;")

    def query_ms(self, centres, radius_m, *, spheroid: bool = True) -> np.ndarray:
        """psql's \\timing of each query (what a client on the Unix socket waits), ms.

        ``spheroid``: ST_DWithin's default, the exact WGS84 distance (like the index); False: on a sphere.
        """
        lines = ["\\timing on"] + [
            f"SELECT count(*) FROM pts WHERE ST_DWithin(g, ST_SetSRID(ST_MakePoint({x!r}, {y!r}), 4326)::geography, "
            f"{radius_m!r}, {'true' if spheroid else 'false'});"
            for x, y in centres
        ]
        out = self.sql("\n".join(lines))
        return np.array([float(line.split()[1]) for line in out.splitlines() if line.startswith("Time:")])

    def close(self) -> None:
        subprocess.run([*self.as_owner, self.pg_ctl, "-D", f"{self.dir}/data", "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


# --- sections ---------------------------------------------------------------------------------


def radius_queries(sizes, queries: int, postgis) -> None:
    """Index vs brute force vs naive geopandas (vs PostGIS) per size and radius."""
    import geopandas as gpd
    from shapely.geometry import Point

    rows, build_rows = [], []
    for n in sizes:
        lons, lats = synthetic(n)
        start = time.perf_counter()
        index = PointIndex(lons, lats)
        build_rows.append([f"{n:,}", (time.perf_counter() - start) * 1000, (index._keys.nbytes + index._order.nbytes
                           + index._lons_sorted.nbytes * 2 + index.lons.nbytes * 2) / 2**20])
        rng = np.random.default_rng(n)
        picks = rng.integers(0, n, queries)
        centres = list(zip(lons[picks].tolist(), lats[picks].tolist()))
        slow_repeat = max(3, min(queries, 3_000_000 // n))
        frame = gpd.GeoSeries(gpd.points_from_xy(lons, lats), crs=4326).to_crs(3857)
        if postgis:
            postgis.load(lons, lats)
        for radius_km in RADII_KM:
            radius = radius_km * 1000.0
            found = []
            fast = times_ms(lambda i: found.append(len(index.within(*centres[i], radius)[0])), queries)

            def brute(i):
                x, y = centres[i]
                d = geodesy.GEOD.inv(np.full(n, x), np.full(n, y), lons, lats)[2]
                return np.flatnonzero(d <= radius)

            slow = times_ms(brute, slow_repeat)

            def naive(i):
                centre = gpd.GeoSeries([Point(centres[i])], crs=4326).to_crs(3857).iloc[0]
                return frame[frame.distance(centre) <= radius]

            planar = times_ms(naive, slow_repeat)
            med = stats(fast)[0]
            row = [f"{n:,}", f"{radius_km:,}", f"{np.mean(found):,.0f}", *stats(fast), *stats(slow), stats(slow)[0] / med,
                   *stats(planar), stats(planar)[0] / med]
            for spheroid in (True, False):
                pg = postgis.query_ms(centres[: min(queries, 100)], radius, spheroid=spheroid) if postgis else None
                row += [*stats(pg), stats(pg)[0] / med] if pg is not None and len(pg) else ["skipped"] * 3
            rows.append(row)
    table("Spatial index: build time and memory", ["points", "build ms", "index MiB"], build_rows)
    table(
        f"Radius queries in-process, ms ({queries} index queries per row; brute/naive fewer at large sizes)",
        ["points", "radius km", "hits", "index med", "index p95", "brute med", "brute p95", "brute/index",
         "naive gpd med", "naive p95", "naive/index", "postgis med", "postgis p95", "postgis/index",
         "pg sphere med", "pg sphere p95", "pg sphere/index"],
        rows,
    )


def border_distances(sizes) -> None:
    """Every point's distance to every measured border of the bundled catalogue."""
    from app.catalogue import Catalogue

    catalogue = Catalogue(BUNDLED)
    lines = [catalogue.border_row(b).geometry for b in catalogue.measured_border_ids]
    vertices = sum(len(geodesy._segments(geodesy._line_parts(g))[0]) for g in lines)
    rows = []
    for n, where in [(n, "Korea") for n in sizes] + [(10_000, "worldwide")]:
        lons, lats = korea_points(n) if where == "Korea" else synthetic(n)
        repeat = 5 if n <= 10_000 and where == "Korea" else 3
        batched = times_ms(lambda i: [LineIndex(g).distances(lons, lats) for g in lines], repeat)
        if n <= 1_000:
            sample = min(n, 200)
            loop = times_ms(lambda i: [geodesy.nearest_on_line(x, y, g) for x, y in zip(lons[:sample], lats[:sample])
                                       for g in lines], 1) * n / sample
            loop_cell = float(loop[0])
        else:
            loop_cell = "not run"
        rows.append([f"{n:,} {where}", *stats(batched), loop_cell,
                     loop_cell / stats(batched)[0] if not isinstance(loop_cell, str) else "-"])
    table(f"Border distances: all points x {len(lines)} measured borders ({vertices:,} vertices), ms; points around "
          "Korea (124-131E, 33-43N), and uniform on the sphere (mostly thousands of km away: the costly case)",
          ["points", "batched med", "batched p95", "nearest_on_line loop", "loop/batched"], rows)


def synthetic_page(catalogue, n: int, seed: int = 3):
    """A page of `n` sites around Korea: the bundled sites' attributes drawn at random, new ids and points."""
    import geopandas as gpd

    from app.queries import SitePage

    real = catalogue.sites[~catalogue.sites.geometry.isna()]
    sites = real.iloc[np.random.default_rng(seed).integers(0, len(real), n)].copy()
    lons, lats = korea_points(n, seed)
    sites = sites.set_geometry(gpd.points_from_xy(lons, lats, crs=sites.crs))
    sites.index = sites["id"] = [f"synthetic-{i:06d}" for i in range(n)]
    sites["name"] = [f"{name} {i}" for i, name in enumerate(sites["name"])]
    distances = {site_id: {} for site_id in sites.index}
    for border_id in catalogue.measured_border_ids:
        km = LineIndex(catalogue.border_row(border_id).geometry).distances(lons, lats)[0] / 1000
        for site_id, value in zip(sites.index, km.tolist()):
            distances[site_id][border_id] = value
    return SitePage(sites, n, None, distances)


def maps(sizes, repeat: int) -> None:
    """The service's map builder (app.maps.catalogue_map, then render_html) on synthetic pages of sites."""
    from app.catalogue import Catalogue
    from app.maps import catalogue_map, render_html

    catalogue = Catalogue(BUNDLED)
    rows = []
    for n in sizes:
        page = synthetic_page(catalogue, n)
        built, rendered, sizes_mib = [], [], []
        for _ in range(repeat + 1):  # the first run fills the countries' drawing cache: reported apart, as "first"
            start = time.perf_counter()
            m = catalogue_map(catalogue, page, query=f"{n} synthetic sites")
            middle = time.perf_counter()
            html = render_html(m)
            built.append((middle - start) * 1000)
            rendered.append((time.perf_counter() - middle) * 1000)
            sizes_mib.append(len(html.encode()) / 2**20)
        total = np.array(built) + np.array(rendered)
        rows.append([f"{n:,}", total[0], *stats(np.array(built[1:])), *stats(np.array(rendered[1:])), *stats(total[1:]),
                     sizes_mib[0]])
    table(f"Maps: catalogue_map + render_html, synthetic sites around Korea (first run, then {repeat} runs each), ms",
          ["sites", "first total", "build med", "build p95", "render med", "render p95", "total med", "total p95",
           "HTML MiB"], rows)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(app):
    """Run `app` with uvicorn on a free loopback port in a thread; return (server, base url)."""
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    return server, thread, f"http://127.0.0.1:{port}"


def http_api(requests: int) -> None:
    """GET /sites over HTTP vs a bare FastAPI endpoint answering the same bytes."""
    import httpx
    from fastapi import FastAPI, Response

    from app.main import create_app
    from app.settings import Settings

    rows = []
    paths = ["/sites?near=Seoul&within_km=300", "/sites?near=Seoul&within_km=3000&sort=distance"]
    server, thread, base = _serve(create_app(Settings(gpkg=BUNDLED, _env_file=None)))
    try:
        with httpx.Client() as client:
            bodies = {p: client.get(base + p) for p in paths}
            for path in paths:
                ms = times_ms(lambda i, p=path: client.get(base + p).raise_for_status(), requests)
                rows.append([path, "service", len(bodies[path].content), *stats(ms)])
    finally:
        server.should_exit = True
        thread.join()
    bare = FastAPI()
    for n, path in enumerate(paths):
        body, kind = bodies[path].content, bodies[path].headers["content-type"]
        bare.add_api_route(f"/bare{n}", lambda b=body, k=kind: Response(b, media_type=k))
    server, thread, base = _serve(bare)
    try:
        with httpx.Client() as client:
            for n, path in enumerate(paths):
                ms = times_ms(lambda i, k=n: client.get(f"{base}/bare{k}").raise_for_status(), requests)
                rows.append([path, "bare FastAPI, same bytes", len(bodies[path].content), *stats(ms)])
    finally:
        server.should_exit = True
        thread.join()
    table(f"HTTP on loopback (uvicorn, {requests} sequential requests each), ms",
          ["request", "server", "bytes", "median", "p95"], [[r[0], r[1], f"{r[2]:,}", r[3], r[4]] for r in rows])


STARTUP = """
import os, time, sys
sys.path.insert(0, {repo!r})
def rss_mib():  # resident memory now (ru_maxrss would inherit the bench's own peak through fork)
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
import app.catalogue
imported = rss_mib()
start = time.perf_counter()
catalogue = app.catalogue.Catalogue({gpkg!r})
took = time.perf_counter() - start
print(took * 1000, rss_mib() - imported, rss_mib())
"""


def startup(repeat: int = 5) -> None:
    """Catalogue(...) on the bundled GeoPackage, each in a fresh interpreter (imports done first)."""
    rows = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", STARTUP.format(repo=str(REPO), gpkg=str(BUNDLED))],
                             capture_output=True, text=True, check=True).stdout.split()
        rows.append([float(v) for v in out])
    values = np.array(rows)
    table(f"Start-up: Catalogue(geodata/catalogue.gpkg), fresh process, {repeat} runs",
          ["measure", "median", "p95"],
          [["load ms", *stats(values[:, 0])], ["RSS growth MiB (the catalogue)", *stats(values[:, 1])],
           ["RSS of the process MiB (imports included)", *stats(values[:, 2])]])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,100000,1000000", help="catalogue sizes, comma-separated")
    parser.add_argument("--queries", type=int, default=200, help="index queries per size and radius")
    parser.add_argument("--border-sizes", default="1000,100000", help="point counts for border distances")
    parser.add_argument("--requests", type=int, default=200, help="HTTP requests per row")
    parser.add_argument("--map-sizes", default="1000,10000", help="site counts for maps")
    parser.add_argument("--map-runs", type=int, default=5, help="maps built per size")
    args = parser.parse_args(argv)
    print("$ " + " ".join([Path(sys.executable).name, *sys.argv]))
    print(f"numpy {np.__version__}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    postgis = None
    if postgis_available():
        try:
            postgis = PostGIS()
            print(f"PostgreSQL {postgis.server}, PostGIS {' '.join(postgis.version)}: a throw-away cluster on a Unix socket;"
                  " postgis = ST_DWithin(geography, centre, r) with its default use_spheroid=true (exact WGS84, like"
                  " the index), pg sphere = use_spheroid=false; both through psql's \\timing, SELECT count(*)")
        except (OSError, subprocess.CalledProcessError) as error:
            print(f"PostGIS found but could not start ({error}); the postgis column is skipped")
    else:
        print(POSTGIS_HOWTO)
    try:
        radius_queries([int(s) for s in args.sizes.split(",")], args.queries, postgis)
    finally:
        if postgis:
            postgis.close()
    border_distances([int(s) for s in args.border_sizes.split(",")])
    maps([int(s) for s in args.map_sizes.split(",")], args.map_runs)
    http_api(args.requests)
    startup()


if __name__ == "__main__":
    main()
