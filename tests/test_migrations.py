"""Schema migrations: a schema-1 live file (`; `-joined lists, no catalogue_meta, no unique ids) or a schema-2 one
(no place aliases, no attached_borders) brought to schema 3 keeps every value, in one transaction, once."""

import json
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path

import pyogrio
import pytest

from app import migrations, store
from app.settings import GEODATA_DIR
from app.vocab import LIST_COLUMNS

BUNDLED = GEODATA_DIR / "catalogue.gpkg"
LOGGED_ALIASES = ["Foo; Bar", "Baz"]  # what the old API was given; it stored "Foo; Bar; Baz"


def dump(path: Path) -> dict[str, list[tuple]]:
    """Every row of every gpkg_contents table but catalogue_meta, in rowid order."""
    with closing(store.connect_readonly(path)) as connection:
        tables = [r[0] for r in connection.execute("SELECT table_name FROM gpkg_contents ORDER BY table_name")]
        return {t: connection.execute(f'SELECT * FROM "{t}" ORDER BY rowid').fetchall()
                for t in tables if t != migrations.META_TABLE}


def _drop_schema_4(connection: sqlite3.Connection) -> None:
    """Take the schema-4 part out of a file: the site_border_distances table."""
    connection.execute(f'DROP TABLE "{migrations.BORDER_DISTANCES_TABLE}"')
    connection.execute("DELETE FROM gpkg_contents WHERE table_name = ?", (migrations.BORDER_DISTANCES_TABLE,))
    connection.execute("UPDATE catalogue_meta SET value = '3' WHERE key = 'schema_version'")


def _drop_schema_3(connection: sqlite3.Connection) -> None:
    """Take the schema-3 parts (and the later ones) out of a file: places' aliases column and the attached_borders
    table."""
    _drop_schema_4(connection)
    connection.execute("ALTER TABLE places DROP COLUMN aliases")
    connection.execute("DELETE FROM gpkg_data_columns WHERE table_name = 'places' AND column_name = 'aliases'")
    connection.execute(f'DROP TABLE "{migrations.ATTACHED_TABLE}"')
    connection.execute("DELETE FROM gpkg_contents WHERE table_name = ?", (migrations.ATTACHED_TABLE,))
    connection.execute("UPDATE catalogue_meta SET value = '2' WHERE key = 'schema_version'")


def make_schema_2(path: Path) -> Path:
    """A copy of the bundled catalogue as schema 2 wrote it: no place aliases, no attached_borders."""
    store.copy_consistent(BUNDLED, path)
    with closing(sqlite3.connect(path, isolation_level=None)) as connection:
        store.register_gpkg_functions(connection)
        connection.execute("BEGIN")
        _drop_schema_3(connection)
        connection.execute("COMMIT")
    return path


def make_schema_1(path: Path, *, edited: bool = True) -> Path:
    """A copy of the bundled catalogue in the first format: lists `; `-joined, no catalogue_meta, no unique ids,
    no gpkg_data_columns, no place aliases; when `edited`, the old edit schema and a site the old API created with a
    `;` alias."""
    store.copy_consistent(BUNDLED, path)
    with closing(sqlite3.connect(path, isolation_level=None)) as connection:
        store.register_gpkg_functions(connection)
        connection.execute("BEGIN")
        _drop_schema_3(connection)
        for table, columns in LIST_COLUMNS.items():
            for column in [c for c in columns if (table, c) != ("places", "aliases")]:
                rows = connection.execute(f'SELECT rowid, "{column}" FROM "{table}" WHERE "{column}" NOTNULL')
                connection.executemany(f'UPDATE "{table}" SET "{column}" = ? WHERE rowid = ?',
                                       [("; ".join(json.loads(cell)), rowid) for rowid, cell in rows.fetchall()])
        for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE name LIKE '%_id_unique'").fetchall():
            connection.execute(f'DROP INDEX "{name}"')
        connection.execute(f'DROP TABLE "{migrations.META_TABLE}"')
        connection.execute("DELETE FROM gpkg_contents WHERE table_name = ?", (migrations.META_TABLE,))
        connection.execute("DELETE FROM gpkg_extensions WHERE extension_name = 'gpkg_schema'")
        connection.execute("DROP TABLE gpkg_data_columns")
        connection.execute("DROP TABLE gpkg_data_column_constraints")
        if edited:
            _old_edit(connection)
        connection.execute("COMMIT")
    return path


def _old_edit(connection: sqlite3.Connection) -> None:
    """The edit schema as the old code added it, and one site created through it, with its change record."""
    for table, columns in store.EDIT_COLUMNS.items():
        if table in ("missiles", "places"):  # edited only since schema 3
            continue
        for column in columns:
            connection.execute(f'ALTER TABLE "{table}" ADD COLUMN "{column}" TEXT')
    connection.execute(store.CHANGES_DDL)
    connection.execute("INSERT INTO gpkg_contents (table_name, data_type, identifier, description, last_change)"
                       " VALUES ('changes', 'attributes', 'changes', 'Every edit.', '2026-01-01T00:00:00.000Z')")
    at = "2026-01-02T03:04:05.000Z"
    site = {"name": "Old Base", "aliases": LOGGED_ALIASES, "country": "PRK", "facility_type": "missile_base",
            "source_ids": ["38-north-iha-ri"], "missile_types": ["hwasong-10"], "missile_classes_reported": [],
            "coord_confidence": "unknown", "id": "old-base", "created_at": at, "missile_classes": "IRBM"}
    connection.execute(
        "INSERT INTO sites (id, name, aliases, country, facility_type, source_ids, missile_types, coord_confidence,"
        " missile_classes, current_status, created_at, created_by, updated_at, updated_by)"
        " VALUES ('old-base', 'Old Base', 'Foo; Bar; Baz', 'PRK', 'missile_base', '38-north-iha-ri', 'hwasong-10',"
        " 'unknown', 'IRBM', 'unknown', ?, 'alice', ?, 'alice')", (at, at))
    connection.execute("INSERT INTO changes (at, actor, action, entity, entity_id, site_id, diff, before, after)"
                       " VALUES (?, 'alice', 'create', 'site', 'old-base', 'old-base', '{}', NULL, ?)",
                       (at, json.dumps(site)))


@pytest.fixture
def old(tmp_path) -> Path:
    """A schema-1 live file with an edit."""
    return make_schema_1(tmp_path / "old.gpkg")


def test_the_fixture_is_schema_1(old):
    with closing(store.connect_readonly(old)) as connection:
        assert migrations.schema_version(connection) == "1"
        assert connection.execute("SELECT aliases FROM sites WHERE id = 'old-base'").fetchone() == ("Foo; Bar; Baz",)
        assert connection.execute("SELECT countries FROM borders WHERE id = 'mdl'").fetchone() == ("KOR; PRK",)


def test_migration_keeps_every_value_and_is_idempotent(old, tmp_path):
    with closing(store.connect_readonly(old)) as connection:
        expected_id = migrations.build_id(connection)  # computed the same way on the unmigrated file
    with closing(store.connect(old)) as connection:
        assert migrations.migrate(connection) is True
        assert migrations.schema_version(connection) == migrations.SCHEMA_VERSION == "4"
        assert migrations.build_id(connection) == expected_id and expected_id.startswith("legacy-")
        before = connection.total_changes
        assert migrations.migrate(connection) is False
        assert connection.total_changes == before  # the second run wrote nothing
    migrated, bundled = dump(old), dump(BUNDLED)
    assert set(migrated) == set(bundled) | {"changes"}
    for table, rows in bundled.items():  # every bundled row as the build writes it, JSON lists byte for byte
        if table == migrations.BORDER_DISTANCES_TABLE:  # measured under the file's own (legacy) build id
            assert [row[:-1] for row in migrated[table][:len(rows)]] == [row[:-1] for row in rows]
            continue
        width = len(rows[0])
        assert [row[:width] for row in migrated[table][:len(rows)]] == _without_place_aliases(table, rows), table
    with closing(store.connect_readonly(old)) as connection:
        aliases, classes = connection.execute("SELECT aliases, missile_classes FROM sites WHERE id = 'old-base'").fetchone()
    assert json.loads(aliases) == LOGGED_ALIASES  # the item the old format split, whole again from the change log
    assert json.loads(classes) == ["IRBM"]


def _without_place_aliases(table: str, rows: list[tuple]) -> list[tuple]:
    """Bundled rows as a file made before schema 3 has them after migrating: places without aliases (the last
    column), since that file never had any."""
    return [row[:-1] + (None,) for row in rows] if table == "places" else rows


def test_schema_2_to_3_adds_place_aliases_and_attaches_the_korean_lines_once(tmp_path):
    path = make_schema_2(tmp_path / "two.gpkg")
    with closing(store.connect(path)) as connection:
        assert migrations.migrate(connection) is True and migrations.schema_version(connection) == "4"
        assert migrations.migrate(connection) is False
    migrated, bundled = dump(path), dump(BUNDLED)
    assert set(migrated) == set(bundled)
    for table, rows in bundled.items():
        assert migrated[table] == _without_place_aliases(table, rows), table
    attached = {(border, country) for _, border, country in migrated[migrations.ATTACHED_TABLE]}
    assert attached == {(b, c) for b in ("mdl", "dmz-north", "dmz-south") for c in ("KOR", "PRK")}
    info = pyogrio.read_info(path, layer="places")
    assert dict(zip(info["fields"], info["ogr_subtypes"]))["aliases"] == "OFSTJSON"


def test_a_migrated_file_is_a_valid_geopackage_gdal_reads_lists_from(old):
    from osgeo_utils.samples import validate_gpkg

    with closing(store.connect(old)) as connection:
        migrations.migrate(connection)
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    argv = ["validate_gpkg", "-k", "--extra", "--warning-as-error", str(old)]
    assert validate_gpkg.main(argv, output_in_string=True) == 0, validate_gpkg.get_output_string()
    info = pyogrio.read_info(old, layer="borders")
    assert dict(zip(info["fields"], info["ogr_subtypes"]))["countries"] == "OFSTJSON"


def test_ensure_edit_schema_migrates(tmp_path):
    path = make_schema_1(tmp_path / "plain.gpkg", edited=False)
    with closing(store.connect(path)) as connection:
        store.ensure_edit_schema(connection)
        assert migrations.schema_version(connection) == "4"
        assert store.has_edit_schema(connection)
        assert connection.execute("SELECT countries FROM borders WHERE id = 'mdl'").fetchone() == ('["KOR","PRK"]',)


def test_duplicate_ids_stop_the_migration_naming_table_and_id_and_change_nothing(old):
    with closing(sqlite3.connect(old)) as connection:
        store.register_gpkg_functions(connection)
        connection.execute("INSERT INTO observations (id, site_id, observed_on, kind, status_seen, source_id)"
                           " SELECT id, site_id, observed_on, kind, status_seen, source_id FROM observations LIMIT 1")
        duplicate = connection.execute("SELECT id FROM observations GROUP BY id HAVING count(*) > 1").fetchone()[0]
        connection.commit()
    before = dump(old)
    with closing(store.connect(old)) as connection:
        with pytest.raises(migrations.MigrationError, match=rf"table 'observations' has 2 rows with id '{duplicate}'"):
            migrations.migrate(connection)
        assert migrations.schema_version(connection) == "1"
    assert dump(old) == before


def test_schema_3_to_4_measures_every_located_site_once(tmp_path):
    path = store.copy_consistent(BUNDLED, tmp_path / "three.gpkg")
    with closing(sqlite3.connect(path, isolation_level=None)) as connection:
        connection.execute("BEGIN")
        _drop_schema_4(connection)
        connection.execute("COMMIT")
    with closing(store.connect(path)) as connection:
        assert migrations.migrate(connection) is True and migrations.schema_version(connection) == "4"
        assert migrations.migrate(connection) is False
    assert dump(path) == dump(BUNDLED)  # the same rows the build writes, byte for byte


def test_a_newer_schema_is_refused(tmp_path):
    path = store.copy_consistent(BUNDLED, tmp_path / "newer.gpkg")
    with closing(sqlite3.connect(path)) as connection:
        connection.execute("UPDATE catalogue_meta SET value = '5' WHERE key = 'schema_version'")
        connection.commit()
    with closing(store.connect(path)) as connection, pytest.raises(migrations.MigrationError, match="newer"):
        migrations.migrate(connection)


def test_at_the_current_version_migrate_takes_no_lock(tmp_path):
    path = store.copy_consistent(BUNDLED, tmp_path / "current.gpkg")
    with closing(store.connect(path)) as holder, closing(store.connect(path)) as connection:
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock; a migration would wait for it
        started = time.perf_counter()
        assert migrations.migrate(connection) is False
        assert time.perf_counter() - started < 5
        holder.execute("ROLLBACK")


def test_two_processes_migrating_at_once_migrate_once(old):
    results, errors = [], []

    def run():
        try:
            with closing(store.connect(old)) as connection:
                results.append(migrations.migrate(connection))
        except Exception as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and sorted(results) == [False, False, False, True]
    with closing(store.connect_readonly(old)) as connection:
        assert connection.execute("SELECT count(*) FROM catalogue_meta").fetchone() == (2,)
