"""Storage that holds: writers killed mid-transaction, many writers at once, reads during writes, the R-tree."""

import multiprocessing
import os
import random
import signal
import threading
import time
from contextlib import closing

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app import edits, store
from app.main import create_app
from app.models import ObservationCreate, SiteCreate, SiteUpdate
from app.settings import GEODATA_DIR, Settings
from tests.service import EDITOR_TOKEN, Service

SOURCE = "csis-bp-hoejung-ni-2022"
OBSERVATIONS_PER_SITE = 3
KILLS = 50
PROCESSES, WRITES_EACH = 8, 200
FORK = multiprocessing.get_context("fork")


@pytest.fixture
def live(tmp_path):
    """A fresh live copy of the bundled catalogue."""
    return store.ensure_live(tmp_path / "live.gpkg", GEODATA_DIR / "catalogue.gpkg")


def _site(name: str, rng: random.Random) -> SiteCreate:
    """A located site at a random point whose coordinates are exact in float32 (multiples of 2^-10 degree)."""
    lon, lat = rng.randint(-180 * 1024, 180 * 1024) / 1024, rng.randint(-90 * 1024, 90 * 1024) / 1024
    return SiteCreate(name=name, country="PRK", facility_type="missile_base", lon=lon, lat=lat,
                      coord_confidence="approximate", coord_source_id=SOURCE, source_ids=[SOURCE])


def _site_with_observations(connection, name: str, rng: random.Random) -> None:
    """One transaction: a site and all of its observations."""
    with store.transaction(connection):
        site_id = edits.create_site(connection, _site(name, rng), "writer")["entity_id"]
        for day in range(1, OBSERVATIONS_PER_SITE + 1):
            observation = ObservationCreate(observed_on=f"2020-01-{day:02d}", kind="imagery", source_id=SOURCE)
            edits.add_observation(connection, site_id, observation, "writer")


def _write_until_killed(path, run: int, ready) -> None:
    """A writer adding sites with their observations in a loop, until SIGKILL ends it."""
    rng = random.Random(run)
    connection = store.connect(path)
    ready.set()
    for number in range(10**9):
        _site_with_observations(connection, f"kill {run} {number}", rng)


def _check_file(path) -> dict:
    """Integrity, whole sites (all observations or none), and the R-tree matching the located sites."""
    with closing(store.connect(path)) as connection:  # a writer's connection recovers the WAL
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        partial = connection.execute(
            "SELECT s.id, count(o.id) FROM sites s LEFT JOIN observations o ON o.site_id = s.id"
            " WHERE s.id LIKE 'kill-%' GROUP BY s.id HAVING count(o.id) != ?", (OBSERVATIONS_PER_SITE,)).fetchall()
        assert partial == []
        orphans = connection.execute("SELECT count(*) FROM observations WHERE site_id NOT IN (SELECT id FROM sites)")
        assert orphans.fetchone()[0] == 0
        indexed = connection.execute("SELECT count(*) FROM rtree_sites_geom").fetchone()[0]
        located = connection.execute("SELECT count(*) FROM sites WHERE geom IS NOT NULL").fetchone()[0]
        assert indexed == located
        sites = connection.execute("SELECT count(*) FROM sites WHERE id LIKE 'kill-%'").fetchone()[0]
        logged = connection.execute("SELECT count(*) FROM changes WHERE actor = 'writer'").fetchone()[0]
        assert logged == sites * (1 + OBSERVATIONS_PER_SITE)
        return {"sites": sites, "observations": sites * OBSERVATIONS_PER_SITE}


def _validate_gpkg(path) -> list[str]:
    """GDAL's validate_gpkg problems (extra checks, warnings as errors)."""
    from osgeo_utils.samples import validate_gpkg

    return validate_gpkg.check(str(path), abort_at_first_error=False, extra_checks=True, warning_as_error=True,
                               myprint=lambda message: None)


def test_a_writer_killed_at_random_moments_never_leaves_half_a_site(live):
    rng = random.Random(20261124)
    committed = []
    for run in range(KILLS):
        ready = FORK.Event()
        writer = FORK.Process(target=_write_until_killed, args=(live, run, ready))
        writer.start()
        assert ready.wait(30)
        time.sleep(rng.uniform(0.0, 0.25))
        os.kill(writer.pid, signal.SIGKILL)
        writer.join()
        assert writer.exitcode == -signal.SIGKILL
        committed.append(_check_file(live)["sites"])
    assert _validate_gpkg(live) == []
    print(f"\n{KILLS} writers killed with SIGKILL; after each, integrity_check ok and every site whole; "
          f"{committed[-1]} sites with {committed[-1] * OBSERVATIONS_PER_SITE} observations committed in all")
    assert committed[-1] > 0 and committed == sorted(committed)


def _write_many(path, worker: int, errors) -> None:
    """One of several processes: WRITES_EACH site creations, one transaction each; count any error."""
    rng = random.Random(worker)
    with closing(store.connect(path)) as connection:
        for number in range(WRITES_EACH):
            try:
                with store.transaction(connection):
                    edits.create_site(connection, _site(f"w {worker} {number}", rng), f"worker-{worker}")
            except Exception:  # noqa: BLE001 - every failure counts, whatever its kind
                with errors.get_lock():
                    errors.value += 1


def _read_while_writing(client: TestClient, stop: threading.Event, answers: list) -> None:
    """Keep asking the service for sites while the writers run."""
    while not stop.is_set():
        response = client.get("/sites?limit=1")
        answers.append((response.status_code, response.json().get("numberMatched")))


def _eventually(ask, expected, within_s: float = 5.0):
    """Ask until the answer is the expected one (another process's commit reaches a worker's snapshot in the
    background) or the time is up; the last answer."""
    deadline = time.monotonic() + within_s
    answer = ask()
    while answer != expected and time.monotonic() < deadline:
        time.sleep(0.05)
        answer = ask()
    return answer


def test_eight_processes_write_at_once_without_errors_or_losses_while_reads_go_on(live):
    errors = FORK.Value("i", 0)
    before = _count(live, "SELECT count(*) FROM sites")
    app = create_app(Settings(gpkg=live, _env_file=None))
    with TestClient(app, raise_server_exceptions=False) as client:
        stop, answers = threading.Event(), []
        reader = threading.Thread(target=_read_while_writing, args=(client, stop, answers))
        reader.start()
        started = time.perf_counter()
        workers = [FORK.Process(target=_write_many, args=(live, n, errors)) for n in range(PROCESSES)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        elapsed = time.perf_counter() - started
        stop.set()
        reader.join()
        written = _count(live, "SELECT count(*) FROM sites") - before
        final = _eventually(lambda: client.get("/sites?limit=1").json()["numberMatched"], before + written)
    lost = PROCESSES * WRITES_EACH - written
    print(f"\n{PROCESSES} processes x {WRITES_EACH} writes in {elapsed:.1f} s: {errors.value} errors, "
          f"{written} rows written, {lost} lost; {len(answers)} reads meanwhile, "
          f"{sum(code != 200 for code, _ in answers)} not 200")
    assert errors.value == 0 and lost == 0
    assert _count(live, "SELECT count(*) FROM changes WHERE actor LIKE 'worker-%'") == PROCESSES * WRITES_EACH
    assert answers and all(code == 200 for code, _ in answers)
    counts = [count for _, count in answers]
    assert counts == sorted(counts) and final == before + written


def _count(path, sql: str) -> int:
    """One number from the file."""
    with closing(store.connect_readonly(path)) as connection:
        return connection.execute(sql).fetchone()[0]


def _float32_down(values: np.ndarray) -> np.ndarray:
    """Doubles rounded down to float32, as SQLite's R-tree stores a box's minimum."""
    single = values.astype(np.float32)
    return np.where(single > values, np.nextafter(single, np.float32(-np.inf)), single).astype(float)


def _float32_up(values: np.ndarray) -> np.ndarray:
    """Doubles rounded up to float32, as SQLite's R-tree stores a box's maximum."""
    single = values.astype(np.float32)
    return np.where(single < values, np.nextafter(single, np.float32(np.inf)), single).astype(float)


def test_the_rtree_matches_a_brute_force_filter_after_writes(live):
    rng = random.Random(7)
    with closing(store.connect(live)) as connection:
        for number in range(300):
            with store.transaction(connection):
                edits.create_site(connection, _site(f"r {number}", rng), "tester")
        for number in range(0, 300, 3):  # move a third, unlocate a ninth, retire some
            site_id = f"r-{number}"
            with store.transaction(connection):
                edits.update_site(connection, site_id, SiteUpdate(lon=rng.uniform(-180, 180), lat=rng.uniform(-90, 90)),
                                  "tester")
            if number % 9 == 0:
                with store.transaction(connection):
                    edits.update_site(connection, site_id, SiteUpdate(
                        lon=None, lat=None, coord_confidence="unknown", coord_source_id=None), "tester")
        rows = connection.execute("SELECT fid, geom FROM sites").fetchall()
        points = [(fid, store.blob_geometry(blob)) for fid, blob in rows if blob is not None]
        fids = np.array([fid for fid, _ in points])
        lons, lats = np.array([p.x for _, p in points]), np.array([p.y for _, p in points])
        boxes = np.random.default_rng(11)
        for _ in range(1000):
            west, east = np.sort(boxes.uniform(-180, 180, 2))
            south, north = np.sort(boxes.uniform(-90, 90, 2))
            found = {row[0] for row in connection.execute(
                "SELECT id FROM rtree_sites_geom WHERE minx <= ? AND maxx >= ? AND miny <= ? AND maxy >= ?",
                (east, west, north, south))}
            inside = ((_float32_down(lons) <= east) & (_float32_up(lons) >= west)
                      & (_float32_down(lats) <= north) & (_float32_up(lats) >= south))
            assert found == set(fids[inside].tolist())
    assert _validate_gpkg(live) == []


def _post_many(base: str, worker: int, token: str, failures) -> None:
    """One client process: WRITES_EACH POST /sites to the running service; count any answer but 201."""
    import httpx

    rng = random.Random(1000 + worker)
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
        for number in range(WRITES_EACH):
            body = _site(f"http {worker} {number}", rng).model_dump(exclude_none=True)
            try:
                status = client.post("/sites", json=body).status_code
            except httpx.HTTPError:
                status = 0
            if status != 201:
                with failures.get_lock():
                    failures.value += 1


def test_eight_clients_post_at_once_to_a_two_worker_service(live):
    import httpx

    server = Service(live, workers=2).start()
    base, token = server.base, EDITOR_TOKEN
    try:
        before = httpx.get(f"{base}/sites?limit=1").json()["numberMatched"]
        failures = FORK.Value("i", 0)
        started = time.perf_counter()
        clients = [FORK.Process(target=_post_many, args=(base, n, token, failures)) for n in range(PROCESSES)]
        for client in clients:
            client.start()
        for client in clients:
            client.join()
        elapsed = time.perf_counter() - started
        stored = _count(live, "SELECT count(*) FROM sites WHERE id LIKE 'http-%'")
        ask = lambda: httpx.get(f"{base}/sites?limit=1").json()["numberMatched"]  # noqa: E731
        after = [_eventually(ask, before + stored, within_s=2.0) for _ in range(4)]  # both workers
    finally:
        server.kill()
    print(f"\n{PROCESSES} clients x {WRITES_EACH} POST /sites to 2 workers in {elapsed:.1f} s: "
          f"{failures.value} errors, {stored} rows stored, {PROCESSES * WRITES_EACH - stored} lost")
    assert failures.value == 0 and stored == PROCESSES * WRITES_EACH
    assert after == [before + stored] * 4
