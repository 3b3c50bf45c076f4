"""The team's engine: PostgreSQL with PostGIS, through psycopg 3 and a connection pool.

Its connections speak the stores' one dialect (see app.storage): SQLite-style `?` parameters and GeoPackage
geometry blobs, translated here to `%s` and EWKB, so the edits and the catalogue's readers run unchanged.
Writes are SERIALIZABLE transactions, retried when PostgreSQL asks; each change record NOTIFYs every worker.
"""

from __future__ import annotations

import datetime
import logging
import re
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import TypeVar

import numpy as np
import psycopg
import psycopg_pool
import shapely
from psycopg import errors as pg_errors
from psycopg.adapt import Loader
from psycopg.types import TypeInfo
from psycopg.types.datetime import TimestamptzLoader

from app import migrations, pg_schema, store
from app.errors import ServiceBusy, StorageUnavailable

log = logging.getLogger("missile_sites.store_pg")
T = TypeVar("T")
GPKG_HEADER = store.GPKG_MAGIC + b"\x00\x01" + struct.pack("<i", store.SRS_ID)  # no envelope, little-endian
EWKB_SRID = 0x20000000
RETRIED = (pg_errors.SerializationFailure, pg_errors.DeadlockDetected, pg_errors.UniqueViolation)
WRITE_ATTEMPTS = 8
WRITE_LOCK = 0x6D697373  # the advisory lock every write transaction takes first, on every host: one writer at a time
LAYERS = pg_schema.LOAD_ORDER


class DatabaseProblem(RuntimeError):
    """The database cannot be used as asked (no schema yet, a schema already there); the message says what to do."""


# --- the dialect: GeoPackage blobs in and out, `?` parameters ------------------------------------------------


def gpkg_blob(ewkb: bytes) -> bytes:
    """A GeoPackage blob (no envelope) for PostGIS's EWKB: the SRID dropped from the WKB, the header put before it."""
    order = "<" if ewkb[0] == 1 else ">"
    (kind,) = struct.unpack(order + "I", ewkb[1:5])
    if kind & EWKB_SRID:
        ewkb = ewkb[:1] + struct.pack(order + "I", kind & ~EWKB_SRID) + ewkb[9:]
    return GPKG_HEADER + ewkb


def ewkb_hex(blobs: list[bytes | None]) -> list[str | None]:
    """GeoPackage blobs as hex EWKB with SRID 4326 (what geometry and geography columns take as text)."""
    shapes = [store.blob_geometry(blob) for blob in blobs]
    shapes = shapely.set_srid(np.array(shapes, dtype=object), store.SRS_ID)
    return [None if h is None else h for h in shapely.to_wkb(shapes, hex=True, include_srid=True).tolist()]


class GpkgBlobLoader(Loader):
    """Loads PostGIS geometry and geography values (hex EWKB text) as GeoPackage blobs."""

    def load(self, data) -> bytes:
        """One value as a GeoPackage blob."""
        return gpkg_blob(bytes.fromhex(bytes(data).decode("ascii")))


class StoredTimeLoader(TimestamptzLoader):
    """Loads a timestamptz as the stores' one time form, UTC with milliseconds and a Z (what store.utc_now writes
    and the GeoPackage keeps as text), whatever the session's time zone."""

    def load(self, data) -> str:
        """One value as stored text."""
        moment = super().load(data).astimezone(datetime.timezone.utc)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


_PARAMETER = re.compile(r"\?")


def to_psycopg(sql: str) -> str:
    """SQLite-style SQL as psycopg's: `%` escaped, each `?` a `%s` (the stores' SQL never quotes a `?`)."""
    return _PARAMETER.sub("%s", sql.replace("%", "%%"))


SRS_IDS = (struct.pack("<i", store.SRS_ID), struct.pack(">i", store.SRS_ID))


def _value(value):
    """A parameter as PostgreSQL takes it: a GeoPackage blob (its whole header: magic, version 0, SRS 4326) as hex
    EWKB; other bytes (stored border distances: float64 arrays, never subnormal) as they are."""
    if isinstance(value, bytes) and value[:3] == store.GPKG_MAGIC + b"\x00" and value[4:8] in SRS_IDS:
        return ewkb_hex([value])[0]
    return value


class PgConnection:
    """A psycopg connection speaking the stores' dialect, with the reads the catalogue asks of a store."""

    def __init__(self, connection: psycopg.Connection):
        self.raw = connection

    def execute(self, sql: str, values=()) -> psycopg.Cursor:
        """One statement with `?` parameters (GeoPackage blobs stored as geometry)."""
        return self.raw.execute(to_psycopg(sql), [_value(v) for v in values])

    def executemany(self, sql: str, rows) -> None:
        """One statement with `?` parameters for each row."""
        self.raw.cursor().executemany(to_psycopg(sql), [[_value(v) for v in row] for row in rows])

    def copy_rows(self, table: str, columns, rows) -> None:
        """Rows (in `columns`' order) into a table through COPY, GeoPackage blobs converted to EWKB in bulk."""
        rows, columns = list(rows), list(columns)
        if "geom" in columns:
            at = columns.index("geom")
            hexes = ewkb_hex([row[at] for row in rows])
            rows = [(*row[:at], h, *row[at + 1:]) for row, h in zip(rows, hexes)]
        listed = ", ".join(f'"{c}"' for c in columns)
        with self.raw.cursor().copy(f'COPY "{table}" ({listed}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row(row)

    def has_table(self, name: str) -> bool:
        """Whether the schema has a table of that name."""
        return self.raw.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"{name}"',)).fetchone()[0]

    def read_layer(self, table: str, *, ids: list[str] | None = None):
        """A layer (or its rows with the given ids) in fid order, as store.read_layer gives a GeoPackage's."""
        where = "" if ids is None else " WHERE id = ANY(%s)"
        cursor = self.raw.execute(f'SELECT * FROM "{table}"{where} ORDER BY fid', [] if ids is None else [ids])
        rows, columns = cursor.fetchall(), [d.name for d in cursor.description]
        kinds = dict(pg_schema.COLUMNS[table])
        reals = {c for c in columns if kinds.get(c) == pg_schema.REAL}
        geometry = "geom" if "geom" in kinds else None
        return store.layer_frame(rows, columns, reals, geometry)


def configure(connection: psycopg.Connection) -> None:
    """A new pooled connection loads geometry and geography values as GeoPackage blobs, and times as stored text."""
    for name in ("geometry", "geography"):
        info = TypeInfo.fetch(connection, name)
        if info is not None:
            connection.adapters.register_loader(info.oid, GpkgBlobLoader)
    connection.adapters.register_loader("timestamptz", StoredTimeLoader)


# --- the store ---------------------------------------------------------------------------------------


class PostGISStore:
    """The catalogue in a PostGIS database: pooled connections, serializable writes, LISTEN/NOTIFY for changes."""

    def __init__(self, url: str, *, write_wait_s: float = 20.0, poll_s: float = 1.0, pool_size: int = 4):
        self.url, self.poll_s, self.write_wait_s = url, poll_s, write_wait_s
        self.label = redacted(url)
        self._pool = psycopg_pool.ConnectionPool(url, min_size=1, max_size=pool_size, configure=configure,
                                                 kwargs={"autocommit": True}, open=False, name="missile-sites")
        try:
            self._pool.open(wait=True, timeout=write_wait_s)
        except psycopg_pool.PoolTimeout as exc:
            self._pool.close()
            raise DatabaseProblem(f"{self.label} does not answer within {write_wait_s:g} s: {exc}") from exc
        self._stop = threading.Event()
        self._listener: threading.Thread | None = None
        self._check_schema()

    def _check_schema(self) -> None:
        """DatabaseProblem unless the schema is at this version's migration (`db init` made it, `db migrate`
        brought it up to date)."""
        with self._pool.connection() as connection:
            version = applied_version(connection)
        if version == 0:
            raise DatabaseProblem(f"{self.label}: no missile-sites schema; run `missile-sites db init` first")
        if version < latest_version():
            raise DatabaseProblem(f"{self.label}: the schema is at migration {version}, this missile-sites needs"
                                  f" {latest_version()}; run `missile-sites db migrate`")
        if version > latest_version():
            raise DatabaseProblem(f"{self.label}: the schema is at migration {version}, newer than this"
                                  f" missile-sites knows ({latest_version()}); upgrade missile-sites")

    @contextmanager
    def reading(self) -> Iterator[PgConnection]:
        """A pooled connection in one REPEATABLE READ, READ ONLY transaction: one snapshot for every query."""
        with self._pool.connection() as connection, connection.transaction():
            connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield PgConnection(connection)

    def load_snapshot(self):
        """The whole catalogue as one snapshot."""
        from app.catalogue import Catalogue
        return Catalogue(self)

    def changes_after(self, change_id: int, limit: int) -> list[tuple[str, str, str | None]]:
        """(entity, entity_id, site_id) of up to `limit` changes after the change id, oldest first."""
        with self.reading() as connection:
            return connection.execute("SELECT entity, entity_id, site_id FROM changes WHERE id > ? ORDER BY id"
                                      " LIMIT ?", (change_id, limit)).fetchall()

    def advance(self, current):
        """The snapshot advanced from the change log when a change newer than it was committed, else `current`."""
        with self.reading() as connection:
            newest = connection.execute("SELECT coalesce(max(id), 0) FROM changes").fetchone()[0]
            return current if newest == current.last_change else current.advanced(connection)

    def subscribe(self, wake: Callable[[], None]) -> None:
        """LISTEN on the change channel in a thread, calling `wake` at each commit's notification."""
        self._listener = threading.Thread(target=self._listen, args=(wake,), name="catalogue-listener", daemon=True)
        self._listener.start()

    def _listen(self, wake: Callable[[], None]) -> None:
        """Wake the refresher at each notification; reconnect after a lost connection (the poll covers the gap)."""
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True) as connection:
                    connection.execute(f"LISTEN {pg_schema.CHANNEL}")
                    while not self._stop.is_set():
                        for _ in connection.notifies(timeout=0.5, stop_after=1):
                            wake()
            except psycopg.Error as exc:
                log.warning("listening for changes on %s failed (%s); polling until it is back", self.label, exc)
                self._stop.wait(1.0)

    def write(self, work: Callable[[PgConnection], T]) -> T:
        """`work` in one SERIALIZABLE transaction, retried when PostgreSQL reports a conflict; storage failures are
        ServiceBusy (retry) or StorageUnavailable (an operator's problem)."""
        for attempt in range(WRITE_ATTEMPTS):
            try:
                return self._attempt(work)
            except RETRIED as exc:
                if attempt == WRITE_ATTEMPTS - 1:
                    raise ServiceBusy(f"the catalogue is busy with other writers: {exc}; try again shortly") from exc
                time.sleep(0.005 * 2 ** attempt)
            except pg_errors.LockNotAvailable as exc:
                raise ServiceBusy(f"the catalogue is busy with another writer: {exc}; try again shortly") from exc
            except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
                raise StorageUnavailable(f"the catalogue database {self.label} cannot be written: {exc}") from exc
        raise AssertionError("unreachable")

    def _attempt(self, work: Callable[[PgConnection], T]) -> T:
        """One try of a write transaction."""
        with self._pool.connection(timeout=self.write_wait_s) as connection, connection.transaction():
            connection.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
            connection.execute(f"SET LOCAL lock_timeout = {int(self.write_wait_s * 1000)}")
            connection.execute("SELECT pg_advisory_xact_lock(%s)", [WRITE_LOCK])  # writers queue, not conflict
            return work(PgConnection(connection))

    def export_gpkg(self, destination: Path) -> Path:
        """A GeoPackage of the whole catalogue, as one snapshot of the database (see export_gpkg)."""
        with self.reading() as connection:
            return export_gpkg(connection, Path(destination))

    def health(self) -> str | None:
        """None when the database answers, else the problem."""
        try:
            with self._pool.connection(timeout=self.write_wait_s) as connection:
                connection.execute("SELECT 1")
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            return f"the catalogue database {self.label} does not answer: {exc}"
        return None

    def close(self) -> None:
        """Stop listening and close the pool."""
        self._stop.set()
        if self._listener is not None:
            self._listener.join(2)
        self._pool.close()


def redacted(url: str) -> str:
    """A database URL without its password."""
    return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", url)


# --- schema versions ---------------------------------------------------------------------------------


def latest_version() -> int:
    """The newest migration's number."""
    return pg_schema.MIGRATIONS[-1][0]


def applied_version(connection: psycopg.Connection) -> int:
    """The newest migration applied to the database (0 for none)."""
    if connection.execute("SELECT to_regclass(%s)", (pg_schema.VERSION_TABLE,)).fetchone()[0] is None:
        return 0
    return connection.execute(f"SELECT coalesce(max(version), 0) FROM {pg_schema.VERSION_TABLE}").fetchone()[0]


def migrate(connection: psycopg.Connection, *, through: int | None = None) -> list[int]:
    """Apply the migrations the database lacks, in order, up to `through` (default: all), inside the caller's
    transaction; their numbers."""
    connection.execute(pg_schema.VERSION_DDL)
    done = applied_version(connection)
    applied = []
    for number, description, statements in pg_schema.MIGRATIONS:
        if done < number <= (latest_version() if through is None else through):
            for statement in statements():
                connection.execute(statement)
            connection.execute(f"INSERT INTO {pg_schema.VERSION_TABLE} (version, description) VALUES (%s, %s)",
                               (number, description))
            applied.append(number)
    return applied


# --- db init: the schema and a GeoPackage's rows, in one transaction ----------------------------------------


def upgrade_database(url: str) -> list[int]:
    """Apply the migrations a database made by an earlier version lacks, in ONE transaction; their numbers.
    DatabaseProblem when it holds no catalogue."""
    with psycopg.connect(url, autocommit=True) as connection, connection.transaction():
        if not applied_version(connection):
            raise DatabaseProblem(f"{redacted(url)}: no missile-sites schema; run `missile-sites db init` first")
        connection.execute(f"LOCK TABLE {pg_schema.VERSION_TABLE} IN EXCLUSIVE MODE")  # one migrator at a time
        applied = migrate(connection)
        if 4 in applied:  # the stored border distances: every located site measured once, as the GeoPackage's schema 4
            from app import border_store
            configure(connection)
            border_store.write_all(PgConnection(connection))
        return applied


def init_database(url: str, gpkg: Path, *, through: int | None = None) -> dict[str, int]:
    """Create the schema (its migrations up to `through`, default all) and load a GeoPackage (brought to the
    current schema on a copy) in ONE transaction; the rows loaded per table. DatabaseProblem when the database
    already holds a catalogue."""
    import tempfile
    with tempfile.TemporaryDirectory(prefix="missile-sites-init-") as folder:
        copy = store.copy_consistent(Path(gpkg), Path(folder) / "source.gpkg")
        with closing(store.connect(copy)) as source:
            store.ensure_edit_schema(source)
            with psycopg.connect(url, autocommit=True) as connection, connection.transaction():
                if applied_version(connection) or connection.execute("SELECT to_regclass('sites')").fetchone()[0]:
                    raise DatabaseProblem(f"{redacted(url)} already holds a catalogue; use an empty database")
                migrate(connection, through=through)
                return _load(source, connection)


def _load(source, connection: psycopg.Connection) -> dict[str, int]:
    """Copy every layer, the metadata and the change log from the GeoPackage, keeping fids and change ids."""
    counts = {}
    for table in LAYERS:
        if store.has_table(source, table):
            counts[table] = _copy_table(source, connection, table)
    for key, value in source.execute(f'SELECT key, value FROM "{migrations.META_TABLE}"'):
        connection.execute("INSERT INTO catalogue_meta (key, value) VALUES (%s, %s)", (key, value))
    columns = ("id", "at", "actor", "action", "entity", "entity_id", "site_id", "diff", "before", "after")
    rows = source.execute(f"SELECT {', '.join(columns)} FROM changes ORDER BY id").fetchall()
    with connection.cursor().copy(f"COPY changes ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    counts["changes"] = len(rows)
    if store.has_table(source, pg_schema.BORDER_DISTANCES_TABLE) and connection.execute(
            "SELECT to_regclass(%s)", (pg_schema.BORDER_DISTANCES_TABLE,)).fetchone()[0]:  # from migration 4
        listed = ", ".join(pg_schema.BORDER_DISTANCES_COLUMNS)
        rows = source.execute(f'SELECT {listed} FROM "{pg_schema.BORDER_DISTANCES_TABLE}" ORDER BY fid').fetchall()
        with connection.cursor().copy(f"COPY {pg_schema.BORDER_DISTANCES_TABLE} ({listed}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    for table in (*counts, ):
        column = "id" if table == "changes" else "fid"
        connection.execute(f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'),"
                           f" coalesce((SELECT max({column}) FROM {table}), 0) + 1, false)")
    return counts


def _copy_table(source, connection: psycopg.Connection, table: str) -> int:
    """One layer's rows (fid kept, geometry as EWKB) through COPY; the row count."""
    have = {row[1] for row in source.execute(f'PRAGMA table_info("{table}")')}
    columns = ["fid"] + [c for c, _ in pg_schema.COLUMNS[table] if c in have]
    listed = ", ".join(f'"{c}"' for c in columns)
    rows = source.execute(f'SELECT {listed} FROM "{table}" ORDER BY fid').fetchall()
    if "geom" in columns:
        at = columns.index("geom")
        hexes = ewkb_hex([row[at] for row in rows])
        rows = [row[:at] + (h,) + row[at + 1:] for row, h in zip(rows, hexes)]
    with connection.cursor().copy(f'COPY "{table}" ({listed}) FROM STDIN') as copy:
        for row in rows:
            copy.write_row(row)
    return len(rows)


# --- db export: a GeoPackage of one snapshot ------------------------------------------------------------


def export_gpkg(connection: PgConnection, destination: Path) -> Path:
    """A GeoPackage of the database: the bundled file's schema (tables, R-trees, metadata) filled with the
    database's rows in one SQLite transaction, written beside the destination then moved in."""
    import os
    import tempfile

    from app.settings import GEODATA_DIR
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent)
    os.close(handle)
    try:
        store.copy_consistent(GEODATA_DIR / "catalogue.gpkg", Path(temp))
        with closing(store.connect(Path(temp))) as target:
            store.ensure_edit_schema(target)
            with store.transaction(target):
                _fill(connection, target)
            target.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            target.execute("PRAGMA journal_mode=DELETE")
        os.replace(temp, destination)
    finally:
        for leftover in (temp, temp + "-wal", temp + "-shm"):
            Path(leftover).unlink(missing_ok=True)
    return destination


def _fill(source: PgConnection, target) -> None:
    """Replace every layer's rows, the metadata and the change log of the template with the database's."""
    for table in LAYERS:
        columns = ["fid"] + [c for c, _ in pg_schema.COLUMNS[table]]
        listed = ", ".join(f'"{c}"' for c in columns)
        rows = source.raw.execute(f'SELECT {listed} FROM "{table}" ORDER BY fid').fetchall()
        _replace_rows(target, table, columns, rows)
        _set_extent(source, target, table)
    target.execute(f'DELETE FROM "{migrations.META_TABLE}"')
    target.executemany(f'INSERT INTO "{migrations.META_TABLE}" (key, value) VALUES (?, ?)',
                       source.raw.execute("SELECT key, value FROM catalogue_meta ORDER BY key").fetchall())
    columns = "id, at, actor, action, entity, entity_id, site_id, diff, before, after"
    target.execute("DELETE FROM changes")
    target.executemany(f"INSERT INTO changes ({columns}) VALUES ({', '.join('?' * 10)})",
                       source.raw.execute(f"SELECT {columns} FROM changes ORDER BY id").fetchall())
    if store.has_table(target, pg_schema.BORDER_DISTANCES_TABLE):  # the template's rows replaced by the database's
        listed = ", ".join(pg_schema.BORDER_DISTANCES_COLUMNS)
        target.execute(f'DELETE FROM "{pg_schema.BORDER_DISTANCES_TABLE}"')
        target.executemany(f'INSERT INTO "{pg_schema.BORDER_DISTANCES_TABLE}" ({listed}) VALUES'
                           f' ({", ".join("?" * len(pg_schema.BORDER_DISTANCES_COLUMNS))})',
                           source.raw.execute(f"SELECT {listed} FROM {pg_schema.BORDER_DISTANCES_TABLE}"
                                              " ORDER BY site_id").fetchall())


def _replace_rows(target, table: str, columns: list[str], rows: list[tuple]) -> None:
    """A layer's rows replaced, doing in bulk what the per-row triggers would (as the importer does): the R-tree
    and feature-count triggers are dropped within the transaction, the rows written, the R-tree filled from the
    geometries' bounds (none for a missing or empty geometry, as the trigger's ST_IsEmpty test) and the count set,
    then the triggers created again from their stored SQL. The R-tree trigger calls five Python functions a row."""
    rtree = f"rtree_{table}_geom"
    triggers = dict(target.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ? AND (name LIKE ? OR name IN"
        " (?, ?))", (table, f"{rtree}_%", f"trigger_insert_feature_count_{table}",
                      f"trigger_delete_feature_count_{table}")))
    for name in triggers:
        target.execute(f'DROP TRIGGER "{name}"')
    target.execute(f'DELETE FROM "{table}"')
    listed = ", ".join(f'"{c}"' for c in columns)
    target.executemany(f'INSERT INTO "{table}" ({listed}) VALUES ({", ".join("?" * len(columns))})', rows)
    if store.has_table(target, rtree):
        target.execute(f'DELETE FROM "{rtree}"')
        at = columns.index("geom")
        bounds = shapely.bounds(store.blob_geometries([row[at] for row in rows]))
        target.executemany(f'INSERT INTO "{rtree}" VALUES (?, ?, ?, ?, ?)',
                           [(row[0], minx, maxx, miny, maxy) for row, (minx, miny, maxx, maxy)
                            in zip(rows, bounds.tolist()) if minx == minx])  # NaN: no point, or an empty one
    if store.has_table(target, "gpkg_ogr_contents"):
        target.execute("UPDATE gpkg_ogr_contents SET feature_count = ? WHERE lower(table_name) = lower(?)",
                       (len(rows), table))
    for sql in triggers.values():
        target.execute(sql)


def _set_extent(source: PgConnection, target, table: str) -> None:
    """A geometry layer's extent in gpkg_contents, from the database's rows."""
    store.touch_contents(target, table)
    if pg_schema.COLUMNS[table][0][0] != "geom":
        return
    box = source.raw.execute(f'SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e)'
                             f' FROM (SELECT ST_Extent(geom::geometry) AS e FROM "{table}") AS extent').fetchone()
    target.execute("UPDATE gpkg_contents SET min_x = ?, min_y = ?, max_x = ?, max_y = ? WHERE table_name = ?",
                   (*box, table))
