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
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import TypeVar

from app import store
from app.catalogue import Catalogue
from app.errors import ServiceBusy, StorageUnavailable
from app.settings import Settings

log = logging.getLogger("missile_sites.live")
T = TypeVar("T")
POLL_S = 0.1  # how often the refresher looks for other processes' commits
# Held by the refresher while it uses SQLite, and by os.fork: a child forked while another thread is inside SQLite
# inherits SQLite's mutexes locked and hangs at its first query (multiprocessing's fork start method does this).
_FORK_GUARD = threading.Lock()
os.register_at_fork(before=_FORK_GUARD.acquire, after_in_parent=_FORK_GUARD.release,
                    after_in_child=_FORK_GUARD.release)
VISIBLE_WAIT_S = 10.0  # longest a write's answer waits for this process's snapshot to include it


def live_path(settings: Settings) -> Path:
    """The settings' live GeoPackage, checked, and seeded from the bundled one only where none ever was."""
    return store.ensure_live(settings.gpkg, settings.seed_gpkg)


def storage_error(path: Path, exc: sqlite3.Error) -> Exception:
    """The client-facing error for an SQLite failure on the live file: busy is a 503 to retry, the rest a 503 for
    an operator (read-only file, full disk, I/O error), each naming the problem."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        return ServiceBusy(f"the catalogue is busy with another writer (an import?): {text}; try again shortly")
    return StorageUnavailable(f"the live catalogue {path} cannot be written: {text}")


class LiveCatalogue:
    """Hands out the current snapshot; runs writes on one thread; keeps the snapshot up to date in the background."""

    def __init__(self, path: Path, *, write_wait_s: float = 20.0):
        self.path = Path(path)
        self.write_wait_s = write_wait_s
        self._identity = _identity(self.path)
        self._watch = store.connect_readonly(self.path)
        self._seen = self._data_version()
        self._current = Catalogue(self.path)
        self.problem: str | None = None  # set when the live file was deleted or replaced under the service
        self._advanced = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="catalogue-writer")
        self._connection: sqlite3.Connection | None = None
        self._refresher = threading.Thread(target=self._refresh_loop, name="catalogue-refresher", daemon=True)
        self._refresher.start()

    def current(self) -> Catalogue:
        """The newest snapshot this process has (never waits for a refresh)."""
        return self._current

    # --- writes ---------------------------------------------------------------------------------

    def write(self, work: Callable[[sqlite3.Connection], T], *, change_id: Callable[[T], int | None] = lambda _: None) -> T:
        """Run `work(connection)` in one transaction on the writer thread; once it commits, wait (bounded) until
        this process's snapshot includes change `change_id(result)`. ServiceBusy if it cannot start in time."""
        self._check_file()
        future: Future = self._writer.submit(self._transaction, work)
        try:
            result = future.result(timeout=self.write_wait_s)
        except FutureTimeout:
            if future.cancel():
                raise ServiceBusy(f"the catalogue's writer is busy; the write waited {self.write_wait_s:g} s and was"
                                  " not made") from None
            result = future.result()  # started: it ends within SQLite's busy timeout
        self.wait_for(change_id(result))
        return result

    def _transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """On the writer thread: `work` in one BEGIN IMMEDIATE transaction, SQLite's failures made client errors."""
        try:
            connection = self._writer_connection()
            with store.transaction(connection):
                return work(connection)
        except sqlite3.Error as exc:
            raise storage_error(self.path, exc) from exc

    def _writer_connection(self) -> sqlite3.Connection:
        """The writer thread's connection, opened (with the edit schema) on first use."""
        if self._connection is None:
            connection = store.connect(self.path, busy_timeout_ms=int(self.write_wait_s * 1000))
            try:
                store.ensure_edit_schema(connection)
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    def wait_for(self, change_id: int | None, timeout: float = VISIBLE_WAIT_S) -> bool:
        """Wake the refresher and wait until the snapshot includes the change (True), or the timeout passes."""
        if change_id is None:
            return True
        self._wake.set()
        with self._advanced:
            return self._advanced.wait_for(lambda: self._current.last_change >= change_id, timeout)

    def _check_file(self) -> None:
        """StorageUnavailable when the live file was deleted or replaced while the service ran."""
        if self.problem is None and _identity(self.path) != self._identity:
            self.problem = (f"the live catalogue {self.path} was deleted or replaced while the service ran; writes"
                            " are refused until the service is restarted on a restored file")
            log.error(self.problem)
        if self.problem is not None:
            raise StorageUnavailable(self.problem)

    # --- the refresher ----------------------------------------------------------------------------

    def _data_version(self) -> int:
        """SQLite's counter that moves whenever another connection (in any process) commits."""
        return self._watch.execute("PRAGMA data_version").fetchone()[0]

    def _refresh_loop(self) -> None:
        """Advance the snapshot whenever the file's data changes; a failed refresh is logged and tried again."""
        while not self._stop.is_set():
            self._wake.wait(POLL_S)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self._check_file()
                with _FORK_GUARD:
                    self._advance()
            except StorageUnavailable:
                continue
            except Exception:  # keep serving the last good snapshot; the next poll tries again
                log.exception("refreshing the catalogue from %s failed", self.path)

    def _advance(self) -> None:
        """If any commit happened since the last look, build the next snapshot from the same read transaction that
        saw the commit counter move, and swap it in."""
        self._watch.execute("BEGIN")
        try:
            self._watch.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the read transaction starts
            seen = self._data_version()
            if seen != self._seen:
                self._swap(self._current.advanced(self._watch), seen)
        finally:
            self._watch.execute("COMMIT")

    def _swap(self, snapshot: Catalogue, seen: int) -> None:
        """Make a new snapshot current and wake the writes waiting for it."""
        with self._advanced:
            self._current, self._seen = snapshot, seen
            self._advanced.notify_all()

    def close(self) -> None:
        """Stop the refresher and the writer; close their connections."""
        self._stop.set()
        self._wake.set()
        self._refresher.join(5)
        self._writer.shutdown(wait=True)
        if self._connection is not None:
            self._connection.close()
        self._watch.close()


def _identity(path: Path) -> tuple[int, int] | None:
    """The file's device and inode (None when missing): a change means it was deleted or replaced."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    return status.st_dev, status.st_ino
