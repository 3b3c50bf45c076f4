"""The README's "a team's server" block, run line by line as written against the throwaway cluster: libpq's own PGHOST
points its `createuser`, `createdb`, `psql` and `postgresql:///missile_sites` at the cluster's socket, and
`missile-sites` on the PATH is this checkout's CLI. The four workers answer as the GeoPackage engine does."""

import os
import signal
import stat
import subprocess
import sys
import time

import httpx
import pytest

from app.settings import REPO_ROOT
from tests.service import free_port
from tests.test_docs import team_server_block

QUERY = "/sites?near=Seoul&within_km=150"


def _environment(cluster, folder) -> dict[str, str]:
    """The shell's environment: the cluster's socket as PGHOST, this checkout's `missile-sites` first on the PATH."""
    shim = folder / "bin" / "missile-sites"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m app.cli "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "MISSILE_SITES_"))}
    return {**env, "PGHOST": str(cluster.root), "PATH": f"{shim.parent}:{env['PATH']}", "PYTHONPATH": str(REPO_ROOT),
            "MISSILE_SITES_HOST": "127.0.0.1", "MISSILE_SITES_PORT": str(free_port())}


def _wait_for_health(base: str, server: subprocess.Popen, wait_s: float = 120) -> httpx.Response:
    """/health's first 200, or a failure with the server's output."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        assert server.poll() is None, server.stderr.read().decode()[-3000:]
        try:
            response = httpx.get(f"{base}/health", timeout=5)
            if response.status_code == 200:
                return response
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("the team's server did not answer /health in time")


@pytest.mark.slow
def test_the_team_server_block_runs_as_written(pg_cluster, client, tmp_path):
    *setup, serve = team_server_block()
    env = _environment(pg_cluster, tmp_path)
    for line in setup:
        done = subprocess.run(["bash", "-c", line], env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, f"{line}\n{done.stdout}{done.stderr}"
        print(f"\n$ {line}\n{done.stdout}{done.stderr}", end="")  # the block as run (pytest -s shows it)
    assert "initialised postgresql:///missile_sites" in done.stdout and "23 sites" in done.stdout
    server = subprocess.Popen(["bash", "-c", serve], env=env, cwd=tmp_path, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{env['MISSILE_SITES_PORT']}"
        health, expected_health = _wait_for_health(base, server).json(), client.get("/health").json()
        assert {**health, "worker": None} == {**expected_health, "worker": None}  # status, sites, data version
        expected = client.get(QUERY).json()
        assert [f["id"] for f in expected["features"]] == ["chiha-ri", "kal-gol", "sakkanmol"]
        answers = [httpx.get(base + QUERY, timeout=30) for _ in range(12)]  # spread over the four workers
        assert {a.status_code for a in answers} == {200}
        assert all(a.json() == expected for a in answers)
        workers = subprocess.run(["pgrep", "-g", str(server.pid), "-f", "multiprocessing"], capture_output=True,
                                 text=True).stdout.split()
        assert len(workers) >= 4, workers  # uvicorn's four worker processes (spawned through multiprocessing)
        print(f"\n$ {serve}\n/health: {health}\nGET {QUERY}: {[f['id'] for f in answers[0].json()['features']]} from "
              f"{len(answers)} requests, {len(workers)} worker processes")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(30)
