"""The storage boundary: one small protocol both engines implement, and the engine the settings choose.

A store loads a snapshot, says which rows changed after a change id, runs a write in one transaction with its
change record, exports a GeoPackage and reports its health. Its readers and writers speak one dialect: SQLite's
SQL with `?` parameters and GeoPackage geometry blobs in and out (the PostGIS store translates both), so the
catalogue, the edits and the history are written once for both engines.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from app.catalogue import Catalogue
    from app.settings import Settings

T = TypeVar("T")
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class Connection(Protocol):
    """A store's connection, in SQLite's dialect (`?` parameters, GeoPackage geometry blobs): an `sqlite3.Connection`
    on the GeoPackage, a translating wrapper (`store_pg.PgConnection`) on PostGIS."""

    def execute(self, sql: str, values=...) -> Any:
        """Run one statement; the cursor answers fetchone/fetchall."""


def bulk_copier(connection) -> Callable | None:
    """The connection's bulk row loader (`copy_rows(table, columns, rows)`, PostGIS's COPY), or None (SQLite)."""
    return getattr(connection, "copy_rows", None)


class Store(Protocol):
    """What the service needs of an engine; `GeoPackageStore` and `PostGISStore` implement it."""

    label: str  # how messages name the catalogue (a file path, or a database without its password)
    poll_s: float  # how often the refresher looks for other processes' commits without being woken

    def reading(self) -> AbstractContextManager[Any]:
        """A reader holding one read transaction: every query in the block sees the same commit."""

    def load_snapshot(self) -> "Catalogue":
        """The whole catalogue as one in-memory snapshot."""

    def changes_after(self, change_id: int, limit: int) -> list[tuple[str, str, str | None]]:
        """(entity, entity_id, site_id) of up to `limit` changes after the given change id, oldest first."""

    def advance(self, current: "Catalogue") -> "Catalogue":
        """The snapshot brought up to the newest commit (incrementally from the change log), or `current`."""

    def write(self, work: Callable[[Any], T]) -> T:
        """`work(connection)` in one transaction; storage failures become ServiceBusy or StorageUnavailable."""

    def export_gpkg(self, destination: Path) -> Path:
        """A consistent GeoPackage of the whole catalogue at `destination`."""

    def health(self) -> str | None:
        """None when the store can be written, else the problem, said for an operator."""

    def subscribe(self, wake: Callable[[], None]) -> None:
        """Call `wake` soon after any process commits (a no-op where polling is the only way)."""

    def close(self) -> None:
        """Release connections and threads."""


def is_postgres(url: str | None) -> bool:
    """Whether a database URL names PostgreSQL."""
    return bool(url) and url.startswith(POSTGRES_SCHEMES)


def open_store(settings: "Settings") -> Store:
    """The engine the settings choose: PostGIS for a postgresql:// database URL, else the live GeoPackage."""
    if is_postgres(settings.database_url):
        from app.store_pg import PostGISStore
        return PostGISStore(settings.database_url, write_wait_s=settings.write_wait_s)
    from app import store
    from app.store_gpkg import GeoPackageStore
    return GeoPackageStore(store.ensure_live(settings.gpkg, settings.seed_gpkg), write_wait_s=settings.write_wait_s)


def as_store(source) -> Store:
    """A store as given, or the GeoPackage store on a path."""
    if hasattr(source, "reading"):
        return source
    from app.store_gpkg import GeoPackageStore
    return GeoPackageStore(Path(source))


def store_errors() -> tuple[type[Exception], ...]:
    """The exceptions either engine raises when a read fails (for code outside the boundary)."""
    import sqlite3

    import psycopg
    return sqlite3.Error, psycopg.Error

