"""The command line on the PostGIS engine: with MISSILE_SITES_DATABASE_URL set, `sites`, `map`, `import`, `backup`,
`validate`, `attach-border` and `token` read and write the database, and answer as on the GeoPackage."""

import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from app.settings import REPO_ROOT
from tests.conftest import BUNDLED_GPKG, engine_rows, fresh_database

DATA = Path(__file__).parent / "data" / "import"
pytestmark = pytest.mark.slow  # each test runs the CLI in processes of its own


def cli(*args, database_url: str | None = None) -> subprocess.CompletedProcess:
    """The worktree's CLI in a process of its own, on the database when a URL is given, else the bundled file."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "COLUMNS": "250", "MISSILE_SITES_GPKG": str(BUNDLED_GPKG)}
    env.pop("MISSILE_SITES_DATABASE_URL", None)
    if database_url is not None:
        env["MISSILE_SITES_DATABASE_URL"] = database_url
    return subprocess.run([sys.executable, "-m", "app.cli", *map(str, args)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def database(pg_cluster, pg_template) -> str:
    """A fresh copy of the bundled catalogue in PostGIS."""
    return fresh_database(pg_cluster, pg_template)


def test_sites_and_map_answer_as_on_the_geopackage(database, tmp_path):
    query = ("sites", "--near", "Seoul", "--within-km", "150", "-f", "csv")
    on_pg, on_gpkg = cli(*query, database_url=database), cli(*query)
    assert on_pg.returncode == 0, on_pg.stderr
    assert on_pg.stdout == on_gpkg.stdout and on_pg.stdout.count("\n") == 4  # a header and Seoul's three
    drawn = cli("map", "--near", "Seoul", "--within-km", "150", "-o", tmp_path / "m.html", database_url=database)
    assert drawn.returncode == 0, drawn.stderr
    assert "3 sites" in drawn.stdout and (tmp_path / "m.html").stat().st_size > 10_000


def test_import_writes_the_database_in_one_transaction_and_sites_sees_it(database):
    bad = cli("import", DATA / "bad_row.csv", database_url=database)
    assert bad.returncode == 1 and "nothing written" in bad.stdout
    assert engine_rows(database, "SELECT count(*) FROM sites") == [(23,)]
    done = cli("import", DATA / "sites.csv", "--actor", "carol", database_url=database)
    assert done.returncode == 0, done.stderr
    assert "added 2 site(s)" in done.stdout and "postgresql://" in done.stdout
    assert engine_rows(database, "SELECT actor, entity_id FROM changes ORDER BY id") == [
        ("carol", "import-test-base"), ("carol", "unlocated-import-site")]
    assert engine_rows(database, "SELECT ref_id FROM site_missiles WHERE owner_id = 'import-test-base'"
                                 " ORDER BY ref_id") == [("hwasong-10",), ("hwasong-11a",)]  # the link tables kept
    found = cli("sites", "--lat", "38.5", "--lon", "125.75", "--within-km", "1", "-f", "csv", database_url=database)
    assert "import-test-base" in found.stdout


def test_import_of_missiles_goes_through_the_same_checks(database, tmp_path):
    path = tmp_path / "missiles.csv"
    path.write_text("name,class,source_ids\nTest Rocket,SRBM,38-north-iha-ri\n")
    done = cli("import", path, "--kind", "missiles", database_url=database)
    assert done.returncode == 0, done.stderr
    assert engine_rows(database, "SELECT id, class FROM missiles WHERE name = 'Test Rocket'") == [
        ("test-rocket", "SRBM")]


def test_backup_is_a_checked_geopackage_of_one_snapshot(database, tmp_path):
    cli("import", DATA / "sites.csv", database_url=database)
    target = tmp_path / "backup.gpkg"
    done = cli("backup", target, database_url=database)
    assert done.returncode == 0, done.stderr
    assert "25 sites" in done.stdout and "integrity_check: ok" in done.stdout and "postgresql://" in done.stdout
    with closing(sqlite3.connect(f"file:{target}?mode=ro", uri=True)) as connection:
        assert connection.execute("SELECT count(*) FROM changes").fetchone() == (2,)
    again = cli("backup", target, database_url=database)
    assert again.returncode == 2 and "--force" in again.stderr
    checked = cli("validate", "--gpkg", target)
    assert checked.returncode == 0 and "validate_gpkg: ok" in checked.stdout


def test_validate_checks_the_database_snapshot(database):
    done = cli("validate", database_url=database)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "validate_gpkg: ok" in done.stdout and "validate: ok" in done.stdout
    assert "one snapshot" in done.stdout


def test_attach_border_writes_the_database(database):
    done = cli("attach-border", "mdl", "JPN", "--actor", "dan", database_url=database)
    assert done.returncode == 0, done.stderr
    assert engine_rows(database, "SELECT country FROM attached_borders WHERE border_id = 'mdl' AND country = 'JPN'"
                       ) == [("JPN",)]
    assert engine_rows(database, "SELECT actor FROM changes") == [("dan",)]


def test_token_commands_need_no_storage(database):
    made = cli("token", "create", "--name", "erin", "--role", "editor", database_url=database)
    assert made.returncode == 0, made.stderr
    token, entry = made.stdout.split()
    hashed = cli("token", "hash", token, database_url=database)
    assert hashed.stdout.strip() in entry


def test_a_database_without_the_schema_is_one_line(pg_cluster):
    done = cli("sites", "--near", "Seoul", database_url=pg_cluster.url())
    assert done.returncode == 2
    assert "db init" in done.stderr and "Traceback" not in done.stderr
