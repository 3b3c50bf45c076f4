"""Readers never wait for a refresh: a 10^5-site catalogue keeps answering while a new snapshot is built beside it."""

from __future__ import annotations

import threading
import time
from contextlib import closing

import numpy as np
import pytest

from app import store
from app.settings import GEODATA_DIR
from tests.service import EDITOR
from tests.test_integrity import editor_app, new_site

BIG = 100_000


def add_copies_of_sakkanmol(live, count: int, seed: int = 20261129) -> None:
    """`count` sites copied from Sakkanmol at random points around Korea, in one transaction and no change record
    (as a bulk load outside the API would be)."""
    rng = np.random.default_rng(seed)
    lons, lats = rng.uniform(124.0, 131.0, count), rng.uniform(37.0, 43.0, count)
    with closing(store.connect(live)) as connection, store.transaction(connection):
        columns = [row[1] for row in connection.execute('PRAGMA table_info("sites")')
                   if row[1] not in ("fid", "geom", "id", "name")]
        listed = ", ".join(f'"{c}"' for c in columns)
        copied = connection.execute(f"SELECT {listed} FROM sites WHERE id = 'sakkanmol'").fetchone()
        rows = [(store.point_blob(float(lon), float(lat)), f"bulk-{n}", f"Bulk {n}", *copied)
                for n, (lon, lat) in enumerate(zip(lons, lats))]
        marks = ", ".join("?" * (3 + len(columns)))
        connection.executemany(f"INSERT INTO sites (geom, id, name, {listed}) VALUES ({marks})", rows)


@pytest.fixture(scope="module")
def big_live(tmp_path_factory):
    """A live catalogue with 10^5 more sites."""
    live = store.ensure_live(tmp_path_factory.mktemp("big") / "live.gpkg", GEODATA_DIR / "catalogue.gpkg")
    add_copies_of_sakkanmol(live, BIG)
    return live


def _percentiles(latencies: list[float]) -> str:
    """p50 / p99 / max in ms."""
    values = np.array(latencies) * 1000
    return f"p50 {np.percentile(values, 50):.1f} ms, p99 {np.percentile(values, 99):.1f} ms, max {values.max():.1f} ms"


@pytest.mark.slow
def test_reads_keep_answering_while_a_big_catalogue_refreshes(big_live):
    with editor_app(big_live) as client:
        live = client.app.state.live
        stop, reads = threading.Event(), []

        def read() -> None:
            while not stop.is_set():
                started = time.perf_counter()
                status = client.get("/sites/sakkanmol").status_code
                reads.append((started, time.perf_counter(), status))

        reader = threading.Thread(target=read)
        reader.start()
        time.sleep(0.5)
        # A commit with no change record: the refresher must read the layers whole (the costliest refresh).
        before = live.current()
        started = time.perf_counter()
        with closing(store.connect(big_live)) as connection:
            connection.execute("UPDATE sites SET notes = 'touched outside the API' WHERE id = 'sakkanmol'")
        while live.current() is before and time.perf_counter() - started < 120:
            time.sleep(0.01)
        whole = time.perf_counter() - started
        # One site through the API: the refresh reads only the rows the change log names.
        posted = time.perf_counter()
        assert client.post("/sites", json=new_site("one more"), headers=EDITOR).status_code == 201
        one = time.perf_counter() - posted
        stop.set()
        reader.join()
        assert client.get("/sites/sakkanmol").json()["properties"]["notes"] == "touched outside the API"
        assert client.get("/sites/one-more").status_code == 200
        assert client.get("/sites?limit=1").json()["numberMatched"] == len(before.sites) + 1
    during = [end - begin for begin, end, _ in reads if begin >= started and end <= started + whole]
    print(f"\n{len(before.sites)} sites: whole refresh {whole:.2f} s, {len(during)} reads answered during it "
          f"({_percentiles(during)}); one-site write visible in {one * 1000:.0f} ms; "
          f"all reads {_percentiles([end - begin for begin, end, _ in reads])}")
    assert all(status == 200 for _, _, status in reads)
    assert len(during) >= 10  # reads went on while the new snapshot was built
