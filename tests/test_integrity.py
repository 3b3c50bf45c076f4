"""The live catalogue beside every other process: regressions of issue 10's reproductions, each on a real file."""

from __future__ import annotations

import datetime
import multiprocessing
import subprocess
import threading
import time
from contextlib import closing
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from app import store
from app.main import create_app
from app.settings import GEODATA_DIR, Settings
from app.store import LiveFileProblem
from tests.service import EDITOR, Service, cli, service_env

BUNDLED = GEODATA_DIR / "catalogue.gpkg"
SOURCE = "38-north-iha-ri"
FORK = multiprocessing.get_context("fork")


def new_site(name: str, lon: float = 126.5, lat: float = 39.0) -> dict:
    """A POST /sites body."""
    return {"name": name, "country": "PRK", "facility_type": "missile_base", "lon": lon, "lat": lat,
            "coord_confidence": "approximate", "coord_source_id": SOURCE, "source_ids": [SOURCE]}


@pytest.fixture
def live(tmp_path) -> Path:
    """A live copy of the bundled catalogue."""
    return store.ensure_live(tmp_path / "live.gpkg", BUNDLED)


def count(path: Path, sql: str, *args) -> int:
    """One number from the file, through SQLite."""
    with closing(store.connect_readonly(path)) as connection:
        return connection.execute(sql, args).fetchone()[0]


def editor_app(live: Path, **settings) -> TestClient:
    """An in-process client of an app on `live` that knows the editor's token."""
    from tests.service import EDITOR_TOKEN
    from app.auth import hash_token

    tokens = [{"name": "editor", "role": "editor", "sha256": hash_token(EDITOR_TOKEN)}]
    app = create_app(Settings(gpkg=live, tokens=tokens, write_burst=10_000, _env_file=None, **settings))
    return TestClient(app, raise_server_exceptions=False)


# --- 1. another process on the live file never costs an acknowledged write -------------------------


@pytest.mark.slow
def test_backup_import_and_sqlite3_readers_beside_the_service_lose_nothing(live, tmp_path):
    """At 54b74b8 the service hashed the live file with open() while its connections were open, dropping its locks:
    the backup's close deleted the WAL, reads answered 500 and acknowledged writes were gone after a restart."""
    rows = tmp_path / "rows.csv"
    rows.write_text("name,country,facility_type,source_ids\nImported beside the service,PRK,missile_base,"
                    f"{SOURCE}\n", encoding="utf-8")
    acknowledged = []
    with Service(live) as service:
        for round_ in range(3):
            answer = httpx.post(f"{service.base}/sites", json=new_site(f"beside {round_}"), headers=EDITOR, timeout=30)
            assert answer.status_code == 201
            acknowledged.append(answer.json()["record"]["id"])
            assert cli("backup", tmp_path / f"b{round_}.gpkg", env=service.env).returncode == 0
            assert subprocess.run(["sqlite3", str(live), "SELECT count(*) FROM sites"], capture_output=True,
                                  timeout=30).returncode == 0
            assert cli("import", rows, "--actor", "importer", env=service.env).returncode == 0
            assert live.with_name(live.name + "-wal").exists()  # the service still holds the file in WAL mode
            for path in ("/health", "/sites?limit=1", f"/sites/{acknowledged[-1]}"):
                assert httpx.get(f"{service.base}{path}", timeout=30).status_code == 200, path
    with Service(live) as service:
        for site_id in acknowledged:
            assert httpx.get(f"{service.base}/sites/{site_id}", timeout=30).status_code == 200
    assert count(live, "PRAGMA integrity_check") == "ok"
    assert count(live, "SELECT count(*) FROM sites WHERE name = 'Imported beside the service'") == 3


# --- 3. workers starting at once on a missing live file share one ----------------------------------


def _seed_at_once(path: Path, start, results) -> None:
    """One process seeding the live file at the same moment as the others; its file's inode."""
    start.wait()
    live = store.ensure_live(path, BUNDLED)
    results.put(live.stat().st_ino)


def test_processes_seeding_at_once_share_one_file(tmp_path):
    """At 54b74b8 each seeded its own copy and os.replace'd it over the others' (one then read a deleted file)."""
    for run in range(10):
        path = tmp_path / f"run{run}" / "live.gpkg"
        start, results = FORK.Event(), FORK.Queue()
        processes = [FORK.Process(target=_seed_at_once, args=(path, start, results)) for _ in range(4)]
        for process in processes:
            process.start()
        start.set()
        for process in processes:
            process.join(60)
        inodes = {results.get(timeout=5) for _ in processes}
        assert inodes == {path.stat().st_ino}
        assert sorted(p.name for p in path.parent.iterdir()) == ["live.gpkg", "live.gpkg.seeded"]


def _every_worker_sees(service: Service, workers: int, expected_sites: int) -> set[int]:
    """Ask /health on fresh connections until every worker has answered with the expected count."""
    seen: dict[int, int] = {}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        health = httpx.get(f"{service.base}/health", timeout=10).json()
        seen[health["worker"]] = health["sites"]
        done = {pid for pid, sites in seen.items() if sites == expected_sites}
        if len(done) == workers:
            return done
    raise AssertionError(f"workers and their site counts after 20 s: {seen}")


@pytest.mark.slow
@pytest.mark.parametrize("workers", [2, 4])
def test_workers_starting_at_once_on_a_missing_file_read_every_write(tmp_path, workers):
    bundled_sites = count(BUNDLED, "SELECT count(*) FROM sites")
    for run in range(4):  # each run starts a whole multi-worker service; 4 keep CI under 15 minutes
        live = tmp_path / f"run{run}" / "live.gpkg"
        live.parent.mkdir()
        with Service(live, workers=workers) as service:
            assert httpx.post(f"{service.base}/sites", json=new_site(f"run {run}"), headers=EDITOR,
                              timeout=30).status_code == 201
            assert len(_every_worker_sees(service, workers, bundled_sites + 1)) == workers
        assert count(live, "SELECT count(*) FROM sites") == bundled_sites + 1


# --- 4. a busy database is a 503 to retry, never a 500 after 30 s -----------------------------------


def test_a_write_that_cannot_get_the_lock_answers_503_with_retry_after(live):
    with editor_app(live, write_wait_s=0.5) as client:
        holder = store.connect(live)
        holder.execute("BEGIN IMMEDIATE")  # another process's long write, e.g. an import
        try:
            started = time.monotonic()
            answer = client.post("/sites", json=new_site("while busy"), headers=EDITOR)
            waited = time.monotonic() - started
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert answer.status_code == 503 and int(answer.headers["Retry-After"]) > 0
        assert answer.json()["error"]["code"] == "busy" and "busy" in answer.json()["error"]["message"]
        assert waited < 10
        assert client.post("/sites", json=new_site("after busy"), headers=EDITOR).status_code == 201
        assert client.get("/sites/while-busy").status_code == 404
    assert count(live, "SELECT count(*) FROM changes") == 1


def test_writes_queued_behind_a_held_lock_all_land_once_it_is_released(live):
    """API writes during an import wait and succeed (the import holds the lock for less than write_wait_s)."""
    with editor_app(live, write_wait_s=20) as client:
        holder = store.connect(live)
        holder.execute("BEGIN IMMEDIATE")
        answers = []
        threads = [threading.Thread(target=lambda n=n: answers.append(
            client.post("/sites", json=new_site(f"queued {n}"), headers=EDITOR).status_code)) for n in range(6)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        holder.execute("ROLLBACK")
        holder.close()
        for thread in threads:
            thread.join(60)
        assert answers == [201] * 6
        assert client.get("/sites?limit=1").json()["numberMatched"] == count(live, "SELECT count(*) FROM sites")


# --- 6. bounded memory for as_of -------------------------------------------------------------------


def test_as_of_snapshots_are_kept_in_a_bounded_cache(client):
    catalogue = client.app.state.live.current()
    days = [datetime.date(2020, 1, 1) + datetime.timedelta(days=n) for n in range(40)]
    for day in days:
        assert client.get(f"/sites?as_of={day.isoformat()}&limit=1").status_code == 200
    assert 0 < len(catalogue._as_of_cache) <= 8
    assert list(catalogue._as_of_cache)[-1] == days[-1]


# --- 7. a missing, corrupt, deleted or read-only live file -----------------------------------------


@pytest.mark.parametrize("content", [b"", b"not a database at all" * 100, b"SQLite format 3\x00" + b"\xff" * 4000])
def test_a_corrupt_or_empty_live_file_stops_the_service_with_one_line(tmp_path, content):
    live = tmp_path / "live.gpkg"
    live.write_bytes(content)
    served = cli("serve", "--port", "1", env=service_env(live), timeout=60)
    assert served.returncode == 2
    lines = [line for line in served.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(live) in lines[0] and "Traceback" not in served.stderr
    assert live.read_bytes() == content  # never seeded over
    with pytest.raises(LiveFileProblem, match=str(live)):
        with TestClient(create_app(Settings(gpkg=live, _env_file=None))):
            pass


def test_a_live_file_deleted_under_the_service_refuses_writes_and_is_never_reseeded(live):
    with editor_app(live) as client:
        assert client.post("/sites", json=new_site("before deletion"), headers=EDITOR).status_code == 201
        live.unlink()
        assert client.get("/sites/before-deletion").status_code == 200  # reads go on from the snapshot
        answer = client.post("/sites", json=new_site("after deletion"), headers=EDITOR)
        assert answer.status_code == 503 and str(live) in answer.json()["error"]["message"]
        assert client.get("/health").status_code == 503
    with pytest.raises(LiveFileProblem, match="restore it from a backup"):
        store.ensure_live(live, BUNDLED)
    assert not live.exists()


def test_a_missing_live_file_with_its_wal_left_is_not_seeded_over(tmp_path):
    live = tmp_path / "live.gpkg"
    live.with_name("live.gpkg-wal").write_bytes(b"\x00" * 32)
    with pytest.raises(LiveFileProblem, match="-wal"):
        store.ensure_live(live, BUNDLED)
    assert not live.exists()


def _write_as_nobody(live: Path, result) -> None:
    """In a child: the app started as root, then the process becomes a user that can read but not write the file
    (as an operator's read-only mount would); one POST; its status and error code, and a read's status."""
    import os

    try:
        with editor_app(live) as client:
            assert client.get("/sites?limit=1").status_code == 200
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            answer = client.post("/sites", json=new_site("read-only"), headers=EDITOR)
            result.put((answer.status_code, answer.json()["error"]["code"], client.get("/sites?limit=1").status_code))
    except BaseException as exc:  # reported to the parent, which fails the test
        result.put(repr(exc))


def test_a_read_only_live_file_answers_503_on_write_and_reads_go_on(tmp_path):
    import os

    if os.geteuid() != 0:
        live = store.ensure_live(tmp_path / "live.gpkg", BUNDLED)
        live.chmod(0o444)
        with editor_app(live) as client:
            answer = client.post("/sites", json=new_site("read-only"), headers=EDITOR)
            assert (answer.status_code, answer.json()["error"]["code"]) == (503, "storage_unavailable")
        return
    folder = Path("/tmp") / f"missile-sites-ro-{os.getpid()}"  # root's tmp_path is closed to other users
    folder.mkdir(mode=0o777, exist_ok=True)
    folder.chmod(0o777)
    live = store.ensure_live(folder / "live.gpkg", BUNDLED)
    live.chmod(0o644)  # readable by all, writable only by root
    result = FORK.Queue()
    child = FORK.Process(target=_write_as_nobody, args=(live, result))
    child.start()
    child.join(120)
    outcome = result.get(timeout=5)
    for leftover in folder.iterdir():
        leftover.unlink()
    folder.rmdir()
    assert outcome == (503, "storage_unavailable", 200)
