"""Keeping SQLite's write-ahead log bounded while readers run.

SQLite checkpoints the WAL into the database by itself (``PASSIVE``, after each commit
that takes the WAL past 1,000 pages), but it can only start the WAL over from the
beginning when no reader is using it, and never makes the file smaller. Under steady
read load (API pages, exports, the console) some reader always is, so the WAL grows
with everything written (53 MB in a day's live run) until a restart.

``WalCheckpointer`` watches the file's size from its own thread and, once it passes
``limit_bytes``, runs ``PRAGMA wal_checkpoint(TRUNCATE)``: that blocks new writes,
copies the log into the database, waits (at most ``busy_ms``) for the readers still
reading from the log to finish (reads are one statement long; readers that start
meanwhile read the database file), then truncates the log to zero bytes. If a reader
outlasts ``busy_ms`` the checkpoint gives up without harm and is tried again after
``interval_s``. Writes wait at most about ``busy_ms`` plus the copy.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import sqlalchemy as sa

from cotenant.store.db import SQLITE_BUSY_TIMEOUT_MS

log = logging.getLogger(__name__)

WAL_LIMIT_BYTES = 8 << 20
WAL_INTERVAL_S = 1.0
WAL_BUSY_MS = 200


def sqlite_file(engine: sa.Engine) -> Path | None:
    """The database file of an SQLite engine (None for PostgreSQL or in-memory)."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


class WalCheckpointer:
    def __init__(
        self,
        engine: sa.Engine,
        path: Path,
        limit_bytes: int = WAL_LIMIT_BYTES,
        interval_s: float = WAL_INTERVAL_S,
        busy_ms: int = WAL_BUSY_MS,
    ) -> None:
        self.engine = engine
        self.wal = Path(f"{path}-wal")
        self.limit_bytes = limit_bytes
        self.interval_s = interval_s
        self.busy_ms = busy_ms
        self.checkpoints = 0  # TRUNCATE checkpoints that completed
        self.busy = 0  # ... that gave up because a reader or writer outlasted busy_ms
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def wal_bytes(self) -> int:
        try:
            return os.path.getsize(self.wal)
        except FileNotFoundError:
            return 0

    def checkpoint(self) -> bool:
        """One ``wal_checkpoint(TRUNCATE)``; True if the log was emptied."""
        with self.engine.connect() as conn:
            conn.exec_driver_sql(f"PRAGMA busy_timeout={self.busy_ms}")
            try:
                busy, _log, _done = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
            finally:
                conn.exec_driver_sql(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        if busy:
            self.busy += 1
            return False
        self.checkpoints += 1
        return True

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="cotenant-wal", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            if self.wal_bytes() <= self.limit_bytes:
                continue
            try:
                self.checkpoint()
            except sa.exc.SQLAlchemyError:  # the database is busy or gone: try again later
                log.warning("WAL checkpoint failed", exc_info=True)
