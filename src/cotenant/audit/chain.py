"""The audit log: append-only and hash-chained.

Each entry carries ``seq`` (1, 2, 3, ... with no gaps), ``time`` (service-clock
seconds), ``kind``, a JSON ``payload``, the previous entry's hash and its own:

    hash = sha256(prev_hash + canonical_json({seq, time, kind, payload}))

The first entry's ``prev_hash`` is ``GENESIS`` (64 zeros). Editing an entry breaks
its own hash; deleting, inserting or reordering entries breaks the sequence or the
link to the previous hash. Recomputing every hash after an edit yields a chain that
is consistent in itself, so the service also records the *head* (last seq and hash)
beside the chain; ``verify`` checks it when it is given, which is also what catches
entries cut off the end. Publish the head (``GET /v1/audit/head``) somewhere the
database's administrators cannot reach to make that last check independent of them.

Pure: no I/O except the JSON-lines helpers at the bottom.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TextIO, TypeVar

from cotenant.model.errors import SpecError

GENESIS = "0" * 64


def canonical_json(value: Any) -> str:
    """One text per JSON value: sorted keys, no spaces, UTF-8 kept as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(prev_hash: str, seq: int, time: int, kind: str, payload: Mapping[str, Any]) -> str:
    body = canonical_json({"seq": seq, "time": time, "kind": kind, "payload": payload})
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    time: int
    kind: str
    payload: Mapping[str, Any]
    prev_hash: str
    hash: str

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time,
            "kind": self.kind,
            "payload": dict(self.payload),
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


class StoredEntry(NamedTuple):
    """An entry as the store holds it: the payload is its canonical JSON text, as written.

    Verifying and exporting these skips parsing and re-serialising every payload: the
    hash is computed over the stored text (and only if that does not match, over the
    parsed payload, so a payload whose JSON was merely re-spaced verifies as before)."""

    seq: int
    time: int
    kind: str
    payload: str
    prev_hash: str
    hash: str

    def body(self) -> str:
        """``canonical_json({seq, time, kind, payload})`` when the payload text is canonical."""
        return (
            f'{{"kind":{encode_basestring(self.kind)},"payload":{self.payload},'
            f'"seq":{self.seq},"time":{self.time}}}'
        )

    def to_jsonl(self) -> str:
        """The export line: ``to_jsonl`` of the parsed entry, built from the stored text."""
        return (
            f'{{"hash":{encode_basestring(self.hash)},"kind":{encode_basestring(self.kind)},'
            f'"payload":{self.payload},"prev_hash":{encode_basestring(self.prev_hash)},'
            f'"seq":{self.seq},"time":{self.time}}}\n'
        )


@dataclass(frozen=True, slots=True)
class Head:
    """The last entry of a chain: how many entries there are and the hash they end on."""

    seq: int
    hash: str

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash}"

    @staticmethod
    def parse(text: str) -> Head:
        seq, _, digest = text.partition(":")
        if not seq.isdigit() or len(digest) != 64:
            raise ValueError(f"expected a head as SEQ:SHA256HEX, got {text!r}")
        return Head(int(seq), digest)


GENESIS_HEAD = Head(0, GENESIS)


class Chain:
    """Builds entries in order from a head. Not thread-safe: one writer appends."""

    def __init__(self, head: Head = GENESIS_HEAD) -> None:
        self.head = head

    def next(self, time: int, kind: str, payload: Mapping[str, Any]) -> AuditEntry:
        seq = self.head.seq + 1
        digest = entry_hash(self.head.hash, seq, time, kind, payload)
        entry = AuditEntry(seq, time, kind, payload, self.head.hash, digest)
        self.head = Head(seq, digest)
        return entry


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    entries: int  # entries read
    head: Head  # the head the chain ends on (as far as it verified)
    first_bad_seq: int | None = None
    problem: str = ""
    after_seq: int = 0  # entries were verified from here on (0: the whole chain)

    def __str__(self) -> str:
        if self.ok:
            since = f" after seq {self.after_seq}" if self.after_seq else ""
            return f"ok: {self.entries} entries{since}, head {self.head}"
        return f"bad entry seq {self.first_bad_seq}: {self.problem}"


class _Linked(Protocol):
    @property
    def seq(self) -> int: ...
    @property
    def prev_hash(self) -> str: ...
    @property
    def hash(self) -> str: ...


E = TypeVar("E", bound=_Linked)
EDITED = "its content does not match its hash (edited)"


def _entry_problem(e: AuditEntry) -> str | None:
    return None if entry_hash(e.prev_hash, e.seq, e.time, e.kind, e.payload) == e.hash else EDITED


def _stored_problem(e: StoredEntry) -> str | None:
    if hashlib.sha256((e.prev_hash + e.body()).encode()).hexdigest() == e.hash:
        return None
    try:  # the stored text may be valid JSON that is not canonical: hash what it means
        payload = json.loads(e.payload)
    except ValueError:
        return "its payload is not JSON (edited)"
    if not isinstance(payload, dict):
        return "its payload is not a JSON object (edited)"
    return None if entry_hash(e.prev_hash, e.seq, e.time, e.kind, payload) == e.hash else EDITED


def _walk(
    entries: Iterable[E], head: Head | None, start: Head, problem_of: Callable[[E], str | None]
) -> Verdict:
    seq, digest = start.seq, start.hash  # the previous entry's, kept apart: hot loop
    n = 0
    after = start.seq
    for e in entries:
        expected = seq + 1
        if e.seq != expected:
            what = "missing" if e.seq > expected else "out of order or duplicated"
            problem = f"entry {expected} is {what} (found {e.seq})"
            return Verdict(False, n, Head(seq, digest), expected, problem, after)
        if e.prev_hash != digest:
            problem = "does not link to the previous entry (prev_hash differs)"
            return Verdict(False, n, Head(seq, digest), e.seq, problem, after)
        bad = problem_of(e)
        if bad is not None:
            return Verdict(False, n, Head(seq, digest), e.seq, bad, after)
        seq, digest = e.seq, e.hash
        n += 1
    prev = Head(seq, digest)
    if head is not None and head != prev:
        if head.seq > prev.seq:
            problem = f"the chain ends at seq {prev.seq} but the recorded head is {head.seq}"
            problem += " (entries cut off the end)"
            return Verdict(False, n, prev, prev.seq + 1, problem, after)
        if head.seq < prev.seq:
            problem = f"the chain runs to seq {prev.seq} past the recorded head {head.seq}"
            return Verdict(False, n, prev, head.seq + 1, problem, after)
        problem = "the last hash differs from the recorded head"
        return Verdict(False, n, prev, head.seq, problem, after)
    return Verdict(True, n, prev, after_seq=after)


def verify(
    entries: Iterable[AuditEntry], head: Head | None = None, start: Head = GENESIS_HEAD
) -> Verdict:
    """Check a chain read in seq order; name the first bad entry.

    An entry is bad if it is out of sequence (one deleted before it, one inserted, or
    entries reordered: the seq named is the one expected at that position), if it
    does not link to the previous entry's hash, or if its own hash is wrong (edited).
    With ``head`` given, a chain that ends elsewhere (entries cut off the end, or every
    hash recomputed after an edit) is bad too.

    ``start`` (an entry verified before: a checkpoint) makes the check incremental: the
    entries given are those after it, the first of them must link to it.
    """
    return _walk(entries, head, start, _entry_problem)


def verify_stored(
    entries: Iterable[StoredEntry], head: Head | None = None, start: Head = GENESIS_HEAD
) -> Verdict:
    """``verify`` over entries as stored (payload as JSON text): the same verdicts, without
    parsing every payload."""
    return _walk(entries, head, start, _stored_problem)


# -- JSON lines ------------------------------------------------------------------------------
def entry_from_json(raw: Mapping[str, Any], where: str = "entry") -> AuditEntry:
    """Read one exported entry; a malformed one raises SpecError naming the field."""
    for name, typ in (
        ("seq", int),
        ("time", int),
        ("kind", str),
        ("prev_hash", str),
        ("hash", str),
    ):
        v = raw.get(name)
        if not isinstance(v, typ) or isinstance(v, bool):
            raise SpecError(f"{where}.{name}", f"expected {typ.__name__}, got {v!r}")
    payload = raw.get("payload")
    if not isinstance(payload, Mapping):
        raise SpecError(f"{where}.payload", f"expected an object, got {payload!r}")
    return AuditEntry(raw["seq"], raw["time"], raw["kind"], payload, raw["prev_hash"], raw["hash"])


def read_jsonl(stream: TextIO, source: str = "audit") -> Iterator[AuditEntry]:
    for lineno, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as e:
            raise SpecError(f"{source}:{lineno}", f"not JSON ({e.msg})") from None
        if not isinstance(raw, Mapping):
            raise SpecError(f"{source}:{lineno}", "expected a JSON object")
        yield entry_from_json(raw, f"{source}:{lineno}")


def verify_file(path: Path, head: Head | None = None) -> Verdict:
    with path.open(encoding="utf-8") as f:
        return verify(read_jsonl(f, str(path)), head)


def to_jsonl(entry: AuditEntry) -> str:
    return canonical_json(entry.to_json_dict()) + "\n"
