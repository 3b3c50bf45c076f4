"""The service's catalogue: one snapshot at a time, replaced when any process commits a change to the file."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path

from app import store
from app.catalogue import Catalogue
from app.settings import Settings


def live_path(settings: Settings) -> Path:
    """The settings' live GeoPackage, seeded from the bundled one on first use."""
    return store.ensure_live(settings.gpkg, settings.seed_gpkg)


class LiveCatalogue:
    """Hands out the current snapshot; readers keep the one they got while writers commit new ones."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._watch = store.connect_readonly(self.path)
        self._seen = self._data_version()
        self._current = Catalogue(self.path)
        self._lock = threading.Lock()
        self._writer: sqlite3.Connection | None = None
        self._write_lock = threading.Lock()

    def _data_version(self) -> int:
        """SQLite's counter that moves whenever another connection (in any process) commits."""
        return self._watch.execute("PRAGMA data_version").fetchone()[0]

    def current(self) -> Catalogue:
        """The newest snapshot, re-read first if the file changed since the last one."""
        with self._lock:
            seen = self._data_version()
            if seen != self._seen:
                self._current, self._seen = self._current.refreshed(), seen
            return self._current

    @contextmanager
    def writing(self):
        """A `BEGIN IMMEDIATE` transaction on the service's writer connection (one writer thread at a time)."""
        with self._write_lock:
            if self._writer is None:
                self._writer = store.connect(self.path)
                store.ensure_edit_schema(self._writer)
            with store.transaction(self._writer) as connection:
                yield connection

    def close(self) -> None:
        """Close the watcher and the writer."""
        self._watch.close()
        if self._writer is not None:
            self._writer.close()
