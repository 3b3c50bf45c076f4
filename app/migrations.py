"""The catalogue file's schema version and the migrations that bring an older live file up to it.

Schema 1: the first format (list cells `; `-joined text, no metadata table, ids unique only by convention).
Schema 2: list cells are JSON arrays registered in `gpkg_data_columns` as `application/json`; a
`catalogue_meta` table holds `schema_version` and `build_id`; every table with an `id` column has a
UNIQUE index on it.
Schema 3: places have an `aliases` list (the names `near=` also answers to); an `attached_borders` table
attaches named lines to the countries whose sites are measured against them (at first each line that is not a
land border, to the countries it separates: the MDL and the DMZ edges to KOR and PRK).
Schema 4: a `site_border_distances` table keeps each located site's border distances (app.border_store), written
with the sites and read at start-up; the upgrade measures every site once.
"""

from __future__ import annotations

import datetime
import hashlib
import json

from app.storage import Connection
from app.vocab import LIST_COLUMNS, decode_list, encode_list, join_text_list, split_text_list

SCHEMA_VERSION = "4"
META_TABLE = "catalogue_meta"
META_DESCRIPTION = "The catalogue file's schema version and the id of the build it came from."
META_DDL = (f'CREATE TABLE "{META_TABLE}" ("fid" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,'
            ' "key" TEXT NOT NULL UNIQUE, "value" TEXT NOT NULL)')
ATTACHED_TABLE = "attached_borders"
ATTACHED_DESCRIPTION = "Named lines (MDL, DMZ edges, ...) attached to the countries whose sites are measured against them."
ATTACHED_DDL = (f'CREATE TABLE "{ATTACHED_TABLE}" ("fid" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,'
                ' "border_id" TEXT NOT NULL, "country" TEXT NOT NULL, UNIQUE ("border_id", "country"))')
BORDER_DISTANCES_TABLE = "site_border_distances"
BORDER_DISTANCES_DESCRIPTION = ("Each located site's distances to the lines it is measured against, as measured when "
                                "the site was written (app.border_store).")
BORDER_DISTANCES_DDL = (f'CREATE TABLE "{BORDER_DISTANCES_TABLE}" ("fid" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,'
                        ' "site_id" TEXT NOT NULL UNIQUE, "lon" REAL NOT NULL, "lat" REAL NOT NULL,'
                        ' "border_ids" TEXT NOT NULL, "distances_m" BLOB NOT NULL, "nearest_lons" BLOB NOT NULL,'
                        ' "nearest_lats" BLOB NOT NULL, "build_id" TEXT NOT NULL)')
JSON_MIME_TYPE = "application/json"
SCHEMA_EXTENSION = "http://www.geopackage.org/spec121/#extension_schema"
SCHEMA_DDL = (
    "CREATE TABLE IF NOT EXISTS gpkg_extensions (table_name TEXT, column_name TEXT, extension_name TEXT NOT NULL,"
    " definition TEXT NOT NULL, scope TEXT NOT NULL, CONSTRAINT ge_tce UNIQUE (table_name, column_name, extension_name))",
    "CREATE TABLE IF NOT EXISTS gpkg_data_columns (table_name TEXT NOT NULL, column_name TEXT NOT NULL, name TEXT,"
    " title TEXT, description TEXT, mime_type TEXT, constraint_name TEXT,"
    " CONSTRAINT pk_gdc PRIMARY KEY (table_name, column_name), CONSTRAINT gdc_tn UNIQUE (table_name, name))",
    "CREATE TABLE IF NOT EXISTS gpkg_data_column_constraints (constraint_name TEXT NOT NULL,"
    " constraint_type TEXT NOT NULL, value TEXT, min NUMERIC, min_is_inclusive BOOLEAN, max NUMERIC,"
    " max_is_inclusive BOOLEAN, description TEXT, CONSTRAINT gdcc_ntv UNIQUE (constraint_name, constraint_type, value))",
)


class MigrationError(Exception):
    """The file cannot be brought to the current schema (duplicate ids, or a newer schema); nothing was changed."""


def _now() -> str:
    """The current UTC time as the GeoPackage writes it."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _has_table(connection: Connection, name: str) -> bool:
    """Whether the file has a table of that name (asked of the PostGIS engine's connection when given one)."""
    if hasattr(connection, "has_table"):
        return connection.has_table(name)
    return connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() \
        is not None


def _columns(connection: Connection, table: str) -> list[tuple[str, int]]:
    """A table's columns as (name, primary-key position)."""
    return [(row[1], row[5]) for row in connection.execute(f'PRAGMA table_info("{table}")')]


def _content_tables(connection: Connection) -> list[str]:
    """The tables listed in gpkg_contents, sorted by name (views left out)."""
    return [row[0] for row in connection.execute(
        "SELECT c.table_name FROM gpkg_contents c JOIN sqlite_master m ON m.name = c.table_name AND m.type = 'table'"
        " ORDER BY c.table_name")]


# --- reading the version -----------------------------------------------------------------------------


def schema_version(connection: Connection) -> str:
    """The file's schema version: "1" for a file without catalogue_meta."""
    if not _has_table(connection, META_TABLE):
        return "1"
    row = connection.execute(f'SELECT value FROM "{META_TABLE}" WHERE key = ?', ("schema_version",)).fetchone()
    if row is None:
        raise MigrationError(f"{META_TABLE} has no schema_version")
    return row[0]


def build_id(connection: Connection) -> str:
    """The id of the data the file was built from (the build's input hash, or `legacy-…` for a schema-1 file)."""
    if not _has_table(connection, META_TABLE):
        return legacy_build_id(connection)
    row = connection.execute(f'SELECT value FROM "{META_TABLE}" WHERE key = ?', ("build_id",)).fetchone()
    if row is None:
        raise MigrationError(f"{META_TABLE} has no build_id")
    return row[0]


def legacy_build_id(connection: Connection) -> str:
    """`legacy-` and the SHA-256 of every row of the gpkg_contents tables but `changes`: tables by name, rows by
    rowid, each row as the repr of its tuple of values."""
    digest = hashlib.sha256()
    for table in _content_tables(connection):
        if table in ("changes", META_TABLE):
            continue
        digest.update(f"\x00table {table}\x00".encode())
        for row in connection.execute(f'SELECT * FROM "{table}" ORDER BY rowid'):
            digest.update(repr(row).encode())
            digest.update(b"\n")
    return "legacy-" + digest.hexdigest()


# --- migrating -----------------------------------------------------------------------------------------


def migrate(connection: Connection) -> bool:
    """Bring the file to the current schema in ONE `BEGIN IMMEDIATE` transaction; True if it changed anything.

    Idempotent: at the current version it costs two small queries and writes nothing. Raises MigrationError
    (and changes nothing) when ids repeat or the file is newer than this program. Each step brings one version
    to the next (1 -> 2 -> 3), all in the same transaction.
    """
    if schema_version(connection) == SCHEMA_VERSION:
        return False
    connection.execute("BEGIN IMMEDIATE")
    try:
        first = version = schema_version(connection)  # another process may have migrated while we waited
        while version != SCHEMA_VERSION:
            if version not in UPGRADES:
                raise MigrationError(f"schema_version {version!r} is not one this program knows (it writes"
                                     f" {SCHEMA_VERSION!r}): the file comes from a newer missile-sites")
            UPGRADES[version](connection)
            version = schema_version(connection)
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
    return first != SCHEMA_VERSION


def _upgrade_1_to_2(connection: Connection) -> None:
    """Schema 1 -> 2: lists as JSON arrays, catalogue_meta with a legacy build id, unique ids."""
    legacy_id = legacy_build_id(connection)
    convert_lists(connection)
    _schema_2(connection, build_id=legacy_id, at=_now())


def _upgrade_2_to_3(connection: Connection) -> None:
    """Schema 2 -> 3: places get an (empty) aliases list; named lines attached to their countries."""
    _schema_3(connection, at=_now())


def _upgrade_3_to_4(connection: Connection) -> None:
    """Schema 3 -> 4: the site_border_distances table, every located site measured once."""
    _schema_4(connection, at=_now())


UPGRADES = {"1": _upgrade_1_to_2, "2": _upgrade_2_to_3, "3": _upgrade_3_to_4}


def convert_lists(connection: Connection) -> int:
    """Rewrite every `; `-joined list cell as a JSON array; returns the cells changed.

    A site's lists are taken from its latest change-log record when that record joins to exactly the stored
    cell (so an item the old format split, such as "Foo; Bar", comes back whole); otherwise the cell is split
    on `;` as schema 1 was read.
    """
    logged = _logged_site_lists(connection)
    changed = 0
    for table, columns in LIST_COLUMNS.items():
        if not _has_table(connection, table):
            continue
        present = [c for c, _ in _columns(connection, table) if c in columns]
        if not present:
            continue
        select = ", ".join(f'"{c}"' for c in present)
        has_id = "id" in {c for c, _ in _columns(connection, table)}
        rows = connection.execute(f'SELECT rowid, {"id" if has_id else "NULL"}, {select} FROM "{table}"').fetchall()
        updates = []
        for rowid, row_id, *cells in rows:
            known = logged.get(row_id, {}) if table == "sites" else {}
            new = [_converted(cell, known.get(column)) for column, cell in zip(present, cells)]
            if new != cells:
                updates.append((*new, rowid))
        assignments = ", ".join(f'"{c}" = ?' for c in present)
        connection.executemany(f'UPDATE "{table}" SET {assignments} WHERE rowid = ?', updates)
        changed += len(updates)
    return changed


def _converted(cell, logged) -> str | None:
    """One schema-1 list cell as a JSON array (the logged list when it joins to exactly this cell)."""
    if cell is None:
        return None
    if isinstance(logged, list) and all(isinstance(i, str) for i in logged) and join_text_list(logged) == cell:
        return encode_list(logged)
    return encode_list(split_text_list(str(cell)))


def _logged_site_lists(connection: Connection) -> dict[str, dict]:
    """Each site's record in its latest change (its `after`), when the file has a change log."""
    if not _has_table(connection, "changes"):
        return {}
    rows = connection.execute(
        "SELECT entity_id, after FROM changes WHERE id IN"
        " (SELECT max(id) FROM changes WHERE entity = 'site' AND after IS NOT NULL GROUP BY entity_id)")
    return {entity_id: json.loads(after) for entity_id, after in rows}


def finish_schema(connection: Connection, *, build_id: str, at: str) -> None:
    """The parts beside the layers at the current schema (see the module's docstring); the build calls it on a
    fresh file, inside its transaction."""
    _schema_2(connection, build_id=build_id, at=at)
    _schema_3(connection, at=at)
    _schema_4(connection, at=at)


def _schema_2(connection: Connection, *, build_id: str, at: str) -> None:
    """The schema-2 parts beside the layers: JSON list columns registered, unique ids, catalogue_meta."""
    register_json_columns(connection)
    unique_ids(connection)
    connection.execute(META_DDL)
    connection.execute(
        "INSERT INTO gpkg_contents (table_name, data_type, identifier, description, last_change)"
        " VALUES (?, 'attributes', ?, ?, ?)", (META_TABLE, META_TABLE, META_DESCRIPTION, at))
    connection.executemany(f'INSERT INTO "{META_TABLE}" (key, value) VALUES (?, ?)',
                           [("schema_version", "2"), ("build_id", build_id)])


def _schema_3(connection: Connection, *, at: str) -> None:
    """The schema-3 parts: places' aliases column (JSON), the attached_borders table seeded with every line that is
    not a land border attached to the countries it separates, and schema_version 3."""
    if "aliases" not in {name for name, _ in _columns(connection, "places")}:
        connection.execute('ALTER TABLE "places" ADD COLUMN "aliases" TEXT')
    register_json_columns(connection)
    connection.execute(ATTACHED_DDL)
    connection.execute(
        "INSERT INTO gpkg_contents (table_name, data_type, identifier, description, last_change)"
        " VALUES (?, 'attributes', ?, ?, ?)", (ATTACHED_TABLE, ATTACHED_TABLE, ATTACHED_DESCRIPTION, at))
    lines = connection.execute("SELECT id, countries FROM borders WHERE kind != 'land_border' ORDER BY id").fetchall()
    connection.executemany(f'INSERT INTO "{ATTACHED_TABLE}" (border_id, country) VALUES (?, ?)',
                           [(border_id, country) for border_id, countries in lines
                            for country in sorted(decode_list(countries))])
    connection.execute(f'UPDATE "{META_TABLE}" SET value = ? WHERE key = ?', ("3", "schema_version"))


def _schema_4(connection: Connection, *, at: str) -> None:
    """The schema-4 parts: the site_border_distances table with every located site measured, schema_version 4."""
    from app import border_store  # measuring needs the geometry stack; only a build or an upgrade gets here

    connection.execute(BORDER_DISTANCES_DDL)
    connection.execute(
        "INSERT INTO gpkg_contents (table_name, data_type, identifier, description, last_change)"
        " VALUES (?, 'attributes', ?, ?, ?)",
        (BORDER_DISTANCES_TABLE, BORDER_DISTANCES_TABLE, BORDER_DISTANCES_DESCRIPTION, at))
    border_store.write_all(connection)
    connection.execute(f'UPDATE "{META_TABLE}" SET value = ? WHERE key = ?', ("4", "schema_version"))


def register_json_columns(connection: Connection) -> None:
    """Declare every list column `application/json` in gpkg_data_columns (the GeoPackage schema extension), so
    GDAL reads them as JSON strings."""
    for statement in SCHEMA_DDL:
        connection.execute(statement)
    for table in ("gpkg_data_columns", "gpkg_data_column_constraints"):
        connection.execute(
            "INSERT INTO gpkg_extensions (table_name, column_name, extension_name, definition, scope)"
            " SELECT ?, NULL, 'gpkg_schema', ?, 'read-write' WHERE NOT EXISTS"
            " (SELECT 1 FROM gpkg_extensions WHERE table_name = ? AND extension_name = 'gpkg_schema')",
            (table, SCHEMA_EXTENSION, table))
    for table, columns in LIST_COLUMNS.items():
        if not _has_table(connection, table):
            continue
        present = [c for c, _ in _columns(connection, table) if c in columns]
        connection.executemany(
            "INSERT INTO gpkg_data_columns (table_name, column_name, mime_type) VALUES (?, ?, ?)"
            " ON CONFLICT (table_name, column_name) DO UPDATE SET mime_type = excluded.mime_type",
            [(table, column, JSON_MIME_TYPE) for column in present])


def unique_ids(connection: Connection) -> None:
    """A UNIQUE index on the `id` column of every gpkg_contents table that has one (not its integer key).

    Raises MigrationError naming the table and the first repeated id when ids repeat.
    """
    for table in _content_tables(connection):
        if ("id", 0) not in _columns(connection, table):
            continue
        repeated = connection.execute(
            f'SELECT id, count(*), group_concat(rowid, \', \') FROM "{table}" WHERE id IS NOT NULL'
            " GROUP BY id HAVING count(*) > 1 ORDER BY id LIMIT 1").fetchone()
        if repeated is not None:
            value, count, rowids = repeated
            raise MigrationError(
                f"table {table!r} has {count} rows with id {value!r} (rowids {rowids}); ids must be unique:"
                f" give all but one of them a new id, then open the file again (nothing was changed)")
        connection.execute(f'CREATE UNIQUE INDEX IF NOT EXISTS "{table}_id_unique" ON "{table}" ("id")')
