"""The embedded engine: the live GeoPackage, written by one thread per process, watched with PRAGMA data_version."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, TypeVar

from app import store
from app.errors import ServiceBusy, StorageUnavailable

T = TypeVar("T")


def storage_error(path: Path, exc: sqlite3.Error) -> Exception:
    """The client-facing error for an SQLite failure on the live file: busy is a 503 to retry, the rest a 503 for
    an operator (read-only file, full disk, I/O error), each naming the problem."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        return ServiceBusy(f"the catalogue is busy with another writer (an import?): {text}; try again shortly")
    return StorageUnavailable(f"the live catalogue {path} cannot be written: {text}")


class GeoPackageStore:
    """The live GeoPackage: readers on their own connections, one writer connection, the change log in the file."""

    poll_s = 0.1

    def __init__(self, path: Path, *, write_wait_s: float = 20.0):
        self.path = Path(path)
        self.label = str(self.path)
        self.write_wait_s = write_wait_s
        self._identity = _identity(self.path)
        self._watch: sqlite3.Connection | None = None
        self._seen: int | None = None
        self._connection: sqlite3.Connection | None = None

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection holding one read transaction: every query in the block sees the same commit."""
        with closing(store.connect_readonly(self.path)) as connection:
            with _read_transaction(connection):
                yield connection

    def load_snapshot(self):
        """The whole catalogue as one snapshot; the watcher starts before it so no commit after it goes unseen."""
        from app.catalogue import Catalogue
        if self._watch is None:
            self._watch = store.connect_readonly(self.path)
            self._seen = self._data_version()
        return Catalogue(self)

    def changes_after(self, change_id: int, limit: int) -> list[tuple[str, str, str | None]]:
        """(entity, entity_id, site_id) of up to `limit` changes after the change id, oldest first."""
        with self.reading() as connection:
            return _changes_after(connection, change_id, limit)

    # --- the refresher's view ----------------------------------------------------------------------

    def advance(self, current):
        """If any commit happened since the last look, the snapshot advanced within the same read transaction that
        saw SQLite's commit counter move; else `current`."""
        with _read_transaction(self._watch):
            seen = self._data_version()
            if seen == self._seen:
                return current
            advanced = current.advanced(self._watch)
        self._seen = seen
        return advanced

    def _data_version(self) -> int:
        """SQLite's counter that moves whenever another connection (in any process) commits."""
        return self._watch.execute("PRAGMA data_version").fetchone()[0]

    def subscribe(self, wake: Callable[[], None]) -> None:
        """Nothing to subscribe to: SQLite has no notifications, the refresher polls."""

    # --- writes ------------------------------------------------------------------------------------

    def write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work` in one BEGIN IMMEDIATE transaction on the writer connection; SQLite's failures made client errors.
        Call it from one thread only (the live catalogue's writer)."""
        try:
            connection = self._writer_connection()
            with store.transaction(connection):
                return work(connection)
        except sqlite3.Error as exc:
            raise storage_error(self.path, exc) from exc

    def _writer_connection(self) -> sqlite3.Connection:
        """The writer's connection, opened (with the edit schema) on first use."""
        if self._connection is None:
            connection = store.connect(self.path, busy_timeout_ms=int(self.write_wait_s * 1000))
            try:
                store.ensure_edit_schema(connection)
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    def export_gpkg(self, destination: Path) -> Path:
        """A consistent copy of the live file, through SQLite's backup API."""
        return store.copy_consistent(self.path, Path(destination))

    def health(self) -> str | None:
        """The problem when the live file was deleted or replaced while the service ran, else None."""
        if _identity(self.path) != self._identity:
            return (f"the live catalogue {self.path} was deleted or replaced while the service ran; writes"
                    " are refused until the service is restarted on a restored file")
        return None

    def close(self) -> None:
        """Close the writer's and the watcher's connections."""
        for connection in (self._connection, self._watch):
            if connection is not None:
                connection.close()
        self._connection = self._watch = None


@contextmanager
def _read_transaction(connection: sqlite3.Connection) -> Iterator[None]:
    """One read transaction on an open connection (started by its first read, ended by COMMIT)."""
    connection.execute("BEGIN")
    try:
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the read transaction starts here
        yield
    finally:
        connection.execute("COMMIT")


def _changes_after(connection: Any, change_id: int, limit: int) -> list[tuple[str, str, str | None]]:
    """The change log's (entity, entity_id, site_id) after a change id, at most `limit`, oldest first."""
    if not store.has_table(connection, "changes"):
        return []
    return connection.execute("SELECT entity, entity_id, site_id FROM changes WHERE id > ? ORDER BY id LIMIT ?",
                              (change_id, limit)).fetchall()


def _identity(path: Path) -> tuple[int, int] | None:
    """The file's device and inode (None when missing): a change means it was deleted or replaced."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    return status.st_dev, status.st_ino
