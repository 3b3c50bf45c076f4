"""A throwaway PostgreSQL 15 + PostGIS cluster for the tests: a Unix socket in a temp dir, no TCP, stopped afterwards.

Debian's `postgresql-15` and `postgresql-15-postgis-3` provide it (the README's test command installs them).
Run as root (CI), the cluster runs as the `postgres` user, which owns the temp dir.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_USER = "postgres"


class ClusterProblem(RuntimeError):
    """The cluster could not be made or started; the message says what to install or read."""


def _as_owner(command: list[str]) -> list[str]:
    """The command run as the postgres user when this process is root (PostgreSQL refuses to run as root)."""
    return ["runuser", "-u", PG_USER, "--", *command] if os.geteuid() == 0 else command


def _run(command: list[str]) -> None:
    """Run a cluster command, raising ClusterProblem with its output when it fails."""
    result = subprocess.run(_as_owner(command), capture_output=True, text=True, timeout=120)
    if result.returncode:
        raise ClusterProblem(f"{' '.join(command)} failed ({result.returncode}): {result.stdout}{result.stderr}")


@dataclass
class Cluster:
    """A running cluster: its folder (data, socket and log) and how to reach a database on it."""

    root: Path

    @property
    def data(self) -> Path:
        """The cluster's data directory."""
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        """A libpq URL for a database on the cluster, through its Unix socket."""
        return f"postgresql://{PG_USER}@/{database}?host={self.root}"

    def start(self) -> "Cluster":
        """initdb then pg_ctl start (listening only on the socket in the temp dir)."""
        if not (PG_BIN / "initdb").exists():
            raise ClusterProblem(f"{PG_BIN}/initdb missing: apt-get install -y postgresql postgresql-15-postgis-3")
        _run([str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", PG_USER, "--no-sync", "-E", "UTF8"])
        options = f"-k {self.root} -c listen_addresses='' -c fsync=off -c max_connections=200"
        _run([str(PG_BIN / "pg_ctl"), "start", "-w", "-D", str(self.data), "-l", str(self.root / "log"), "-o", options])
        return self

    def stop(self) -> None:
        """pg_ctl stop (fast), then remove the folder."""
        try:
            _run([str(PG_BIN / "pg_ctl"), "stop", "-w", "-m", "fast", "-D", str(self.data)])
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def make_cluster() -> Cluster:
    """A started cluster in a fresh temp dir the postgres user owns."""
    root = Path(tempfile.mkdtemp(prefix="pg-"))
    if os.geteuid() == 0:
        entry = pwd.getpwnam(PG_USER)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    root.chmod(0o755)
    try:
        return Cluster(root).start()
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
