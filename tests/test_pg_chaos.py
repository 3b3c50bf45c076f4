"""Chaos on PostGIS: two "hosts" (process groups, each `missile-sites serve --workers 2`) on one database, 8 writers
spread over both, one host SIGKILLed and restarted 10 times; nothing acknowledged is lost, every worker answers
with every write within 1 s of its acknowledgement, and the database's constraints and records hold."""

from __future__ import annotations

import bisect
import multiprocessing
import random
import sys
import time

import httpx
import pytest

from tests.conftest import engine_rows, fresh_database
from tests.service import EDITOR, Service
from tests.test_chaos import _drain

FORK = multiprocessing.get_context("fork")
WRITERS, KILLS, VISIBLE_S = 8, 10, 1.0
SOURCE = "38-north-iha-ri"


class Host(Service):
    """One host: `missile-sites serve --workers N` in its own process group, on the database."""

    def command(self) -> list[str]:
        """This checkout's `missile-sites serve`."""
        return [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                "--workers", str(self.workers)]


def _writer(bases: list[str], number: int, stop, acknowledged, counts) -> None:
    """POST sites to the hosts in turn until stopped; queue (id, change id, acknowledged at) of each 201; count 5xx
    answers (a refused or cut connection is a host being down, not an answer)."""
    rng = random.Random(number)
    clients = [httpx.Client(base_url=base, headers=EDITOR, timeout=60) for base in bases]
    for serial in range(10**9):
        if stop.is_set():
            break
        body = {"name": f"chaos {number} {serial}", "country": "PRK", "facility_type": "missile_base",
                "lon": rng.uniform(124, 131), "lat": rng.uniform(37, 43), "coord_confidence": "approximate",
                "coord_source_id": SOURCE, "source_ids": [SOURCE], "missile_types": ["hwasong-10"]}
        try:
            answer = clients[serial % len(clients)].post("/sites", json=body)
        except httpx.HTTPError:
            time.sleep(0.05)
            continue
        if answer.status_code == 201:
            acknowledged.put((answer.json()["record"]["id"], answer.json()["change"]["id"], time.time()))
        elif answer.status_code >= 500:
            with counts.get_lock():
                counts[0] += 1
    for client in clients:
        client.close()


def _watcher(bases: list[str], stop, seen, counts) -> None:
    """Ask /health on new connections (so any worker answers) until stopped; queue (asked at, host, worker, newest
    change id) of each answer."""
    while not stop.is_set():
        for host, base in enumerate(bases):
            asked = time.time()
            try:
                answer = httpx.get(f"{base}/health", timeout=10)
            except httpx.HTTPError:
                continue
            with counts.get_lock():
                counts[1] += 1
                counts[2] += answer.status_code >= 500
            if answer.status_code == 200:
                version = str(answer.json()["data_version"])
                seen.put((asked, host, answer.json()["worker"], int(version.split("+")[1]) if "+" in version else 0))
        time.sleep(0.005)


def _stale_answers(acks: list[tuple], seen: list[tuple]) -> list[tuple]:
    """The answers that lacked a write acknowledged more than VISIBLE_S before they were asked for."""
    acks = sorted(acks, key=lambda a: a[2])
    times = [a[2] for a in acks]
    newest_due, running = [], 0
    for _, change, _ in acks:
        running = max(running, change)
        newest_due.append(running)
    stale = []
    for asked, host, worker, newest in seen:
        due = bisect.bisect_right(times, asked - VISIBLE_S)
        if due and newest < newest_due[due - 1]:
            stale.append((asked, host, worker, newest, newest_due[due - 1]))
    return stale


@pytest.mark.slow
def test_two_hosts_on_one_database_lose_nothing_through_kills(pg_cluster, pg_template, tmp_path):
    url = fresh_database(pg_cluster, pg_template)
    hosts = [Host(tmp_path / "unused.gpkg", workers=2, MISSILE_SITES_DATABASE_URL=url) for _ in range(2)]
    for host in hosts:
        host.start(wait_s=600)
    bases = [host.base for host in hosts]
    stop, acknowledged, seen = FORK.Event(), FORK.Queue(), FORK.Queue()
    counts = FORK.Array("i", 3)  # write 5xx, health answers, health 5xx
    processes = [FORK.Process(target=_writer, args=(bases, n, stop, acknowledged, counts)) for n in range(WRITERS)]
    processes.append(FORK.Process(target=_watcher, args=(bases, stop, seen, counts)))
    rng = random.Random(20261129)
    started = time.perf_counter()
    for process in processes:
        process.start()
    try:
        for kill in range(KILLS):
            time.sleep(rng.uniform(1.0, 3.0))
            hosts[kill % 2].kill()
            hosts[kill % 2].start(wait_s=600)
        time.sleep(2.0)
    finally:
        stop.set()
        for process in processes:
            process.join(120)
        for host in hosts:
            host.stop()
    elapsed = time.perf_counter() - started
    acks, answers = _drain(acknowledged), _drain(seen)
    stale = _stale_answers(acks, answers)
    stored = {row[0] for row in engine_rows(url, "SELECT id FROM sites WHERE id LIKE 'chaos-%'")}
    creates = dict(engine_rows(url, "SELECT entity_id, count(*) FROM changes WHERE action = 'create' AND entity ="
                                    " 'site' AND entity_id LIKE 'chaos-%' GROUP BY entity_id"))
    unlinked = engine_rows(url, "SELECT count(*) FROM sites s WHERE s.id LIKE 'chaos-%' AND ((SELECT count(*) FROM"
                                " site_sources l WHERE l.owner_id = s.id) <> 1 OR (SELECT count(*) FROM site_missiles m"
                                " WHERE m.owner_id = s.id) <> 1)")
    orphans = engine_rows(url, "SELECT count(*) FROM changes WHERE entity = 'site' AND entity_id NOT IN"
                               " (SELECT id FROM sites)")
    lost = {site_id for site_id, _, _ in acks} - stored
    workers = {(host, worker) for _, host, worker, _ in answers}
    print(f"\nchaos on PostGIS: {elapsed:.0f} s, {KILLS} SIGKILLs of one of 2 hosts (serve --workers 2 each); "
          f"{WRITERS} writers: {len(acks)} writes acknowledged ({len(acks) / elapsed:.1f}/s), {len(lost)} lost, "
          f"{counts[0]} answered 5xx; {counts[1]} /health answers from {len(workers)} worker processes, {counts[2]} "
          f"5xx, {len(stale)} lacking a write acknowledged > {VISIBLE_S:g} s earlier; {len(stored)} chaos sites, "
          f"each with {sorted(set(creates.values()))} create record(s); link rows off {unlinked[0][0]}, "
          f"changes without a site {orphans[0][0]}")
    assert acks and not lost and counts[0] == 0
    assert counts[1] > 0 and counts[2] == 0 and not stale, stale[:5]
    assert set(creates) == stored and set(creates.values()) == {1}
    assert unlinked == [(0,)] and orphans == [(0,)]
