"""The audit chain: any edited, inserted, deleted or reordered entry is found, and named."""

from __future__ import annotations

import dataclasses
import io
import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from cotenant.audit.chain import (
    GENESIS,
    AuditEntry,
    Chain,
    Head,
    StoredEntry,
    canonical_json,
    entry_hash,
    read_jsonl,
    to_jsonl,
    verify,
    verify_file,
    verify_stored,
)
from cotenant.model.errors import SpecError

T0 = 1_790_812_800


def chain_of(n: int) -> list[AuditEntry]:
    c = Chain()
    kinds = ["place", "reclaim", "preempt", "reject", "key-issued"]
    return [
        c.next(T0 + i, kinds[i % len(kinds)], {"job": f"j{i}", "tenant": "lab-a", "gpus": i + 1})
        for i in range(n)
    ]


def head_of(entries: list[AuditEntry]) -> Head:
    return Head(entries[-1].seq, entries[-1].hash)


def edit(i: int, **changes: object) -> Callable[[list[AuditEntry]], list[AuditEntry]]:
    def f(es: list[AuditEntry]) -> list[AuditEntry]:
        out = list(es)
        out[i] = dataclasses.replace(out[i], **changes)  # type: ignore[arg-type]
        return out

    return f


def edit_rehashed(i: int) -> Callable[[list[AuditEntry]], list[AuditEntry]]:
    """Edit entry i and recompute its own hash: only the link from i+1 gives it away."""

    def f(es: list[AuditEntry]) -> list[AuditEntry]:
        out = list(es)
        e = out[i]
        payload = {**e.payload, "gpus": 999}
        out[i] = dataclasses.replace(
            e, payload=payload, hash=entry_hash(e.prev_hash, e.seq, e.time, e.kind, payload)
        )
        return out

    return f


def delete(i: int) -> Callable[[list[AuditEntry]], list[AuditEntry]]:
    return lambda es: es[:i] + es[i + 1 :]


def insert_forged(i: int) -> Callable[[list[AuditEntry]], list[AuditEntry]]:
    """A well-formed entry inserted before position i, renumbering what follows; every hash
    from there on recomputed, as a careful forger would."""

    def f(es: list[AuditEntry]) -> list[AuditEntry]:
        c = Chain(Head(es[i - 1].seq, es[i - 1].hash) if i else Head(0, GENESIS))
        forged = [c.next(T0, "place", {"job": "forged", "tenant": "lab-b", "gpus": 8})]
        forged += [c.next(e.time, e.kind, e.payload) for e in es[i:]]
        return es[:i] + forged

    return f


def insert_linked(i: int) -> Callable[[list[AuditEntry]], list[AuditEntry]]:
    """A well-formed entry linked to entry i-1, the rest left as they were."""

    def f(es: list[AuditEntry]) -> list[AuditEntry]:
        c = Chain(Head(es[i - 1].seq, es[i - 1].hash))
        return [*es[:i], c.next(T0, "place", {"job": "forged"}), *es[i:]]

    return f


def insert_copy(i: int) -> Callable[[list[AuditEntry]], list[AuditEntry]]:
    return lambda es: [*es[:i], es[i], *es[i:]]


def swap(i: int) -> Callable[[list[AuditEntry]], list[AuditEntry]]:
    def f(es: list[AuditEntry]) -> list[AuditEntry]:
        out = list(es)
        out[i], out[i + 1] = out[i + 1], out[i]
        return out

    return f


def test_a_fresh_chain_verifies_with_and_without_its_head() -> None:
    es = chain_of(10)
    assert verify(es).ok
    v = verify(es, head_of(es))
    assert v.ok and v.entries == 10 and v.head == head_of(es)
    assert es[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(es))


def test_the_empty_chain_verifies_against_the_genesis_head() -> None:
    assert verify([], Head(0, GENESIS)).ok
    assert not verify([], Head(3, "a" * 64)).ok


@pytest.mark.parametrize(
    ("tamper", "first_bad"),
    [
        pytest.param(
            edit(4, payload={"job": "j4", "tenant": "lab-b", "gpus": 5}), 5, id="edit-payload"
        ),
        pytest.param(edit(0, kind="cancel"), 1, id="edit-kind-of-first"),
        pytest.param(edit(9, time=T0), 10, id="edit-time-of-last"),
        pytest.param(edit(3, hash="f" * 64), 4, id="edit-hash"),
        pytest.param(edit(6, prev_hash="e" * 64), 7, id="edit-prev-hash"),
        pytest.param(edit(2, seq=33), 3, id="edit-seq"),
        pytest.param(edit_rehashed(5), 7, id="edit-and-rehash-caught-by-next-link"),
        pytest.param(delete(4), 5, id="delete-middle"),
        pytest.param(delete(0), 1, id="delete-first"),
        pytest.param(insert_copy(3), 5, id="insert-duplicate"),
        pytest.param(insert_linked(3), 5, id="insert-well-formed-caught-at-next"),
        pytest.param(swap(2), 3, id="reorder"),
    ],
)
def test_tampering_is_found_and_the_first_bad_entry_named(
    tamper: Callable[[list[AuditEntry]], list[AuditEntry]], first_bad: int
) -> None:
    es = chain_of(10)
    v = verify(tamper(es))
    assert not v.ok
    assert v.first_bad_seq == first_bad, v.problem
    assert verify_stored(stored(tamper(es))) == v  # the same verdict from the stored text


def stored(entries: list[AuditEntry]) -> list[StoredEntry]:
    """Entries as the store holds them: the payload as canonical JSON text."""
    return [
        StoredEntry(e.seq, e.time, e.kind, canonical_json(dict(e.payload)), e.prev_hash, e.hash)
        for e in entries
    ]


def test_a_stored_entry_exports_the_same_line() -> None:
    c = Chain()
    es = [
        c.next(T0, "place", {"name": 'Zürich \u2603 "q" \\ \n', "x": [1.5, None, True]}),
        c.next(T0, 'odd "kind"\t', {}),
    ]
    assert [e.to_jsonl() for e in stored(es)] == [to_jsonl(e) for e in es]
    assert verify_stored(stored(es), head_of(es)).ok


@pytest.mark.parametrize(
    ("payload", "ok", "problem"),
    [
        pytest.param('{"tenant": "lab-a", "job": "j2", "gpus": 3}', True, "", id="respaced"),
        pytest.param('{"job":"j2","tenant":"lab-a","gpus":4}', False, "edited", id="edited"),
        pytest.param('{"job":"j2"', False, "not JSON", id="not-json"),
        pytest.param("[1, 2]", False, "not a JSON object", id="not-an-object"),
    ],
)
def test_the_stored_text_is_hashed_as_what_it_means(payload: str, ok: bool, problem: str) -> None:
    rows = stored(chain_of(5))
    rows[2] = rows[2]._replace(payload=payload)
    v = verify_stored(rows)
    assert v.ok is ok and (ok or (v.first_bad_seq == 3 and problem in v.problem)), v


def test_verify_from_a_checkpoint_reads_only_what_follows() -> None:
    es = chain_of(10)
    at = Head(es[5].seq, es[5].hash)
    v = verify(es[6:], head_of(es), start=at)
    assert v.ok and (v.entries, v.after_seq, v.head) == (4, 6, head_of(es))
    assert "after seq 6" in str(v)
    assert verify_stored(stored(es[6:]), head_of(es), start=at) == v
    bad = verify(es[6:], head_of(es), start=Head(6, "e" * 64))  # not what entry 7 links to
    assert not bad.ok and bad.first_bad_seq == 7
    gap = verify(es[7:], head_of(es), start=at)
    assert not gap.ok and gap.first_bad_seq == 7 and "missing" in gap.problem


@pytest.mark.parametrize(
    ("tamper", "first_bad"),
    [
        pytest.param(delete(9), 10, id="cut-off-the-end"),
        pytest.param(lambda es: es[:6], 7, id="cut-off-four"),
        pytest.param(insert_forged(10), 11, id="appended-past-the-head"),
        pytest.param(insert_forged(3), 11, id="inserted-and-everything-after-rehashed"),
    ],
)
def test_the_recorded_head_catches_what_the_chain_alone_cannot(
    tamper: Callable[[list[AuditEntry]], list[AuditEntry]], first_bad: int
) -> None:
    es = chain_of(10)
    assert verify(tamper(es)).ok  # consistent in itself
    v = verify(tamper(es), head_of(es))
    assert not v.ok and v.first_bad_seq == first_bad, v.problem


def test_a_fully_rehashed_chain_differs_from_the_recorded_head() -> None:
    es = chain_of(5)
    c = Chain()
    forged = [c.next(e.time, e.kind, {**e.payload, "gpus": 0}) for e in es]
    assert verify(forged).ok
    assert not verify(forged, head_of(es)).ok


def test_problem_messages_say_what_is_wrong() -> None:
    es = chain_of(6)
    assert "missing" in verify(delete(2)(es)).problem
    assert "edited" in verify(edit(1, payload={"x": 1})(es)).problem
    assert "prev_hash" in verify(edit(1, prev_hash="0" * 64)(es)).problem
    assert "bad entry seq 3" in str(verify(delete(2)(es)))


def test_the_hash_is_sha256_of_prev_hash_and_canonical_json() -> None:
    import hashlib

    e = Chain().next(T0, "place", {"b": 1, "a": [1, 2]})
    body = canonical_json({"seq": 1, "time": T0, "kind": "place", "payload": {"a": [1, 2], "b": 1}})
    assert body == '{"kind":"place","payload":{"a":[1,2],"b":1},"seq":1,"time":1790812800}'
    assert e.hash == hashlib.sha256((GENESIS + body).encode()).hexdigest()


def test_jsonl_round_trip_and_file_verification(tmp_path: Path) -> None:
    es = chain_of(8)
    path = tmp_path / "audit.jsonl"
    path.write_text("".join(to_jsonl(e) for e in es))
    assert list(read_jsonl(io.StringIO(path.read_text()))) == es
    assert verify_file(path, head_of(es)).ok
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:3] + lines[4:]))
    v = verify_file(path)
    assert not v.ok and v.first_bad_seq == 4


@pytest.mark.parametrize(
    ("line", "field"),
    [
        pytest.param("not json", "audit:1", id="not-json"),
        pytest.param("[1, 2]", "audit:1", id="not-an-object"),
        pytest.param('{"seq": "1"}', "audit:1.seq", id="seq-not-int"),
        pytest.param(
            '{"seq": 1, "time": 0, "kind": "x", "prev_hash": "", "hash": "", "payload": 3}',
            "audit:1.payload",
            id="payload-not-object",
        ),
    ],
)
def test_malformed_export_lines_name_line_and_field(line: str, field: str) -> None:
    with pytest.raises(SpecError) as e:
        list(read_jsonl(io.StringIO(line + "\n")))
    assert e.value.field == field


@pytest.mark.parametrize("text", ["12", "x:" + "a" * 64, "3:abc"])
def test_a_malformed_head_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        Head.parse(text)


def test_head_round_trips_through_text() -> None:
    h = Head(42, "ab" * 32)
    assert Head.parse(str(h)) == h
