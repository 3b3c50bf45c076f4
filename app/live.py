"""The service's catalogue: one snapshot at a time, advanced in the background; one writer thread per process.

Readers take the current snapshot and never wait: a refresher thread notices any process's commit
(SQLite's `PRAGMA data_version`), builds the next snapshot beside the current one from the rows the
change log names, and swaps it in. Writes run one at a time on the writer thread (Datasette's
`execute_write_fn` is the model), each in one `BEGIN IMMEDIATE` transaction with bounded waits: a write
that cannot start in time answers 503 with Retry-After, and a write's answer comes only once this
process's snapshot includes it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, TypeVar

from app import store
from app.catalogue import Catalogue
from app.errors import ServiceBusy, StorageUnavailable
from app.settings import Settings
from app.storage import Store
from app.store_gpkg import GeoPackageStore, storage_error  # noqa: F401  (storage_error: its old home)

log = logging.getLogger("missile_sites.live")
T = TypeVar("T")
# Held by the refresher while it uses SQLite, and by os.fork: a child forked while another thread is inside SQLite
# inherits SQLite's mutexes locked and hangs at its first query (multiprocessing's fork start method does this).
_FORK_GUARD = threading.Lock()
os.register_at_fork(before=_FORK_GUARD.acquire, after_in_parent=_FORK_GUARD.release,
                    after_in_child=_FORK_GUARD.release)
VISIBLE_WAIT_S = 10.0  # longest a write's answer waits for this process's snapshot to include it


def live_path(settings: Settings) -> Path:
    """The settings' live GeoPackage, checked, and seeded from the bundled one only where none ever was."""
    return store.ensure_live(settings.gpkg, settings.seed_gpkg)


class LiveCatalogue:
    """Hands out the current snapshot; runs writes on one thread; keeps the snapshot up to date in the background."""

    def __init__(self, source: Store | Path, *, write_wait_s: float = 20.0):
        self.store = source if hasattr(source, "reading") else GeoPackageStore(Path(source), write_wait_s=write_wait_s)
        self.path = getattr(self.store, "path", None)
        self.write_wait_s = write_wait_s
        self._current = self.store.load_snapshot()
        self.problem: str | None = None  # set when the store cannot be written (a live file deleted or replaced)
        self._advanced = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="catalogue-writer")
        self._refresher = threading.Thread(target=self._refresh_loop, name="catalogue-refresher", daemon=True)
        self._refresher.start()
        self.store.subscribe(self._wake.set)

    def current(self) -> Catalogue:
        """The newest snapshot this process has (never waits for a refresh)."""
        return self._current

    # --- writes ---------------------------------------------------------------------------------

    def write(self, work: Callable[[Any], T], *, change_id: Callable[[T], int | None] = lambda _: None) -> T:
        """Run `work(connection)` in one transaction on the writer thread; once it commits, wait (bounded) until
        this process's snapshot includes change `change_id(result)`. ServiceBusy if it cannot start in time."""
        self._check_store()
        future: Future = self._writer.submit(self.store.write, work)
        try:
            result = future.result(timeout=self.write_wait_s)
        except FutureTimeout:
            if future.cancel():
                raise ServiceBusy(f"the catalogue's writer is busy; the write waited {self.write_wait_s:g} s and was"
                                  " not made") from None
            result = future.result()  # started: it ends within the store's own bounded wait
        self.wait_for(change_id(result))
        return result

    def wait_for(self, change_id: int | None, timeout: float = VISIBLE_WAIT_S) -> bool:
        """Wake the refresher and wait until the snapshot includes the change (True), or the timeout passes."""
        if change_id is None:
            return True
        self._wake.set()
        with self._advanced:
            return self._advanced.wait_for(lambda: self._current.last_change >= change_id, timeout)

    def _check_store(self) -> None:
        """StorageUnavailable when the store cannot be written (logged once)."""
        if self.problem is None:
            self.problem = self.store.health()
            if self.problem is not None:
                log.error(self.problem)
        if self.problem is not None:
            raise StorageUnavailable(self.problem)

    # --- the refresher ----------------------------------------------------------------------------

    def _refresh_loop(self) -> None:
        """Advance the snapshot whenever the store's data changes; a failed refresh is logged and tried again."""
        while not self._stop.is_set():
            self._wake.wait(self.store.poll_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self._check_store()
                with _FORK_GUARD:
                    self._swap(self.store.advance(self._current))
            except StorageUnavailable:
                continue
            except Exception:  # keep serving the last good snapshot; the next poll tries again
                log.exception("refreshing the catalogue from %s failed", self.store.label)

    def _swap(self, snapshot: Catalogue) -> None:
        """Make a new snapshot current and wake the writes waiting for it."""
        if snapshot is self._current:
            return
        with self._advanced:
            self._current = snapshot
            self._advanced.notify_all()

    def close(self) -> None:
        """Stop the refresher and the writer; close the store."""
        self._stop.set()
        self._wake.set()
        self._refresher.join(5)
        self._writer.shutdown(wait=True)
        self.store.close()
