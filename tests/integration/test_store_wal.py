"""SQLite's WAL stays bounded while readers run: with readers always present SQLite
never starts its log over by itself, so the log grows with everything written (as the
database); the store's ``WalCheckpointer`` truncates it once it passes its limit."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from cotenant.store.repo import Store

LIMIT = 512 << 10
# the limit, plus what is written while a checkpoint waits for readers (1.72 MB was seen
# on a loaded 2-core machine); without the checkpointer the log holds all 6 MB
BOUND = LIMIT + (3 << 19)
WRITTEN = 6 << 20  # write this much: twelve times the limit
PAD = "x" * 400


def test_the_wal_stays_bounded_while_readers_run(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    store = Store(f"sqlite:///{path}", wal_limit_bytes=LIMIT, wal_interval_s=0.05)
    store.writer.start()
    wal = Path(f"{path}-wal")
    deadline = time.monotonic() + 60
    done = threading.Event()
    reads = [0]

    def write() -> None:
        i = 0
        while os.path.getsize(path) + os.path.getsize(wal) < WRITTEN:
            assert time.monotonic() < deadline, "wrote too slowly"
            store.writer.call(
                lambda tx, i=i: [tx.audit(i, "place", {"n": k, "pad": PAD}) for k in range(50)]
            )
            i += 1
        done.set()

    def read() -> None:  # API-like reads, back to back, overlapping each other
        while not done.is_set():
            head = store.audit_head().seq
            for _page in store.audit_pages(max(0, head - 1000)):
                pass
            store.jobs(limit=100)
            reads[0] += 1

    threads = [threading.Thread(target=write)] + [threading.Thread(target=read) for _ in range(3)]
    peak = 0
    try:
        for t in threads:
            t.start()
        while not done.is_set() and time.monotonic() < deadline:
            peak = max(peak, wal.stat().st_size if wal.exists() else 0)
            time.sleep(0.01)
    finally:
        done.set()
        for t in threads:
            t.join(30)
    assert store.wal is not None
    checkpoints = store.wal.checkpoints
    store.close()
    assert reads[0] > 10
    assert checkpoints >= 1
    assert os.path.getsize(path) > 2 * BOUND  # the data went into the database
    assert peak < BOUND, f"WAL peaked at {peak / 1e6:.2f} MB"


def test_a_checkpoint_empties_the_log(tmp_path: Path) -> None:
    path = tmp_path / "one.db"
    store = Store(f"sqlite:///{path}", wal_limit_bytes=1 << 40)
    store.writer.call(lambda tx: [tx.audit(0, "x", {"pad": PAD}) for _ in range(200)])
    assert store.wal is not None and store.wal.wal_bytes() > 0
    assert store.wal.checkpoint()
    assert store.wal.wal_bytes() == 0
    assert store.verify_audit(full=True).ok
    store.close()
    ro = Store(f"sqlite:///{path}", read_only=True)
    assert ro.wal is None  # a read-only store leaves the log to its writer
    ro.close()
