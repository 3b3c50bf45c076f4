"""Maps side by side in one run: the README's `/map`, a 10,000-site `/map`, folium's FastMarkerCluster of the same
10,000 points, and the time Chromium takes to open the 10,000-site map.

``python bench/bench_maps.py`` (``--runs 7``). A benchmark, not a test: it prints one table of medians with the ratios
to the issue's targets and to the peer, and asserts nothing. The service runs as `uvicorn --workers 1` on a loopback
port: for the README's map on a temporary live copy of the bundled catalogue; for the 10,000-site map on another, with
10,000 seeded synthetic sites around North Korea imported (as `bench/bench_import.py` writes them, through the same
`import_file` the CLI calls). Times
are wall times of a whole GET (the client on the same machine), the first (warming) request left out; sizes are the
HTML's bytes (and, apart, the bytes sent when the client accepts gzip).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app import store  # noqa: E402
from app.importer import import_file  # noqa: E402
from bench.bench_import import write_csv  # noqa: E402

BUNDLED = REPO / "geodata" / "catalogue.gpkg"
README_MAP = "/map?near=Seoul&within_km=150&rings=true"
SITES = 10_000
TARGETS = {"readme_ms": 50, "readme_kb": 400, "big_s": 0.3, "big_mb": 4, "open_s": 2}


def free_port() -> int:
    """A port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Service:
    """`uvicorn app.main:app --workers 1` on a live file, in its own process group."""

    def __init__(self, live: Path):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "MISSILE_SITES_GPKG": str(live), "PYTHONPATH": str(REPO)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(self.port), "--workers", "1",
             "--log-level", "warning"], env=env, cwd=live.parent, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("the service did not answer /health")

    def stop(self) -> None:
        """Stop the service's process group."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(30)


def timed_get(client: httpx.Client, url: str, runs: int) -> tuple[float, int, int, str]:
    """Median seconds of `runs` GETs after one warming GET, the HTML's bytes, the gzip bytes sent, and the HTML."""
    client.get(url, timeout=120).raise_for_status()
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(url, timeout=120, headers={"Accept-Encoding": "identity"})
        seconds.append(time.perf_counter() - started)
        response.raise_for_status()
    zipped = client.get(url, timeout=120, headers={"Accept-Encoding": "gzip"})
    sent = int(zipped.headers.get("content-length") or len(zipped.content)) if \
        zipped.headers.get("content-encoding") == "gzip" else len(zipped.content)
    return float(np.median(seconds)), len(response.content), sent, response.text


def folium_peer(lons, lats, runs: int) -> tuple[float, int]:
    """folium's FastMarkerCluster of the same points: median seconds to build and render, and the HTML's bytes."""
    import folium
    from folium.plugins import FastMarkerCluster

    seconds, html = [], ""
    for _ in range(runs + 1):
        started = time.perf_counter()
        m = folium.Map(location=[40, 127], zoom_start=6)
        FastMarkerCluster(list(zip(lats.tolist(), lons.tolist()))).add_to(m)
        html = m.get_root().render()
        seconds.append(time.perf_counter() - started)
    return float(np.median(seconds[1:])), len(html.encode())


def chromium_open(html: str, runs: int) -> float | str:
    """Median seconds for offline Chromium to load the map until Leaflet has drawn it and every marker is made."""
    try:
        from app.snapshot import BrowserProblem, offline_page
    except ImportError as exc:
        return f"not run ({exc})"
    seconds = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "map.html"
        path.write_text(html, encoding="utf-8")
        try:
            with offline_page() as (page, log):
                for _ in range(runs):
                    started = time.perf_counter()
                    page.goto(path.as_uri())
                    page.wait_for_function(f"() => (window.missileSitesMaps || []).length === 1 && "
                                           f"window.missileSitesMaps[0].markers.length === {SITES}", timeout=60_000)
                    seconds.append(time.perf_counter() - started)
                if log.problems:
                    return "page problems: " + "; ".join(log.problems[:3])
        except BrowserProblem as exc:
            return f"not run ({exc})"
    return float(np.median(seconds))


def synthetic_live(folder: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """A live copy of the bundled catalogue with SITES synthetic sites imported; their lon/lat."""
    live = store.ensure_live(folder / "live.gpkg", BUNDLED)
    source = write_csv(folder / "sites.csv", SITES)
    started = time.perf_counter()
    import_file(source, live, actor="bench")
    print(f"imported {SITES:,} synthetic sites in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    import csv

    with source.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return live, np.array([float(r["lon"]) for r in rows]), np.array([float(r["lat"]) for r in rows])


def row(what: str, value: str, target: str, ratio: str) -> list[str]:
    """One table row."""
    return [what, value, target, ratio]


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per measurement (medians)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        service = Service(store.ensure_live(Path(folder) / "bundled.gpkg", BUNDLED))
        try:
            with httpx.Client(base_url=service.base) as client:
                readme_s, readme_bytes, readme_sent, _ = timed_get(client, README_MAP, args.runs)
        finally:
            service.stop()
        live, lons, lats = synthetic_live(Path(folder))
        service = Service(live)
        try:
            with httpx.Client(base_url=service.base) as client:
                big_s, big_bytes, big_sent, big_html = timed_get(client, f"/map?limit={SITES}", args.runs)
        finally:
            service.stop()
    peer_s, peer_bytes = folium_peer(lons, lats, args.runs)
    open_s = chromium_open(big_html, max(3, args.runs // 2))
    rows = [
        row(f"README map `{README_MAP}` (3 sites, rings): ms", f"{readme_s * 1000:,.1f}", f"≤ {TARGETS['readme_ms']}",
            f"{readme_s * 1000 / TARGETS['readme_ms']:.2f} of target"),
        row("README map: KB of HTML (gzip sent)", f"{readme_bytes / 1024:,.0f} ({readme_sent / 1024:,.0f})",
            f"≤ {TARGETS['readme_kb']}", f"{readme_bytes / 1024 / TARGETS['readme_kb']:.2f} of target"),
        row(f"/map?limit={SITES} ({SITES:,} sites): s", f"{big_s:.3f}", f"≤ {TARGETS['big_s']}",
            f"{big_s / TARGETS['big_s']:.2f} of target; {big_s / peer_s:.1f}x folium"),
        row(f"{SITES:,}-site map: MB of HTML (gzip sent)", f"{big_bytes / 1e6:.2f} ({big_sent / 1e6:.2f})",
            f"≤ {TARGETS['big_mb']}", f"{big_bytes / 1e6 / TARGETS['big_mb']:.2f} of target; "
            f"{big_bytes / peer_bytes:.1f}x folium"),
        row(f"folium FastMarkerCluster, same {SITES:,} points: s", f"{peer_s:.3f}", "peer", "1"),
        row(f"folium FastMarkerCluster, same {SITES:,} points: MB", f"{peer_bytes / 1e6:.2f}", "peer", "1"),
        row(f"Chromium opens the {SITES:,}-site map (offline, every marker made): s",
            open_s if isinstance(open_s, str) else f"{open_s:.2f}", f"≤ {TARGETS['open_s']}",
            "-" if isinstance(open_s, str) else f"{open_s / TARGETS['open_s']:.2f} of target"),
    ]
    header = ["measure (medians)", "value", "target", "ratio"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    print(f"\n## Maps, {args.runs} runs each, uvicorn --workers 1, {os.cpu_count()} cores\n")
    for n, cells in enumerate([header, *rows]):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |")
        if n == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


if __name__ == "__main__":
    main()
