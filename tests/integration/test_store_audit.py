"""The audit log read from the store, on SQLite and on a real PostgreSQL: the streamed
export is byte for byte the JSON lines of the parsed entries, verifying the stored text
gives the same verdicts as verifying parsed entries, and verify is incremental from a
checkpoint (a tampered entry after it is found by the incremental verify, one before it
only by a full verify).
"""

from __future__ import annotations

import io
import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from cotenant.audit.chain import read_jsonl, to_jsonl, verify
from cotenant.store import repo
from cotenant.store.repo import AUDIT_VERIFIED, Store
from harness.postgres import LocalPostgres

_names = itertools.count()
T0 = 1_790_812_800
PAYLOADS = [
    {"gpus": 8, "job": "job-1"},
    {"name": 'Zürich \u2603 "quoted" \\ back', "nested": {"b": [1, 2.5, None], "a": True}},
    {},
    {"big": 1 << 60, "neg": -3, "float": 1e-7, "text": "line\nbreak\ttab"},
]


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        pg: LocalPostgres = request.getfixturevalue("postgres_server")
        url = pg.create_database(f"audit_{next(_names)}_{int(time.time() * 1000) % 10**8}")
    s = Store(url)
    yield s
    s.close()


def _append(store: Store, n: int, first: int = 0) -> None:
    def op(tx: repo.Tx) -> None:
        for i in range(first, first + n):
            tx.audit(T0 + i, "place", {**PAYLOADS[i % len(PAYLOADS)], "i": i})

    store.writer.call(op)


def _tamper(store: Store, sql: str) -> None:
    with store.engine.begin() as conn:
        if store.engine.dialect.name == "postgresql":
            conn.execute(sa.text("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log"))
        else:
            conn.execute(sa.text("DROP TRIGGER IF EXISTS audit_log_no_update"))
            conn.execute(sa.text("DROP TRIGGER IF EXISTS audit_log_no_delete"))
        conn.exec_driver_sql(sql)


def test_the_streamed_export_is_the_json_lines_of_the_entries(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(repo, "AUDIT_PAGE", 7)  # several pages, one partly full
    _append(store, 45)
    chunks = list(store.audit_jsonl())
    assert len(chunks) == 7
    text = "".join(chunks)
    assert text == "".join(to_jsonl(e) for e in store.audit_entries())
    head = store.audit_head()
    assert verify(read_jsonl(io.StringIO(text)), head).ok
    assert "".join(store.audit_jsonl(after_seq=10, limit=12)).count("\n") == 12
    assert "".join(store.audit_jsonl(upto_seq=20)).count("\n") == 20


TAMPERS = [
    pytest.param("UPDATE audit_log SET payload = '{\"gpus\":64}' WHERE seq = 4", 4, id="edit"),
    pytest.param("UPDATE audit_log SET payload = 'not json' WHERE seq = 5", 5, id="garbage"),
    pytest.param("UPDATE audit_log SET kind = 'end' WHERE seq = 7", 7, id="edit-kind"),
    pytest.param("DELETE FROM audit_log WHERE seq = 3", 3, id="delete"),
    pytest.param("DELETE FROM audit_log WHERE seq = 12", 12, id="delete-last"),
    pytest.param("UPDATE audit_log SET seq = seq + 100 WHERE seq = 2", 2, id="move"),
    pytest.param("UPDATE audit_log SET prev_hash = hash WHERE seq = 9", 9, id="relink"),
]


@pytest.mark.parametrize(("tamper", "first_bad"), TAMPERS)
def test_a_full_verify_names_the_first_bad_entry(store: Store, tamper: str, first_bad: int) -> None:
    _append(store, 12)
    assert store.verify_audit(full=True).ok
    _tamper(store, tamper)
    v = store.verify_audit(full=True)
    assert not v.ok and v.first_bad_seq == first_bad, v
    if "not json" not in tamper:  # the parsing verify agrees (it cannot read garbage)
        old = verify(store.audit_entries(), store.audit_head())
        assert (old.ok, old.first_bad_seq) == (v.ok, v.first_bad_seq)


def test_a_respaced_payload_means_the_same_and_still_verifies(store: Store) -> None:
    _append(store, 5)
    respaced = '{"i": 0, "gpus": 8, "job": "job-1"}'  # seq 1's payload, keys reordered
    _tamper(store, f"UPDATE audit_log SET payload = '{respaced}' WHERE seq = 1")
    assert verify(store.audit_entries(), store.audit_head()).ok
    assert store.verify_audit(full=True).ok


def test_verify_is_incremental_from_the_last_verified_entry(store: Store) -> None:
    _append(store, 20)
    first = store.verify_audit()
    assert first.ok and (first.entries, first.after_seq) == (20, 0)
    assert store.audit_checkpoint() == store.audit_head() == first.head
    _append(store, 5, first=20)
    again = store.verify_audit()
    assert again.ok and (again.entries, again.after_seq) == (5, 20)
    assert store.verify_audit().entries == 0  # nothing new
    full = store.verify_audit(full=True)
    assert full.ok and (full.entries, full.after_seq) == (25, 0)

    # an entry before the checkpoint: not read again by the incremental verify, so only
    # a full verify finds it
    _tamper(store, "UPDATE audit_log SET payload = '{\"gpus\":1}' WHERE seq = 10")
    assert store.verify_audit().ok
    v = store.verify_audit(full=True)
    assert not v.ok and v.first_bad_seq == 10

    # one after the checkpoint: the incremental verify finds it, and it does not advance
    _append(store, 5, first=25)
    _tamper(store, "UPDATE audit_log SET payload = '{\"gpus\":2}' WHERE seq = 28")
    v = store.verify_audit()
    assert not v.ok and (v.first_bad_seq, v.after_seq) == (28, 25), v
    assert store.audit_checkpoint() is not None and store.audit_checkpoint().seq == 25  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(
            "UPDATE audit_log SET hash = prev_hash WHERE seq = 15", id="checkpoint-edited"
        ),
        pytest.param("DELETE FROM audit_log WHERE seq >= 13", id="cut-below-checkpoint"),
    ],
)
def test_a_checkpoint_that_no_longer_matches_falls_back_to_a_full_verify(
    store: Store, tamper: str
) -> None:
    _append(store, 15)
    assert store.verify_audit().ok
    _tamper(store, tamper)
    v = store.verify_audit()
    assert not v.ok and v.after_seq == 0 and v.first_bad_seq in (13, 15), v


def test_a_forged_checkpoint_is_ignored_and_a_read_only_store_keeps_none(store: Store) -> None:
    _append(store, 6)
    store.writer.call(lambda tx: repo.put_meta(tx, AUDIT_VERIFIED, "6:" + "e" * 64))
    v = store.verify_audit()
    assert v.ok and v.after_seq == 0 and v.entries == 6
    ro = Store(store.url, read_only=True)
    try:
        store.writer.call(lambda tx: repo.put_meta(tx, AUDIT_VERIFIED, "bad"))
        assert ro.verify_audit().after_seq == 0
        assert ro.audit_checkpoint() is None
    finally:
        ro.close()
