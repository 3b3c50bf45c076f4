"""Chaos: a two-worker service, 8 writers, imports, backups and sqlite3 readers on one live file, the service
killed with SIGKILL and restarted 10 times; nothing acknowledged is lost, nothing is half-written."""

from __future__ import annotations

import multiprocessing
import random
import subprocess
import time
from contextlib import closing

import httpx
import pytest

from app import store
from app.settings import GEODATA_DIR
from tests.service import EDITOR, Service, cli
from tests.test_durability import _validate_gpkg

FORK = multiprocessing.get_context("fork")
WRITERS, KILLS = 8, 10
SOURCE = "38-north-iha-ri"


def _writer(base: str, number: int, stop, acknowledged, counts) -> None:
    """POST sites until stopped; queue each acknowledged id; count 5xx answers (a refused connection is the service
    being down, not an answer)."""
    rng = random.Random(number)
    with httpx.Client(base_url=base, headers=EDITOR, timeout=60) as client:
        for serial in range(10**9):
            if stop.is_set():
                return
            body = {"name": f"chaos {number} {serial}", "country": "PRK", "facility_type": "missile_base",
                    "lon": rng.uniform(124, 131), "lat": rng.uniform(37, 43), "coord_confidence": "approximate",
                    "coord_source_id": SOURCE, "source_ids": [SOURCE]}
            try:
                answer = client.post("/sites", json=body)
            except httpx.HTTPError:
                time.sleep(0.05)
                continue
            if answer.status_code == 201:
                acknowledged.put(answer.json()["record"]["id"])
            elif answer.status_code >= 500:
                with counts.get_lock():
                    counts[0] += 1


def _reader(base: str, stop, counts) -> None:
    """GET sites and health until stopped; count answers and 5xx answers."""
    with httpx.Client(base_url=base, timeout=60) as client:
        while not stop.is_set():
            for path in ("/sites?limit=1", "/health", "/sites/sakkanmol"):
                try:
                    status = client.get(path).status_code
                except httpx.HTTPError:
                    time.sleep(0.05)
                    continue
                with counts.get_lock():
                    counts[1] += 1
                    counts[2] += status >= 500


def _others(live, env, folder, stop, imported, counts) -> None:
    """Imports, backups and plain sqlite3 readers on the same file, in turn, until stopped."""
    for turn in range(10**9):
        if stop.is_set():
            return
        rows = folder / f"import-{turn}.csv"
        names = [f"chaos import {turn} {n}" for n in range(20)]
        rows.write_text("name,country,facility_type,source_ids\n" + "".join(
            f"{name},PRK,missile_base,{SOURCE}\n" for name in names), encoding="utf-8")
        if cli("import", rows, "--actor", "importer", env=env).returncode == 0:
            for name in names:
                imported.put(name)
        backup = cli("backup", folder / f"backup-{turn}.gpkg", env=env)
        reader = subprocess.run(["sqlite3", str(live), "SELECT count(*) FROM sites; PRAGMA quick_check;"],
                                capture_output=True, text=True, timeout=60)
        with counts.get_lock():
            counts[3] += 1
            counts[4] += backup.returncode != 0 or reader.returncode != 0


def _drain(queue) -> list:
    """Everything put on a multiprocessing queue."""
    items = []
    while True:
        try:
            items.append(queue.get(timeout=1))
        except Exception:
            return items


@pytest.mark.slow
def test_nothing_acknowledged_is_lost_through_kills_imports_backups_and_readers(tmp_path):
    live = store.ensure_live(tmp_path / "live.gpkg", GEODATA_DIR / "catalogue.gpkg")
    (tmp_path / "others").mkdir()
    service = Service(live, workers=2).start()
    stop, acknowledged, imported = FORK.Event(), FORK.Queue(), FORK.Queue()
    counts = FORK.Array("i", 5)  # write 5xx, reads, read 5xx, other-process turns, other-process failures
    processes = [FORK.Process(target=_writer, args=(service.base, n, stop, acknowledged, counts)) for n in range(WRITERS)]
    processes.append(FORK.Process(target=_reader, args=(service.base, stop, counts)))
    processes.append(FORK.Process(target=_others, args=(live, service.env, tmp_path / "others", stop, imported, counts)))
    rng = random.Random(20261129)
    started = time.perf_counter()
    for process in processes:
        process.start()
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(1.0, 3.0))
            service.kill()
            service.start()
        time.sleep(2.0)
    finally:
        stop.set()
        for process in processes:
            process.join(120)
        service.stop()
    elapsed = time.perf_counter() - started
    acked, imported_names = _drain(acknowledged), _drain(imported)
    with closing(store.connect(live)) as connection:  # a writer's connection recovers the WAL
        integrity = connection.execute("PRAGMA integrity_check").fetchall()
        stored = {row[0] for row in connection.execute("SELECT id FROM sites WHERE id LIKE 'chaos-%'")}
        names = {row[0] for row in connection.execute("SELECT name FROM sites WHERE name LIKE 'chaos import %'")}
        creates = dict(connection.execute("SELECT entity_id, count(*) FROM changes WHERE action = 'create'"
                                          " AND entity = 'site' AND entity_id LIKE 'chaos-%' GROUP BY entity_id"))
        unlogged = connection.execute("SELECT count(*) FROM changes WHERE entity = 'site' AND entity_id NOT IN"
                                      " (SELECT id FROM sites)").fetchone()[0]
    lost = set(acked) - stored
    problems = _validate_gpkg(live)
    print(f"\nchaos: {elapsed:.0f} s, {KILLS} SIGKILLs of a 2-worker service; {WRITERS} writers: {len(acked)} writes "
          f"acknowledged, {len(lost)} lost, {counts[0]} answered 5xx; {counts[1]} reads, {counts[2]} answered 5xx; "
          f"{counts[3]} import/backup/sqlite3 turns ({counts[4]} failed), {len(imported_names)} rows imported, "
          f"{len(set(imported_names) - names)} lost; integrity_check {integrity[0][0]}; validate_gpkg "
          f"{'ok' if not problems else problems[:3]}; {len(stored)} sites, each with "
          f"{sorted(set(creates.values()))} create record(s)")
    assert integrity == [("ok",)] and problems == []
    assert acked and not lost and counts[0] == 0
    assert counts[1] > 0 and counts[2] == 0
    assert counts[3] > 0 and counts[4] == 0 and imported_names and set(imported_names) <= names
    assert set(creates) == stored and set(creates.values()) == {1} and unlogged == 0
