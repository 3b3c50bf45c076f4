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

import geopandas as gpd
import pandas as pd
import shapely

from app import migrations

BUSY_TIMEOUT_MS = 30_000
SRS_ID = 4326
GPKG_MAGIC = b"GP"
TEXT_DTYPE = pd.StringDtype(storage="python", na_value=float("nan"))  # as pyogrio reads TEXT
ENVELOPE_BYTES = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}

# Columns the live catalogue adds to the built layers: who changed a row and when (server-owned).
EDIT_COLUMNS = {
    "sites": ("created_at", "created_by", "updated_at", "updated_by", "retired_at", "retired_by"),
    "observations": ("recorded_at", "recorded_by"),
    "sources": ("created_at", "created_by", "updated_at", "updated_by"),
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


def point_blob(lon: float, lat: float) -> bytes:
    """A GeoPackage geometry blob for a WGS84 point: little-endian header, no envelope, then WKB."""
    return GPKG_MAGIC + bytes((0, 1)) + struct.pack("<i", SRS_ID) + shapely.to_wkb(shapely.Point(lon, lat), byte_order=1)


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


def connect(path: Path) -> sqlite3.Connection:
    """A writer's connection: WAL, a busy timeout, synchronous=FULL, and the R-tree trigger functions."""
    connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    register_gpkg_functions(connection)
    connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    if connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    return connection


def connect_readonly(path: Path) -> sqlite3.Connection:
    """A reader's connection that refuses writes (opened read-write so it can share a WAL file's index)."""
    connection = sqlite3.connect(f"file:{Path(path).resolve()}?mode=rw", uri=True, isolation_level=None,
                                 check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
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
    """Whether the file has a table of that name."""
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
    """Record a table's last change in gpkg_contents and widen its extent to a new point."""
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
    """The live GeoPackage at `path`, first copied from the bundled `seed` (with the edit schema) if missing."""
    path = Path(path)
    if path.exists():
        return path
    if not Path(seed).is_file():
        raise FileNotFoundError(f"GeoPackage not found: {path} (and no bundled copy at {seed} to start from)")
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".seed.tmp", dir=_parent(path))
    os.close(handle)
    try:
        copy_consistent(seed, Path(temp_name))
        with closing(connect(Path(temp_name))) as connection:
            ensure_edit_schema(connection)
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        os.replace(temp_name, path)
    finally:
        for leftover in (temp_name, temp_name + "-wal", temp_name + "-shm"):
            Path(leftover).unlink(missing_ok=True)
    return path


def _parent(path: Path) -> Path:
    """A file's folder, created if missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.parent


# --- reading layers --------------------------------------------------------------------------------


def geometry_column(connection: sqlite3.Connection, table: str) -> str | None:
    """The geometry column of a GeoPackage table, None for an attributes table."""
    row = connection.execute("SELECT column_name FROM gpkg_geometry_columns WHERE table_name = ?", (table,)).fetchone()
    return row[0] if row else None


def read_layer(connection: sqlite3.Connection, table: str) -> pd.DataFrame:
    """One GeoPackage layer, in fid order, as GDAL would give it: a GeoDataFrame in EPSG:4326 when it has geometry.

    Read with this process's SQLite so that a GDAL copy of SQLite never shares the live file (two SQLite
    libraries in one process release each other's POSIX locks).
    """
    cursor = connection.execute(f'SELECT * FROM "{table}" ORDER BY fid' if _has_fid(connection, table)
                                else f'SELECT * FROM "{table}"')
    columns = [d[0] for d in cursor.description]
    frame = pd.DataFrame.from_records(cursor.fetchall(), columns=columns, coerce_float=False)
    frame = frame.drop(columns=[c for c in ("fid",) if c in frame.columns])
    reals, geometry = _real_columns(connection, table), geometry_column(connection, table)
    for column in frame.columns:
        if column in reals:
            frame[column] = pd.to_numeric(frame[column]).astype(float)
        elif column != geometry:
            frame[column] = frame[column].astype(TEXT_DTYPE)
    if geometry is None:
        return frame
    shapes = [blob_geometry(blob) for blob in frame.pop(geometry)]
    return gpd.GeoDataFrame(frame, geometry=gpd.GeoSeries(shapes, index=frame.index, crs=f"EPSG:{SRS_ID}"))


def _has_fid(connection: sqlite3.Connection, table: str) -> bool:
    """Whether a table has GDAL's fid column."""
    return "fid" in _columns(connection, table)


def _real_columns(connection: sqlite3.Connection, table: str) -> set[str]:
    """The columns declared REAL, DOUBLE or FLOAT (read as float, NULL as NaN)."""
    return {row[1] for row in connection.execute(f'PRAGMA table_info("{table}")')
            if row[2].upper() in ("REAL", "DOUBLE", "FLOAT")}
