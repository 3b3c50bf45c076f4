"""A real service for tests: uvicorn in its own process group on a free loopback port, on a given live file."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from app.auth import hash_token
from app.settings import REPO_ROOT

EDITOR_TOKEN = "service-editor-token-for-tests"
EDITOR = {"Authorization": f"Bearer {EDITOR_TOKEN}"}


PORTS_PER_WORKER = 5_000  # each pytest-xdist worker picks from its own block, below the kernel's ephemeral ports


def free_port() -> int:
    """A port nothing listens on now, from this test worker's own block: two xdist workers never pick the same one,
    and a service restarted on its port (the chaos tests) cannot lose it to a client's ephemeral source port."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    low = 10_000 + PORTS_PER_WORKER * (worker % 4)
    for port in random.sample(range(low, low + PORTS_PER_WORKER), 200):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {low}-{low + PORTS_PER_WORKER - 1}")


def service_env(live: Path, **extra: str) -> dict[str, str]:
    """The environment of a service on `live` with an editor's token, this checkout's code first on the path."""
    tokens = f'[{{"name": "editor", "role": "editor", "sha256": "{hash_token(EDITOR_TOKEN)}"}}]'
    return {**os.environ, "MISSILE_SITES_GPKG": str(live), "MISSILE_SITES_WRITE_BURST": "1000000",
            "MISSILE_SITES_WRITE_RATE_PER_MINUTE": "1000000", "MISSILE_SITES_TOKENS": tokens,
            "PYTHONPATH": str(REPO_ROOT), **extra}


def cli(*args, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    """The command line in a subprocess (this checkout's code)."""
    return subprocess.run([sys.executable, "-m", "app.cli", *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO_ROOT)


class Service:
    """`uvicorn app.main:app --workers N` on a live file; started, killed and restarted as a whole process group."""

    def __init__(self, live: Path, *, workers: int = 1, port: int | None = None, **env: str):
        self.live, self.workers = Path(live), workers
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = service_env(self.live, **env)
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        """The service's command line."""
        return [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(self.port), "--workers",
                str(self.workers), "--log-level", "warning"]

    def start(self, *, wait_s: float = 180.0) -> "Service":
        """Start the service and wait until /health answers 200."""
        self.process = subprocess.Popen(self.command(), env=self.env, cwd=self.live.parent, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"service exited {self.process.returncode}: {self.process.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(f"{self.base}/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.kill()  # never leave a process group behind a failed start
        raise RuntimeError(f"service did not answer /health within {wait_s:.0f} s")

    def kill(self) -> None:
        """SIGKILL the whole process group (the supervisor and every worker) and reap it."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait(30)

    def stop(self) -> None:
        """Stop gracefully (SIGTERM to the group), or kill after 30 s."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()

    def __enter__(self) -> "Service":
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.stop()
