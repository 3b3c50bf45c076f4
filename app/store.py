"""The only code that writes the GeoPackage: connections, transactions, the live copy, schema and backups."""

from __future__ import annotations

import datetime
import os
import sqlite3
import struct
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from urllib.parse import quote

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from app import migrations

BUSY_TIMEOUT_MS = 30_000
REQUIRED_TABLES = ("sites", "observations", "sources", "missiles", "places", "borders", "countries")
SRS_ID = 4326
GPKG_MAGIC = b"GP"
TEXT_DTYPE = pd.StringDtype(storage="python", na_value=float("nan"))  # as pyogrio reads TEXT
ENVELOPE_BYTES = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}

# Columns the live catalogue adds to the built layers: who changed a row and when (server-owned).
EDIT_COLUMNS = {
    "sites": ("created_at", "created_by", "updated_at", "updated_by", "retired_at", "retired_by"),
    "observations": ("recorded_at", "recorded_by"),
    "sources": ("created_at", "created_by", "updated_at", "updated_by"),
    "missiles": ("created_at", "created_by", "updated_at", "updated_by"),
    "places": ("created_at", "created_by", "updated_at", "updated_by"),
}
CHANGES_DDL = """
CREATE TABLE IF NOT EXISTS changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    entity TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    site_id TEXT,
    diff TEXT NOT NULL,
    before TEXT,
    after TEXT
)"""
CHANGES_INDEXES = (
    "CREATE INDEX IF NOT EXISTS changes_at ON changes (at)",
    "CREATE INDEX IF NOT EXISTS changes_entity ON changes (entity, entity_id)",
)


def utc_now() -> str:
    """The current UTC time as ISO 8601 with milliseconds and a Z, the form every stored time takes."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- GeoPackage geometry blobs -------------------------------------------------------------------


_POINT_BLOB = struct.Struct("<2sBBiBIdd")  # GP, version 0, flags 1 (little-endian, no envelope), srs; WKB Point


def point_blob(lon: float, lat: float) -> bytes:
    """A GeoPackage geometry blob for a WGS84 point: little-endian header, no envelope, then little-endian WKB."""
    return _POINT_BLOB.pack(GPKG_MAGIC, 0, 1, SRS_ID, 1, 1, lon, lat)


def blob_geometries(blobs: list) -> np.ndarray:
    """The geometries in many GeoPackage blobs, decoded in one call (None for NULL): the same as blob_geometry's."""
    wkb = [None] * len(blobs)
    for n, blob in enumerate(blobs):
        if blob is not None:
            if blob[:2] != GPKG_MAGIC:
                raise ValueError("not a GeoPackage geometry blob")
            wkb[n] = blob[8 + ENVELOPE_BYTES[(blob[3] >> 1) & 0x07]:]
    return shapely.from_wkb(np.array(wkb, dtype=object))


def blob_geometry(blob: bytes | None) -> shapely.Geometry | None:
    """The geometry in a GeoPackage blob (None for NULL)."""
    if blob is None:
        return None
    if blob[:2] != GPKG_MAGIC:
        raise ValueError("not a GeoPackage geometry blob")
    flags = blob[3]
    return shapely.from_wkb(blob[8 + ENVELOPE_BYTES[(flags >> 1) & 0x07]:])


def _is_empty(blob: bytes | None) -> int | None:
    """ST_IsEmpty, as the GeoPackage R-tree triggers call it."""
    if blob is None:
        return None
    if blob[3] & 0x10:
        return 1
    geometry = blob_geometry(blob)
    return int(geometry.is_empty or _nan_point(geometry))


def _nan_point(geometry: shapely.Geometry) -> bool:
    """Whether a point is the WKB encoding of an empty point (NaN coordinates)."""
    return geometry.geom_type == "Point" and not geometry.is_empty and any(c != c for c in geometry.coords[0])


def _bound(index: int):
    """ST_MinX, ST_MinY, ST_MaxX or ST_MaxY over a GeoPackage blob."""
    def function(blob: bytes | None) -> float | None:
        geometry = blob_geometry(blob)
        return None if geometry is None or geometry.is_empty else float(geometry.bounds[index])
    return function


def register_gpkg_functions(connection: sqlite3.Connection) -> None:
    """Register the ST_* functions the GeoPackage R-tree triggers call, so writes keep the index right."""
    connection.create_function("ST_IsEmpty", 1, _is_empty, deterministic=True)
    for name, index in (("ST_MinX", 0), ("ST_MinY", 1), ("ST_MaxX", 2), ("ST_MaxY", 3)):
        connection.create_function(name, 1, _bound(index), deterministic=True)


# --- connections and transactions ----------------------------------------------------------------


StoreError = sqlite3.Error  # what a read of the file raises when it fails, for code outside the storage boundary


class LiveFileProblem(RuntimeError):
    """The live GeoPackage is missing, unreadable or not a catalogue; the message names the file and what to do."""


def _uri(path: Path, mode: str) -> str:
    """An SQLite URI for an existing file (SQLite never creates a missing one in mode=rw)."""
    return f"file:{quote(str(Path(path).resolve()))}?mode={mode}"


def connect(path: Path, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> sqlite3.Connection:
    """A writer's connection to an existing file: WAL, a busy timeout, synchronous=FULL, the R-tree trigger functions."""
    connection = sqlite3.connect(_uri(path, "rw"), uri=True, timeout=busy_timeout_ms / 1000, isolation_level=None,
                                 check_same_thread=False)
    register_gpkg_functions(connection)
    connection.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
    if connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    return connection


def connect_readonly(path: Path) -> sqlite3.Connection:
    """A reader's connection that refuses writes (opened read-write so it can share a WAL file's index)."""
    connection = sqlite3.connect(_uri(path, "rw"), uri=True, isolation_level=None, check_same_thread=False,
                                 timeout=BUSY_TIMEOUT_MS / 1000)
    connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    connection.execute("PRAGMA query_only=ON")
    return connection


@contextmanager
def transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One `BEGIN IMMEDIATE` transaction: committed when the block ends, rolled back on any error."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


# --- schema of the live catalogue ----------------------------------------------------------------


def _columns(connection: sqlite3.Connection, table: str) -> set[str]:
    """The column names of a table."""
    return {row[1] for row in connection.execute(f'PRAGMA table_info("{table}")')}


def has_table(connection: sqlite3.Connection, name: str) -> bool:
    """Whether the file has a table of that name (asked of the PostGIS engine's connection when given one)."""
    if not isinstance(connection, sqlite3.Connection):
        return connection.has_table(name)
    return connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() \
        is not None


def has_edit_schema(connection: sqlite3.Connection) -> bool:
    """Whether the file already has the changes table and the edit columns."""
    return has_table(connection, "changes") and all(set(cols) <= _columns(connection, t) for t, cols in EDIT_COLUMNS.items())


def ensure_edit_schema(connection: sqlite3.Connection) -> None:
    """Add the changes table and the edit columns if missing (idempotent, in one transaction)."""
    migrations.migrate(connection)
    if has_edit_schema(connection):
        return
    with transaction(connection):
        for table, columns in EDIT_COLUMNS.items():
            for column in sorted(set(columns) - _columns(connection, table), key=columns.index):
                connection.execute(f'ALTER TABLE "{table}" ADD COLUMN "{column}" TEXT')
        connection.execute(CHANGES_DDL)
        for statement in CHANGES_INDEXES:
            connection.execute(statement)
        connection.execute(
            "INSERT OR IGNORE INTO gpkg_contents (table_name, data_type, identifier, description, last_change)"
            " VALUES ('changes', 'attributes', 'changes', 'Every edit: who, when, what changed from what to what.', ?)",
            (utc_now(),),
        )


def touch_contents(connection: sqlite3.Connection, table: str, point: shapely.Point | None = None) -> None:
    """Record a table's last change in gpkg_contents and widen its extent to a new point (GeoPackage only)."""
    if not isinstance(connection, sqlite3.Connection):
        return
    connection.execute("UPDATE gpkg_contents SET last_change = ? WHERE table_name = ?", (utc_now(), table))
    if point is not None:
        connection.execute(
            "UPDATE gpkg_contents SET min_x = min(coalesce(min_x, ?1), ?1), max_x = max(coalesce(max_x, ?1), ?1),"
            " min_y = min(coalesce(min_y, ?2), ?2), max_y = max(coalesce(max_y, ?2), ?2) WHERE table_name = ?3",
            (point.x, point.y, table),
        )


# --- the live copy and backups -------------------------------------------------------------------


def copy_consistent(source: Path, destination: Path) -> Path:
    """A consistent copy of a (possibly live) GeoPackage, written beside the destination then moved in."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent)
    os.close(handle)
    try:
        with closing(connect_readonly(source)) as src, closing(sqlite3.connect(temp_name)) as dst:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")
        os.replace(temp_name, destination)
    finally:
        Path(temp_name).unlink(missing_ok=True)
    return destination


def ensure_live(path: Path, seed: Path) -> Path:
    """The live GeoPackage at `path`, checked; created from the bundled `seed` only where no catalogue ever was.

    The new file is written aside and linked into place only if the path is still free, so any number of
    processes starting at once share one file. A path whose file is gone but whose `-wal` or seed marker is
    still there had a catalogue (maybe with edits): that is refused, never seeded over.
    """
    path = Path(path)
    if not path.exists():
        _refuse_reseeding(path)
        _seed(path, Path(seed))
    check_live(path)
    _migrate(path)
    return path


def seed_marker(path: Path) -> Path:
    """The file that records that a live catalogue was created at `path`."""
    return path.with_name(path.name + ".seeded")


def _refuse_reseeding(path: Path) -> None:
    """Refuse to seed a path that held a catalogue: its -wal or seed marker is still there."""
    for leftover in (path.with_name(path.name + "-wal"), seed_marker(path)):
        if leftover.exists():
            raise LiveFileProblem(
                f"{path}: the live GeoPackage is missing but {leftover} is there, so it held a catalogue (maybe with"
                f" edits); restore it from a backup (missile-sites backup), or remove {leftover} to start afresh"
                " from the bundled catalogue")


def _seed(path: Path, seed: Path) -> None:
    """Copy the seed aside with the edit schema, then link it into place unless another process was first."""
    if not seed.is_file():
        raise LiveFileProblem(f"{path}: the live GeoPackage is missing and there is no bundled copy at {seed} to"
                              " start from")
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".seed.tmp", dir=_parent(path))
    os.close(handle)
    try:
        copy_consistent(seed, Path(temp_name))
        with closing(connect(Path(temp_name))) as connection:
            ensure_edit_schema(connection)
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        try:
            os.link(temp_name, path)  # atomic, and fails if the path exists: the first process wins
        except FileExistsError:
            return
        seed_marker(path).write_text(f"seeded from {seed} at {utc_now()}\n", encoding="utf-8")
    finally:
        for leftover in (temp_name, temp_name + "-wal", temp_name + "-shm"):
            Path(leftover).unlink(missing_ok=True)


def _migrate(path: Path) -> None:
    """Bring an older live file to the current schema (a read-only one is served as it is)."""
    with closing(connect_readonly(path)) as connection:
        if migrations.schema_version(connection) == migrations.SCHEMA_VERSION:
            return
    try:
        with closing(connect(path)) as connection:
            migrations.migrate(connection)
    except migrations.MigrationError as exc:
        raise LiveFileProblem(f"{path}: {exc}") from exc
    except sqlite3.OperationalError as exc:
        if "readonly" not in str(exc):
            raise LiveFileProblem(f"{path}: cannot be brought to the current schema ({exc})") from exc


def check_live(path: Path) -> None:
    """A readable SQLite file with the catalogue's tables, or LiveFileProblem naming the file and what to do."""
    if not path.is_file():
        raise LiveFileProblem(f"{path}: not a file; point MISSILE_SITES_GPKG at the live GeoPackage")
    try:
        with closing(connect_readonly(path)) as connection:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as exc:
        raise LiveFileProblem(f"{path}: cannot be read as a GeoPackage ({exc}); restore it from a backup"
                              " (missile-sites backup) or move it away to start from the bundled catalogue") from exc
    missing = [t for t in REQUIRED_TABLES if t not in tables]
    if missing:
        raise LiveFileProblem(f"{path}: not a missile-sites GeoPackage (no {', '.join(missing)} table); restore it"
                              " from a backup or move it away to start from the bundled catalogue")


def _parent(path: Path) -> Path:
    """A file's folder, created if missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.parent


# --- reading layers --------------------------------------------------------------------------------


def geometry_column(connection: sqlite3.Connection, table: str) -> str | None:
    """The geometry column of a GeoPackage table, None for an attributes table."""
    row = connection.execute("SELECT column_name FROM gpkg_geometry_columns WHERE table_name = ?", (table,)).fetchone()
    return row[0] if row else None


ID_BATCH = 10_000  # ids per `IN (...)` query, well under SQLite's limit on parameters


def read_layer(connection: sqlite3.Connection, table: str, *, ids: list[str] | None = None) -> pd.DataFrame:
    """One GeoPackage layer (or only its rows with the given ids), in fid order, as GDAL would give it: a
    GeoDataFrame in EPSG:4326 when it has geometry.

    Read with this process's SQLite so that a GDAL copy of SQLite never shares the live file (two SQLite
    libraries in one process release each other's POSIX locks).
    """
    if not isinstance(connection, sqlite3.Connection):
        return connection.read_layer(table, ids=ids)
    order = " ORDER BY fid" if _has_fid(connection, table) else ""
    if ids is None:
        cursor = connection.execute(f'SELECT * FROM "{table}"{order}')
        rows = cursor.fetchall()
    else:
        rows, cursor = [], connection.execute(f'SELECT * FROM "{table}" LIMIT 0')
        for start in range(0, len(ids), ID_BATCH):
            batch = ids[start:start + ID_BATCH]
            rows += connection.execute(f'SELECT * FROM "{table}" WHERE id IN ({", ".join("?" * len(batch))})'
                                       f'{order}', batch).fetchall()
    columns = [d[0] for d in cursor.description]
    if ids is not None and order and len(ids) > ID_BATCH:
        fid = columns.index("fid")
        rows.sort(key=lambda row: row[fid])
    return layer_frame(rows, columns, _real_columns(connection, table), geometry_column(connection, table))


def layer_frame(rows: list[tuple], columns: list[str], reals: set[str], geometry: str | None) -> pd.DataFrame:
    """Rows of a layer as GDAL would give them (fid dropped, reals as float, the rest text, blobs decoded)."""
    frame = pd.DataFrame.from_records(rows, columns=columns, coerce_float=False)
    frame = frame.drop(columns=[c for c in ("fid",) if c in frame.columns])
    for column in frame.columns:
        if column in reals:
            frame[column] = pd.to_numeric(frame[column]).astype(float)
        elif column != geometry:
            frame[column] = frame[column].astype(TEXT_DTYPE)
    if geometry is None:
        return frame
    shapes = blob_geometries(frame.pop(geometry).tolist())
    return gpd.GeoDataFrame(frame, geometry=gpd.GeoSeries(shapes, index=frame.index, crs=f"EPSG:{SRS_ID}"))


def _has_fid(connection: sqlite3.Connection, table: str) -> bool:
    """Whether a table has GDAL's fid column."""
    return "fid" in _columns(connection, table)


def _real_columns(connection: sqlite3.Connection, table: str) -> set[str]:
    """The columns declared REAL, DOUBLE or FLOAT (read as float, NULL as NaN)."""
    return {row[1] for row in connection.execute(f'PRAGMA table_info("{table}")')
            if row[2].upper() in ("REAL", "DOUBLE", "FLOAT")}
