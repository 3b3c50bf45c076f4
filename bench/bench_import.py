"""`missile-sites import` at 10^3, 10^4 and 10^5 rows: the time to check every row, and the time the write
transaction holds the lock.

``python bench/bench_import.py`` (``--sizes 1000,10000`` for a shorter run). A benchmark, not a test: it prints
one table and asserts nothing. Each size imports a seeded synthetic CSV (named, located sites citing a bundled
source and missile; one in ten shares its name with another, so ids are made free with -2, -3 ...) into a fresh
live copy of the bundled catalogue in a temporary folder, through the same `import_file` the CLI calls.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app import store  # noqa: E402
from app.importer import import_file  # noqa: E402

BUNDLED = REPO / "geodata" / "catalogue.gpkg"
SOURCE = "38-north-iha-ri"
COLUMNS = ("name", "aliases", "country", "lon", "lat", "coord_confidence", "coord_source_id", "facility_type",
           "missile_types", "notes", "source_ids")


def write_csv(path: Path, rows: int, seed: int = 1) -> Path:
    """A CSV of `rows` new sites in and around North Korea."""
    generator = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for number in range(rows):
            name = f"Bench site {number // 10 if number % 10 == 0 else number}"
            writer.writerow([name, f"Alias {number}; Other; name", "PRK", f"{generator.uniform(124.5, 130.5):.6f}",
                             f"{generator.uniform(37.8, 42.9):.6f}", "approximate", SOURCE, "missile_base",
                             "hwasong-10; hwasong-11a", f"bench row {number}", SOURCE])
    return path


def run(rows: int, folder: Path) -> dict:
    """Import one synthetic file into a fresh live copy; the phases' seconds."""
    live = store.ensure_live(folder / f"live-{rows}.gpkg", BUNDLED)
    source = write_csv(folder / f"sites-{rows}.csv", rows)
    started, cpu_started = time.perf_counter(), time.process_time()
    result = import_file(source, live, actor="bench")
    total, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    assert result.written and len(result.good) == rows, "the benchmark's rows must all be good"
    with closing(store.connect_readonly(live)) as connection:
        changes = connection.execute("SELECT count(*) FROM changes").fetchone()[0]
    assert changes == rows, "one change record per created site"
    return {"rows": rows, "check": result.check_seconds, "write": result.write_seconds, "total": total, "cpu": cpu}


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated row counts")
    sizes = [int(size) for size in parser.parse_args().sizes.split(",")]
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    print(f"{'rows':>8} {'check s':>9} {'write s':>9} {'total s':>9} {'s / 1000 rows':>14} {'total cpu s':>12}")
    with tempfile.TemporaryDirectory(prefix="bench-import-") as folder:
        for rows in sizes:
            r = run(rows, Path(folder))
            print(f"{r['rows']:>8} {r['check']:>9.2f} {r['write']:>9.2f} {r['total']:>9.2f}"
                  f" {r['total'] / r['rows'] * 1000:>14.3f} {r['cpu']:>12.2f}", flush=True)
    print("check: every row checked and every row to insert prepared, no lock held (reading the file is only in"
          " total); write: the BEGIN IMMEDIATE ... COMMIT transaction, the time the write lock is held;"
          " total cpu: this process's CPU time (wall times grow with the machine's load)")


if __name__ == "__main__":
    main()
