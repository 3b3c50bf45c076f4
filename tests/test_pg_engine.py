"""The PostGIS engine: `db init` and `db export`, its constraints, and LISTEN/NOTIFY waking every worker."""

import os
import sqlite3
import subprocess
import sys
import time
from contextlib import closing

import psycopg
import pytest
from fastapi.testclient import TestClient

from app import edits
from app.auth import hash_token
from app.live import LiveCatalogue
from app.main import create_app
from app.models import SiteCreate
from app.settings import REPO_ROOT
from app.store_pg import PostGISStore
from tests.conftest import engine_settings, fresh_database

EDITOR = {"Authorization": "Bearer editor-token-for-tests"}
SOURCE = "csis-bp-hoejung-ni-2022"
NEW_SITE = {
    "name": "Test Base", "country": "PRK", "facility_type": "missile_base", "lon": 126.5, "lat": 39.0,
    "coord_confidence": "approximate", "coord_source_id": SOURCE, "source_ids": [SOURCE], "missile_types": ["hwasong-10"],
}


def cli(*args: str) -> subprocess.CompletedProcess:
    """The worktree's CLI in a process of its own."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "COLUMNS": "250"}
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_db_init_loads_once_and_db_export_passes_validate(pg_cluster, tmp_path):
    with psycopg.connect(pg_cluster.url(), autocommit=True) as connection:
        connection.execute("CREATE DATABASE cli_init")
    url = pg_cluster.url("cli_init")
    first = cli("db", "init", "--database-url", url)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "23 sites" in first.stdout and "33961 cities" in first.stdout
    again = cli("db", "init", "--database-url", url)
    assert again.returncode == 1 and "already holds a catalogue" in again.stdout + again.stderr
    exported = cli("db", "export", str(tmp_path / "out.gpkg"), "--database-url", url)
    assert exported.returncode == 0, exported.stdout + exported.stderr
    checked = cli("validate", "--gpkg", str(tmp_path / "out.gpkg"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "validate_gpkg: ok" in checked.stdout


def test_the_schema_refuses_what_the_vocabularies_and_references_forbid(pg_cluster, pg_template):
    url = fresh_database(pg_cluster, pg_template)
    with psycopg.connect(url, autocommit=True) as connection:
        with pytest.raises(psycopg.errors.CheckViolation):
            connection.execute("UPDATE sites SET facility_type = 'castle' WHERE id = 'sakkanmol'")
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            connection.execute("""UPDATE sites SET source_ids = '["no-such-source"]' WHERE id = 'sakkanmol'""")
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            connection.execute("DELETE FROM sources WHERE id = %s", (SOURCE,))
        with pytest.raises(psycopg.errors.UniqueViolation):
            connection.execute("INSERT INTO missiles (id, name, class) VALUES ('hwasong-10', 'again', 'IRBM')")
        connection.execute("""UPDATE sites SET source_ids = %s WHERE id = 'sakkanmol'""", (f'["{SOURCE}"]',))
        links = connection.execute("SELECT ref_id FROM site_sources WHERE owner_id = 'sakkanmol'").fetchall()
        kinds = dict(connection.execute("SELECT f_table_name, type FROM geography_columns").fetchall())
        versions = connection.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    assert links == [(SOURCE,)]  # an update replaces the owner's link rows (migration 2 keeps that)
    assert kinds["sites"] == "Point" and versions == [(1,), (2,)]


def test_a_commit_elsewhere_wakes_the_worker_before_its_poll(pg_cluster, pg_template):
    url = fresh_database(pg_cluster, pg_template)
    live = LiveCatalogue(PostGISStore(url, poll_s=60))  # only a notification can wake it within the test
    other = PostGISStore(url, poll_s=60)
    try:
        committed = time.monotonic()
        change = other.write(lambda c: edits.create_site(c, SiteCreate(**NEW_SITE), "bob"))
        while live.current().last_change < change["id"] and time.monotonic() - committed < 10:
            time.sleep(0.01)
        assert "test-base" in live.current().sites.index
        assert time.monotonic() - committed < 10
    finally:
        other.close()
        live.close()


def _downloaded(client, tmp_path, name: str) -> list[tuple]:
    """GET /sites?f=gpkg saved as a file: its site count, change log and integrity check."""
    response = client.get("/sites?f=gpkg")
    assert response.status_code == 200
    path = tmp_path / name
    path.write_bytes(response.content)
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
        return [connection.execute("SELECT count(*) FROM sites").fetchone(),
                connection.execute("SELECT actor, entity_id FROM changes ORDER BY id").fetchall(),
                connection.execute("PRAGMA integrity_check").fetchone()]


def test_f_gpkg_exports_once_per_data_version_and_the_next_edit_shows(engine_live, tmp_path, monkeypatch):
    tokens = [{"name": "alice", "role": "editor", "sha256": hash_token(EDITOR["Authorization"].split()[1])}]
    with TestClient(create_app(engine_settings(engine_live, tokens=tokens))) as client:
        store = client.app.state.live.store
        exports = []
        real_export = store.export_gpkg
        monkeypatch.setattr(store, "export_gpkg", lambda path: exports.append(path) or real_export(path))
        assert _downloaded(client, tmp_path, "1.gpkg") == [(23,), [], ("ok",)]
        assert _downloaded(client, tmp_path, "2.gpkg") == [(23,), [], ("ok",)]
        assert len(exports) == 1  # the second download is the same data version: no second export
        assert client.post("/sites", json=NEW_SITE, headers=EDITOR).status_code == 201
        assert _downloaded(client, tmp_path, "3.gpkg") == [(24,), [("alice", "test-base")], ("ok",)]
        assert len(exports) == 2
        assert client.post("/sites", json={**NEW_SITE, "name": "Second Base"}, headers=EDITOR).status_code == 201
        assert _downloaded(client, tmp_path, "4.gpkg")[:2] == [(25,), [("alice", "test-base"),
                                                                      ("alice", "second-base")]]
