"""The writer's order: requests (submissions) are committed before an engine write that
waits at the same time, in a batch of their own, so a submission is not held behind the
engine's large flush; the engine's write is passed over a bounded number of times; each
kind keeps its own order. Behaviour, not timing: the writer is held by a first operation
while the others queue, and the audit log tells the commit order."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from cotenant.audit.chain import verify
from cotenant.store import repo
from cotenant.store.repo import Store
from cotenant.store.writer import OVERTAKE_MAX, Tx


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'x.db'}")
    s.writer.start()
    yield s
    s.close()


def audit(kind: str, rows: int = 0) -> Callable[[Tx], str]:
    """An operation that audits ``kind`` (and writes ``rows`` more rows, like a flush)."""

    def op(tx: Tx) -> str:
        for i in range(rows):
            repo.put_meta(tx, f"{kind}-{i}", "x")
        tx.audit(1, kind, {"k": kind})
        return kind

    return op


def hold(store: Store) -> tuple[threading.Event, Future[Any]]:
    """Keep the writer busy in a first operation until the event is set."""
    started, release = threading.Event(), threading.Event()

    def op(tx: Tx) -> None:
        started.set()
        release.wait(10)
        tx.audit(1, "held", {})

    fut = store.writer.submit(op)
    assert started.wait(10)
    return release, fut


def kinds(store: Store) -> list[str]:
    return [e.kind for e in store.audit_entries()]


def test_a_submission_is_not_committed_behind_a_waiting_engine_flush(store: Store) -> None:
    release, held = hold(store)
    flush = store.writer.submit(audit("engine-flush", rows=500), durable=True)
    post = store.writer.submit(audit("job-submitted"))
    release.set()
    assert post.result(10) == "job-submitted"
    assert flush.result(10) == "engine-flush"
    assert held.result(10) is None
    assert kinds(store) == ["held", "job-submitted", "engine-flush"]
    assert verify(store.audit_entries(), store.audit_head()).ok


def test_each_kind_keeps_its_own_order(store: Store) -> None:
    release, _ = hold(store)
    futs = [
        store.writer.submit(audit("d1"), durable=True),
        store.writer.submit(audit("r1")),
        store.writer.submit(audit("d2"), durable=True),
        store.writer.submit(audit("r2")),
    ]
    release.set()
    for f in futs:
        f.result(10)
    assert kinds(store) == ["held", "r1", "r2", "d1", "d2"]


def test_a_stream_of_requests_passes_an_engine_write_a_bounded_number_of_times(
    store: Store,
) -> None:
    """Each request submits the next one while it commits: there is always a request
    waiting, and the engine's write still goes after at most OVERTAKE_MAX batches."""
    w = store.writer
    n = OVERTAKE_MAX * 3
    done: list[Future[Any]] = []

    def chained(i: int) -> Callable[[Tx], None]:
        def op(tx: Tx) -> None:
            tx.audit(1, f"r{i}", {})
            if i + 1 < n:
                done.append(w.submit(chained(i + 1)))

        return op

    release, _ = hold(store)
    flush = w.submit(audit("engine-flush"), durable=True)
    done.append(w.submit(chained(0)))
    release.set()
    flush.result(10)
    while len(done) < n:
        done[-1].result(10)
    done[-1].result(10)
    order = kinds(store)
    assert order.index("engine-flush") == 1 + OVERTAKE_MAX
    assert [k for k in order if k.startswith("r")] == [f"r{i}" for i in range(n)]
