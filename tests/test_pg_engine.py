"""The PostGIS engine: `db init` and `db export`, its constraints, and LISTEN/NOTIFY waking every worker."""

import datetime
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
    assert kinds["sites"] == "Point" and versions == [(1,), (2,), (3,), (4,)]


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


def test_a_database_made_at_migration_2_upgrades_and_answers_the_same(pg_cluster, tmp_path):
    """A database an earlier version made (migration 2: the change log's times as text) with changes in its log is
    refused until `db migrate` brings it to the latest migration; then the times are timestamptz and every answer
    about them (the log, `since`, `as_of`) is what the text gave, and every located site's border distances are
    stored (migration 4)."""
    from app.models import SourceCreate
    from app.store_pg import DatabaseProblem, PgConnection, configure, init_database
    from tests.conftest import BUNDLED_GPKG, engine_rows

    with psycopg.connect(pg_cluster.url(), autocommit=True) as connection:
        connection.execute("CREATE DATABASE made_at_2")
    url = pg_cluster.url("made_at_2")
    init_database(url, BUNDLED_GPKG, through=2)
    with psycopg.connect(url, autocommit=True) as raw:  # the edits as the earlier version ran them
        configure(raw)
        for write in (lambda c: edits.create_source(c, SourceCreate(title="First", publisher="CSIS"), "alice"),
                      lambda c: edits.create_site(c, SiteCreate(**NEW_SITE), "bob")):
            with raw.transaction():
                write(PgConnection(raw))
            time.sleep(0.01)
    columns = "id, at, actor, action, entity, entity_id, site_id, diff, before, after"
    logged = engine_rows(url, f"SELECT {columns} FROM changes ORDER BY id")
    assert len(logged) == 2 and all(isinstance(row[1], str) and row[1].endswith("Z") for row in logged)
    with pytest.raises(DatabaseProblem, match="migration 2.*`missile-sites db migrate`"):
        PostGISStore(url)

    upgraded = cli("db", "migrate", "--database-url", url)
    assert upgraded.returncode == 0 and "applied migration(s) 3, 4" in upgraded.stdout, upgraded.stdout + upgraded.stderr
    assert "nothing to apply" in cli("db", "migrate", "--database-url", url).stdout
    assert engine_rows(url, "SELECT data_type FROM information_schema.columns WHERE table_name = 'changes'"
                            " AND column_name = 'at'") == [("timestamp with time zone",)]
    assert engine_rows(url, f"SELECT {columns} FROM changes ORDER BY id") == logged
    located = engine_rows(url, "SELECT id FROM sites WHERE geom IS NOT NULL ORDER BY id")
    assert engine_rows(url, "SELECT site_id FROM site_border_distances ORDER BY site_id") == located  # migration 4
    with TestClient(create_app(engine_settings(url)), raise_server_exceptions=False) as client:
        answered = client.get("/changes").json()["changes"]
        assert [(c["id"], c["at"], c["entity_id"]) for c in answered] == [(r[0], r[1], r[5]) for r in logged]
        assert [c["id"] for c in client.get("/changes", params={"since": logged[1][1]}).json()["changes"]] == [2]
        day = datetime.date.fromisoformat(logged[1][1][:10])
        for as_of, seen in ((day - datetime.timedelta(days=1), False), (day, True)):
            sites = client.get("/sites", params={"as_of": as_of.isoformat(), "limit": 1000}).json()["features"]
            assert ("test-base" in {f["id"] for f in sites}) is seen
