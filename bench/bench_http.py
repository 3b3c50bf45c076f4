"""The HTTP answers users wait for, side by side in one run: missile-sites, a bare FastAPI route returning the same
bytes, pygeoapi (its SQLite/GeoPackage provider) and TiPG (over PostGIS) on the same sites; start-up to the first 200;
1 against 2 workers.

``python bench/bench_http.py`` (``--sizes 23`` for the bundled catalogue only; ``--rounds 3 --duration 4``).
A benchmark, not a test: it prints one table of medians (over rounds, the targets measured in turn within each
round) with their ratios, and asserts nothing. Needs ``wrk`` (``apt-get install -y wrk``). The peers run from a
separate virtualenvs and never from the project's: TiPG from ``--peers`` (default /work/peers: ``python -m venv
/work/peers && /work/peers/bin/pip install tipg uvicorn``), pygeoapi from ``--pygeoapi-venv`` (default
/work/peers-debian: ``/usr/bin/python3 -m venv /work/peers-debian && /work/peers-debian/bin/pip install pygeoapi
uvicorn``; Debian's Python, since its SQLite provider loads SpatiaLite, which a Python built without loadable SQLite
extensions cannot); TiPG needs PostgreSQL 15 with PostGIS from Debian
(``apt-get install -y postgresql-15-postgis-3``), started here as a throwaway cluster on a Unix socket in a temporary
folder; pygeoapi needs ``libsqlite3-mod-spatialite`` and ``ogr2ogr`` (gdal-bin). A peer that cannot run is
reported as unavailable, with the reason, in its rows.

The 10^5-site catalogue is the bundled one plus 99,977 synthetic sites around North Korea (bench_import's CSV),
imported once through ``import_file`` and kept in ``--workdir`` for later runs. Every server binds 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "geodata" / "catalogue.gpkg"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
SITES = "/sites?near=Seoul&within_km=300"
SITE = "/sites/sakkanmol"
BBOX = "bbox=124,37,131,43&limit=100"
ITEMS = f"/collections/sites/items?{BBOX}"
PEER_ITEMS = {"pygeoapi": f"/collections/sites/items?{BBOX}&f=json", "tipg": f"/collections/public.sites/items?{BBOX}"}


# --- processes ------------------------------------------------------------------------------------


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server process in its own session (stopped by its process group id), and its URL once it answers."""

    def __init__(self, name: str, command: list[str], *, env: dict | None = None, port: int, ready: str = "/",
                 timeout_s: float = 180.0, cwd: Path | None = None):
        self.name, self.base = name, f"http://127.0.0.1:{port}"
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log", delete=False)
        started = time.perf_counter()
        self.process = subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=self.log,
                                        stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd)
        try:
            self.startup_s = wait_ok(self.base + ready, timeout_s, self.process) - started
        except RuntimeError as exc:
            self.stop()
            last = self.tail().strip().splitlines()[-1:] or ["(no output)"]
            raise RuntimeError(f"{exc}; its log ends: {last[0][:160]}") from None

    def rss_mib(self) -> float:
        """Resident memory of the process and its children, MiB."""
        pids = [self.process.pid] + children(self.process.pid)
        return sum(rss_kib(pid) for pid in pids) / 1024

    def stop(self) -> None:
        """Stop the server's process group."""
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def tail(self) -> str:
        """The last lines of the server's log."""
        return Path(self.log.name).read_text(errors="replace")[-600:]


def children(pid: int) -> list[int]:
    """Every descendant of a process."""
    found = []
    try:
        direct = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return found
    for child in direct:
        found += [child, *children(child)]
    return found


def rss_kib(pid: int) -> int:
    """VmRSS of a process in KiB (0 when gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"VmRSS:\s+(\d+)", text)
    return int(match.group(1)) if match else 0


def wait_ok(url: str, timeout_s: float, process: subprocess.Popen) -> float:
    """Poll a URL every 5 ms until it answers 200; the time it did (perf_counter)."""
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return time.perf_counter()
        except OSError:
            pass
        time.sleep(0.005)
    raise RuntimeError(f"no 200 from {url} in {timeout_s:g} s")


def fetch(url: str) -> bytes:
    """A URL's body (200 only)."""
    with urllib.request.urlopen(url, timeout=60) as response:
        if response.status != 200:
            raise RuntimeError(f"{url}: {response.status}")
        return response.read()


# --- wrk ------------------------------------------------------------------------------------------


def wrk(url: str, connections: int, duration_s: float) -> tuple[float, float]:
    """Successful requests per second and the median latency in ms of one wrk run; failed answers are counted in
    FAILED[url] (a run with no successful answer raises)."""
    out = subprocess.run(["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{duration_s:g}s", "--latency",
                          url], capture_output=True, text=True, timeout=duration_s + 60).stdout
    total = int(re.search(r"(\d+) requests in", out).group(1))
    failed = int(re.search(r"Non-2xx or 3xx responses: (\d+)", out).group(1)) if "Non-2xx" in out else 0
    if failed >= total:
        raise RuntimeError(f"no 2xx answer from {url}")
    done, tried = FAILED.get((url, connections), (0, 0))
    FAILED[url, connections] = (done + failed, tried + total)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)) * (total - failed) / total
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)\b", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p50.group(2)]
    return rate, float(p50.group(1)) * scale


FAILED: dict[tuple[str, int], tuple[int, int]] = {}  # (url, connections) -> (failed answers, answers), all runs


# --- data -----------------------------------------------------------------------------------------


def catalogue_of(size: int, workdir: Path) -> Path:
    """The GeoPackage with `size` sites: the bundled one, or it plus synthetic sites (imported once, kept)."""
    if size <= 23:
        return BUNDLED
    path = workdir / f"sites-{size}.gpkg"
    sys.path.insert(0, str(REPO / "bench"))
    sys.path.insert(0, str(REPO))
    from app import store  # noqa: E402

    if path.exists():
        store.ensure_live(path, BUNDLED)  # a file kept from an older version: brought to the current schema once
        return path
    from bench_import import write_csv  # noqa: E402

    from app.importer import import_file  # noqa: E402

    partial = workdir / f"partial-{size}.gpkg"
    for stale in workdir.glob(f"partial-{size}.gpkg*"):
        stale.unlink()
    live = store.ensure_live(partial, BUNDLED)
    started = time.perf_counter()
    result = import_file(write_csv(workdir / f"sites-{size}.csv", size - 23), live, actor="bench")
    assert result.written, "the synthetic sites must import"
    print(f"  imported {size - 23:,} synthetic sites in {time.perf_counter() - started:.1f} s", flush=True)
    from contextlib import closing

    with closing(store.connect(live)) as connection:  # one file for the peers' tools to read
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        connection.execute("PRAGMA journal_mode=DELETE")
    partial.rename(path)
    return path


def peer_gpkg(source: Path, workdir: Path, size: int) -> Path:
    """The sites layer alone, as ogr2ogr writes it, for pygeoapi's GeoPackage provider."""
    path = workdir / f"peer-sites-{size}.gpkg"
    if not path.exists():
        subprocess.run(["ogr2ogr", "-f", "GPKG", str(path), str(source), "sites", "-nln", "sites"], check=True,
                       capture_output=True)
    return path


# --- the servers ----------------------------------------------------------------------------------


def ours(gpkg: Path, *, workers: int | None = None) -> Server:
    """missile-sites on a catalogue: one uvicorn worker without access log (as bare runs), or `serve --workers N`."""
    port = free_port()
    env = {"PYTHONPATH": str(REPO), "MISSILE_SITES_GPKG": str(gpkg), "MISSILE_SITES_SEED_GPKG": str(gpkg)}
    if workers is None:
        command = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port),
                   "--no-access-log", "--log-level", "warning"]
    else:
        command = [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
                   "--workers", str(workers)]
    return Server(f"ours-{workers or 1}", command, env=env, port=port, ready="/health", cwd=REPO)


BARE_APP = '''
import json
from pathlib import Path
from fastapi import FastAPI, Response
BODIES = {{k: bytes.fromhex(v) for k, v in json.loads(Path({path!r}).read_text()).items()}}
app = FastAPI()

def _route(url):
    body = BODIES[url]
    async def answer():
        return Response(body, media_type="application/geo+json")
    return answer

for _url in BODIES:
    app.get(_url.split("?")[0])(_route(_url))
'''


def bare(bodies: dict[str, bytes], workdir: Path) -> Server:
    """A bare FastAPI app (same Python, FastAPI and uvicorn) answering each path with the given bytes."""
    data = workdir / "bare-bodies.json"
    data.write_text(json.dumps({url: body.hex() for url, body in bodies.items()}))
    module = workdir / "bare_app.py"
    module.write_text(BARE_APP.format(path=str(data)))
    port = free_port()
    return Server("bare", [sys.executable, "-m", "uvicorn", "bare_app:app", "--host", "127.0.0.1", "--port", str(port),
                           "--no-access-log", "--log-level", "warning"], port=port, ready=SITE, cwd=workdir)


PYGEOAPI_CONFIG = '''
server:
  bind: {{host: 127.0.0.1, port: {port}}}
  url: http://127.0.0.1:{port}
  mimetype: application/json; charset=UTF-8
  encoding: utf-8
  language: en-US
  limits: {{default_items: 10, max_items: 1000}}
  map:
    url: "https://tile.openstreetmap.org/{{z}}/{{x}}/{{y}}.png"
    attribution: OSM
logging: {{level: ERROR}}
metadata:
  identification: {{title: bench, description: bench, keywords: [bench], keywords_type: theme, terms_of_service: none, url: http://127.0.0.1}}
  license: {{name: none, url: "http://127.0.0.1"}}
  provider: {{name: bench, url: "http://127.0.0.1"}}
  contact: {{name: bench, position: bench, address: none, city: none, stateorprovince: none, postalcode: none, country: none, phone: none, fax: none, email: none@example.org, url: "http://127.0.0.1", hours: none, instructions: none, role: pointOfContact}}
resources:
  sites:
    type: collection
    title: sites
    description: missile sites
    keywords: [sites]
    extents: {{spatial: {{bbox: [-180, -90, 180, 90], crs: http://www.opengis.net/def/crs/OGC/1.3/CRS84}}}}
    providers:
      - type: feature
        name: SQLiteGPKG
        data: {data}
        id_field: fid
        table: sites
'''


def pygeoapi(peers: Path, gpkg: Path, workdir: Path, size: int) -> Server:
    """pygeoapi (Starlette, uvicorn) with its SQLite/GeoPackage provider over the same sites."""
    port = free_port()
    config = workdir / f"pygeoapi-{size}.yml"
    config.write_text(PYGEOAPI_CONFIG.format(port=port, data=peer_gpkg(gpkg, workdir, size)))
    openapi = workdir / f"pygeoapi-{size}-openapi.yml"
    env = {"PYGEOAPI_CONFIG": str(config), "PYGEOAPI_OPENAPI": str(openapi)}
    subprocess.run([str(peers / "bin" / "pygeoapi"), "openapi", "generate", str(config), "--output-file", str(openapi)],
                   check=True, capture_output=True, env={**os.environ, **env}, timeout=120)
    return Server("pygeoapi", [str(peers / "bin" / "uvicorn"), "pygeoapi.starlette_app:APP", "--host", "127.0.0.1",
                               "--port", str(port), "--no-access-log", "--log-level", "warning"],
                  env=env, port=port, ready="/collections/sites", cwd=workdir)


class PostGIS:
    """A throwaway PostgreSQL 15 cluster with PostGIS on a Unix socket in a temporary folder."""

    def __init__(self, workdir: Path):
        if not (PG_BIN / "initdb").exists() or not Path("/usr/share/postgresql/15/extension/postgis.control").exists():
            raise RuntimeError("PostgreSQL 15 with PostGIS is not installed (apt-get install -y postgresql-15-postgis-3)")
        self.folder = Path(tempfile.mkdtemp(prefix="bench-pg-", dir=workdir))
        self.data, self.socket = self.folder / "data", self.folder
        self._as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        self._run([str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync"])
        self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "log"), "-w", "start", "-o",
                   f"-k {self.socket} -c listen_addresses='' -c fsync=off -c shared_buffers=128MB"])
        self.dsn_host = str(self.socket)

    def _run(self, command: list[str]) -> str:
        return subprocess.run(self._as_postgres + command, check=True, capture_output=True, text=True,
                              timeout=300).stdout

    def database(self, name: str, gpkg: Path) -> str:
        """A database holding the sites layer (PostGIS geometry, GiST index); its URL."""
        self._run([str(PG_BIN / "createdb"), "-h", self.dsn_host, "-U", "postgres", name])
        self._run(["psql", "-h", self.dsn_host, "-U", "postgres", "-d", name, "-q", "-c",
                   "CREATE EXTENSION postgis"])
        subprocess.run(["ogr2ogr", "-f", "PostgreSQL", f"PG:host={self.dsn_host} dbname={name} user=postgres",
                        str(gpkg), "sites", "-nln", "sites", "-lco", "GEOMETRY_NAME=geom", "-lco", "FID=fid"],
                       check=True, capture_output=True, timeout=600)
        self._run(["psql", "-h", self.dsn_host, "-U", "postgres", "-d", name, "-q", "-c", "ANALYZE sites"])
        return f"postgresql://postgres@{urllib.parse.quote(self.dsn_host, safe='')}/{name}"  # a socket folder as host

    def stop(self) -> None:
        """Stop the cluster and remove its folder."""
        try:
            self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"])
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def tipg(peers: Path, database_url: str, workdir: Path) -> Server:
    """TiPG (uvicorn) over the PostGIS database."""
    port = free_port()
    env = {"DATABASE_URL": database_url, "TIPG_DB_SCHEMAS": '["public"]', "TIPG_MAX_FEATURES_PER_QUERY": "10000"}
    return Server("tipg", [str(peers / "bin" / "uvicorn"), "tipg.main:app", "--host", "127.0.0.1", "--port", str(port),
                           "--no-access-log", "--log-level", "warning"], env=env, port=port,
                  ready="/collections/public.sites", cwd=workdir)


# --- the table ------------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def features_in(body: bytes) -> int:
    """How many features a GeoJSON answer holds (1 for a single feature)."""
    data = json.loads(body)
    return len(data["features"]) if "features" in data else 1


def measure_size(size: int, args, workdir: Path, postgis: PostGIS | None, postgis_problem: str | None) -> list[list]:
    """The rows of one catalogue size: our answers against bare, pygeoapi and TiPG; start-up."""
    gpkg = catalogue_of(size, workdir)
    rows: list[list] = []
    servers: dict[str, Server] = {}
    problems: dict[str, str] = {}
    try:
        servers["ours"] = ours(gpkg)
        bodies = {url: fetch(servers["ours"].base + url) for url in (SITES, SITE, ITEMS)}
        servers["bare"] = bare(bodies, workdir)
        for name, start in (("pygeoapi", lambda: pygeoapi(args.pygeoapi_venv, gpkg, workdir, size)),
                            ("tipg", lambda: tipg(args.peers, postgis.database(f"sites{size}", gpkg), workdir))):
            venv = args.pygeoapi_venv if name == "pygeoapi" else args.peers
            if not (venv / "bin" / "uvicorn").exists():
                problems[name] = f"no virtualenv with {name} and uvicorn at {venv}"
                continue
            if name == "tipg" and postgis is None:
                problems[name] = postgis_problem or "PostGIS unavailable"
                continue
            try:
                servers[name] = start()
                counts = features_in(fetch(servers[name].base + PEER_ITEMS[name]))
                print(f"  {name}: {counts} features for the items request", flush=True)
            except Exception as exc:  # noqa: BLE001 - reported in the table, never silently
                problems[name] = f"{type(exc).__name__}: {str(exc)[:120]}"
                if name in servers:
                    problems[name] += " | " + servers.pop(name).tail()[-200:].replace("\n", " ")
        plan = [(SITES, 8, ["bare"]), (SITES, 1, ["bare"]), (SITE, 8, ["bare"]), (ITEMS, 8, ["bare", "pygeoapi", "tipg"]),
                (ITEMS, 1, ["bare", "pygeoapi", "tipg"])]
        results: dict[tuple, list[tuple[float, float]]] = {}
        for round_number in range(args.rounds):
            for url, connections, others in plan:
                for name in ["ours", *others]:
                    if name not in servers:
                        continue
                    target = PEER_ITEMS[name] if name in PEER_ITEMS and url == ITEMS else url
                    try:
                        results.setdefault((url, connections, name), []).append(
                            wrk(servers[name].base + target, connections, args.duration))
                    except Exception as exc:  # noqa: BLE001
                        problems[name] = f"{type(exc).__name__}: {str(exc)[:120]}"
            print(f"  round {round_number + 1} of {args.rounds} done", flush=True)
        for url, connections, others in plan:
            mine = results.get((url, connections, "ours"), [])
            rate, p50 = median([r for r, _ in mine]), median([p for _, p in mine])
            what = f"GET {url.split('?')[0] if url == ITEMS else url}" + (f"?{BBOX}" if url == ITEMS else "")
            label = f"{what} ({features_in(bodies[url])} features, {len(bodies[url]) / 1000:.1f} kB)"
            for name in others:
                theirs = results.get((url, connections, name), [])
                if name in problems or not theirs:
                    rows.append([label, size, connections, rate, p50, name, "unavailable: " + problems.get(
                        name, "no result"), None])
                else:
                    value = median([r for r, _ in theirs])
                    peer_url = servers[name].base + (PEER_ITEMS[name] if name in PEER_ITEMS and url == ITEMS else url)
                    failed, tried = FAILED.get((peer_url, connections), (0, 0))
                    shown = value if not failed else f"{value:,.0f} ({failed} of {tried} answers failed)"
                    rows.append([label, size, connections, rate, p50, name, shown, rate / value])
        startups, memories = [], []
        servers.pop("ours").stop()
        for _ in range(args.rounds):
            server = ours(gpkg)
            startups.append(server.startup_s)
            memories.append(server.rss_mib())
            server.stop()
        rows.append([f"start-up to first 200 (/health), s; RSS MiB {median(memories):.0f}", size, "-",
                     median(startups), None, "target", 1.0 if size <= 23 else 2.0, median(startups) / (1.0 if size <= 23 else 2.0)])
    finally:
        for server in servers.values():
            server.stop()
    return rows


def measure_workers(size: int, args, workdir: Path) -> list[list]:
    """/sites at c=32 with 1 and 2 workers, both through `serve --workers N` (its access log included)."""
    gpkg = catalogue_of(size, workdir)
    rates: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(args.rounds):
        for workers in (1, 2):
            server = ours(gpkg, workers=workers)
            try:
                warm(server.base + SITES)  # every worker up and answering, not only the first
                rates[workers].append(wrk(server.base + SITES, 32, args.duration)[0])
            finally:
                server.stop()
    one, two = median(rates[1]), median(rates[2])
    return [[f"GET {SITES}, serve --workers 2", size, 32, two, None, "--workers 1", one, two / one]]


def warm(url: str, tries: int = 10) -> None:
    """Load the server until two runs in a row agree within 15% (a worker still starting answers nothing)."""
    last = 0.0
    for _ in range(tries):
        rate = wrk(url, 32, 2)[0]
        if last and abs(rate - last) <= 0.15 * max(rate, last):
            return
        last = rate


def print_table(rows: list[list]) -> None:
    """One table: what, sites, connections, our req/s (or s), p50, the comparison, its value, the ratio."""
    header = ["what", "sites", "c", "missile-sites", "p50 ms", "against", "their value", "ratio"]
    cells = [[str(r[0]), f"{r[1]:,}", str(r[2]), f"{r[3]:,.2f}" if r[3] < 10 else f"{r[3]:,.0f}",
              "" if r[4] is None else f"{r[4]:.2f}", str(r[5]),
              r[6] if isinstance(r[6], str) else (f"{r[6]:,.2f}" if r[6] < 10 else f"{r[6]:,.0f}"),
              "" if r[7] is None else f"{r[7]:.2f}"] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    widths[6] = min(widths[6], 60)
    line = lambda values: " | ".join(v[:w].ljust(w) if i in (0, 5, 6) else v.rjust(w)  # noqa: E731
                                     for i, (v, w) in enumerate(zip(values, widths)))
    print(line(header))
    print("-+-".join("-" * w for w in widths))
    for c in cells:
        print(line(c))
        if len(c[6]) > 60:
            print(textwrap.indent(textwrap.fill(c[6], 150), "    "))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="23,100000", help="catalogue sizes (23: the bundled catalogue)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; each value is the median over them")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per wrk run")
    parser.add_argument("--peers", type=Path, default=Path("/work/peers"), help="the peers' virtualenv (TiPG)")
    parser.add_argument("--pygeoapi-venv", type=Path, default=Path("/work/peers-debian"),
                        help="pygeoapi's virtualenv, on a Python whose sqlite3 loads extensions (Debian's python3)")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "missile-sites-bench-http",
                        help="where the generated catalogues are kept between runs")
    parser.add_argument("--workers-size", type=int, default=23, help="catalogue size for the 1 vs 2 workers row")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("bench_http: wrk not found: apt-get install -y wrk")
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores; "
          f"{args.rounds} rounds of {args.duration:g} s wrk runs", flush=True)
    postgis, postgis_problem = None, None
    try:
        postgis = PostGIS(args.workdir)
    except Exception as exc:  # noqa: BLE001 - TiPG's rows then say why
        postgis_problem = f"PostGIS: {type(exc).__name__}: {str(exc)[:160]}"
        print(f"  {postgis_problem}", flush=True)
    rows = []
    try:
        for size in [int(s) for s in args.sizes.split(",")]:
            print(f"{size:,} sites", flush=True)
            rows += measure_size(size, args, args.workdir, postgis, postgis_problem)
        rows += measure_workers(args.workers_size, args, args.workdir)
    finally:
        if postgis is not None:
            postgis.stop()
    print()
    print_table(rows)
    print("\nmissile-sites and bare: req/s (start-up: seconds), medians over rounds; ratio = ours / theirs (start-up: "
          "ours / target). bare = a FastAPI `async def` route returning our answer's bytes, same Python, FastAPI and "
          "uvicorn. pygeoapi and TiPG answer the same bbox and limit over the same sites from their own stores; a "
          "rate counts only the 2xx answers.")
    for (url, connections), (failed, tried) in FAILED.items():
        if failed:
            print(f"failed answers: {failed} of {tried} from {url} at c={connections}")


if __name__ == "__main__":
    main()
