"""The jobs as stored, kept in memory as ready JSON: the hot reads' source.

A read that goes to SQLite is a string of short calls, each releasing the interpreter
lock and waiting to get it back while the engine and the other requests run: a 100-job
page made some 200 such hops, and 32 readers queued behind each other for 0.3-1 s
(bench/bench_live.py). ``JobBook`` holds every job's row rendered once as the bytes of
the ``Job`` schema, with each job's place in submission order (overall and per tenant),
so ``GET /v1/jobs/{id}``, a page of ``GET /v1/jobs`` and the cluster view are answered
from memory, in one stretch of Python, by ``api/fastread.py``.

It follows the store, commit by commit, on the writer thread, before the requests that
wrote are answered (so a job is in the book as soon as its submission is acknowledged,
and a read never sees less than the request before it wrote): new jobs are read back
(one query per transaction: every job stored after the newest the book has); the
engine's changes are applied as written (the very column values and attempt changes
the transaction stored), and a job the book cannot apply them to is read back whole.
Reading every change back cost the writer half its time and the submissions their
latency (bench_live). A pending job's reason is the engine's current one
(``Service.live_row``, as for the SQL route): its bytes are rendered again only when
that reason changed. Only pending jobs keep their row for that; the others keep only
their bytes.
"""

from __future__ import annotations

import json
import signal
import threading
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

Row = dict[str, Any]
LiveRow = Callable[[Row], Row]

ENDED = ("completed", "failed", "cancelled")
# The Job schema's fields made from other columns (appended in this order).
DERIVED = (
    "command",
    "borrowed",
    "placement",
    "exit_code",
    "signal",
    "ended_at",
    "attempts",
    "after",
    "pipeline",
    "providers",
)
# The Job schema's fields in its order, apart from those derived below.
JOB_COLUMNS = (
    "id",
    "tenant",
    "name",
    "gpus",
    "duration_s",
    "kind",
    "constraint",
    "checkpoint_interval_s",
    "priority",
    "estimate_s",
    "accelerator",
    "state",
    "reason",
    "reason_detail",
    "submit_s",
    "first_start_s",
    "start_s",
    "end_s",
    "attempt",
    "preemptions",
    "idempotency_key",
    "submitted_by",
)


def dumps(doc: Any) -> bytes:
    """JSON exactly as Starlette's ``JSONResponse`` renders it."""
    return json.dumps(
        doc, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")


def job_doc(names: Sequence[str], row: Row, attempts: Iterable[Row] | None = None) -> Row:
    """A stored job (and its stored attempts) as the ``Job`` schema's JSON."""
    placement = None
    if row["nodes"] is not None and row["node_gpus"] is not None:
        placement = {
            "nodes": [names[n] for n in json.loads(row["nodes"])],
            "gpus": json.loads(row["node_gpus"]),
        }
    out = {k: row[k] for k in JOB_COLUMNS}
    out["command"] = json.loads(row["command"])
    out["borrowed"] = bool(row["borrowed"])
    out["placement"] = placement
    runs = [attempt_doc(names, a) for a in attempts or ()]
    last = runs[-1] if runs else None
    out["exit_code"] = last["exit_code"] if last else None
    out["signal"] = last["signal"] if last else None
    out["ended_at"] = row["end_s"] if row["state"] in ENDED else None
    out["after"] = [
        {"kind": d["kind"], "jobs": d["jobs"], "take_nodes": bool(d.get("take_nodes"))}
        for d in json.loads(row.get("after") or "[]")
    ]
    out["pipeline"] = row.get("pipeline")
    out["providers"] = json.loads(row.get("providers") or "[]")
    out["attempts"] = runs
    return out


def attempt_doc(names: Sequence[str], a: Row) -> Row:
    code = a["exit_code"]
    return {
        "attempt": a["attempt"],
        "nodes": [names[n] for n in json.loads(a["nodes"])],
        "gpus": json.loads(a["node_gpus"]),
        "start_s": a["start_s"],
        "end_s": a["end_s"],
        "outcome": a["outcome"],
        "exit_code": code,
        "signal": signal_name(code),
        "detail": a["detail"],
    }


def signal_name(exit_code: int | None) -> str | None:
    """The signal behind an exit status of 128 + N (the shell's convention)."""
    if exit_code is None or not 128 < exit_code < 128 + 65:
        return None
    try:
        return signal.Signals(exit_code - 128).name
    except ValueError:
        return f"signal {exit_code - 128}"


LIVE = ("pending", "running", "reclaiming")


@dataclass(slots=True)
class Entry:
    seq: int
    tenant: str
    body: bytes  # the Job JSON as last rendered
    # Jobs not ended: the stored row and attempts, which later writes change (and for a
    # pending job the reason the body shows: the engine's changes every cycle without
    # the row being written).
    row: Row | None = None
    attempts: list[Row] | None = None
    shown: tuple[str, str] = ("", "")


class JobBook:
    """Every stored job's ``Job`` JSON, by id and in submission order. Written by the
    writer thread (``load``, ``add``, ``update``); read by the API without locks (a dict
    lookup and appends to lists that only grow are atomic under the interpreter lock)."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = names
        self.entries: dict[str, Entry] = {}
        self.order: list[tuple[int, str]] = []  # (seq, id), ascending
        self.by_tenant: dict[str, list[tuple[int, str]]] = {}
        self.ready = False
        self._mutex = threading.Lock()  # (one writer at a time; reads take no lock)

    @property
    def last_seq(self) -> int:
        """The newest job's ``seq``: every job stored after it is new to the book."""
        return self.order[-1][0] if self.order else 0

    # -- writing -------------------------------------------------------------------------
    def load(self, rows: Iterable[Row], attempts: dict[str, list[Row]]) -> None:
        """Everything stored (at start, before the writer runs)."""
        with self._mutex:
            for row in sorted(rows, key=lambda r: int(r["seq"])):
                self._put(row, attempts.get(row["id"], []))
            self.ready = True

    def add(self, rows: Iterable[Row]) -> None:
        """Jobs just inserted (read back with their ``seq``; no attempts yet)."""
        with self._mutex:
            for row in sorted(rows, key=lambda r: int(r["seq"])):
                self._put(row, [])

    def update(self, jobs: Iterable[Row], attempts: Iterable[tuple[str, Row]]) -> set[str]:
        """Apply what a committed transaction wrote: job columns (``repo.update_jobs``)
        and attempt changes (``repo.write_attempts``: a start replaces the row of its
        attempt, an end closes the open run it names). Returns the ids of jobs the book
        cannot update (not in it, or ended before): the caller reads those back."""
        with self._mutex:
            missing: set[str] = set()
            rows: dict[str, Row] = {}
            runs: dict[str, list[Row]] = {}
            for cols in jobs:
                entry = self.entries.get(cols["id"])
                if entry is None or entry.row is None:
                    missing.add(cols["id"])
                    continue
                rows[cols["id"]] = {**(rows.get(cols["id"]) or entry.row), **cols}
            for change, a in attempts:
                job_id = a["job_id"]
                entry = self.entries.get(job_id)
                if entry is None or entry.attempts is None:
                    missing.add(job_id)
                    continue
                mine = runs.setdefault(job_id, list(entry.attempts))
                if change == "start":
                    mine[:] = [r for r in mine if r["attempt"] != a["attempt"]] + [dict(a)]
                    mine.sort(key=lambda r: int(r["attempt"]))
                else:
                    for i, r in enumerate(mine):
                        if r["attempt"] == a["attempt"] and r["end_s"] is None:
                            mine[i] = {**r, **a}
            for job_id in (rows.keys() | runs.keys()) - missing:
                entry = self.entries[job_id]
                row = rows.get(job_id, entry.row)
                assert row is not None and entry.attempts is not None
                self._put(row, runs.get(job_id, entry.attempts))
            return missing

    def refresh(self, rows: Iterable[Row], attempts: dict[str, list[Row]]) -> None:
        """Jobs read back from the store whole (those ``update`` could not apply)."""
        with self._mutex:
            for row in sorted(rows, key=lambda r: int(r["seq"])):
                self._put(row, attempts.get(row["id"], []))

    def _put(self, row: Row, runs: list[Row]) -> None:
        job_id, seq, tenant = row["id"], int(row["seq"]), row["tenant"]
        live = row["state"] in LIVE
        entry = Entry(
            seq,
            tenant,
            dumps(job_doc(self.names, row, runs)),
            row if live else None,
            runs if live else None,
            (row["reason"], row["reason_detail"]),
        )
        new = job_id not in self.entries
        self.entries[job_id] = entry
        if new:
            self._index(self.order, seq, job_id)
            self._index(self.by_tenant.setdefault(tenant, []), seq, job_id)

    @staticmethod
    def _index(order: list[tuple[int, str]], seq: int, job_id: str) -> None:
        if not order or order[-1][0] < seq:
            order.append((seq, job_id))  # the usual case: a new job, the newest
        else:
            order.insert(bisect_right(order, (seq, job_id)), (seq, job_id))

    # -- reading -------------------------------------------------------------------------
    def body(self, entry: Entry, live_row: LiveRow) -> bytes:
        """The job's JSON, with a pending job's reason as the engine sees it now."""
        row = entry.row
        if row is None or row["state"] != "pending":
            return entry.body
        live = live_row(row)
        shown = (live["reason"], live["reason_detail"])
        if shown == entry.shown:
            return entry.body
        body = dumps(job_doc(self.names, live, entry.attempts))
        entry.body, entry.shown = body, shown  # (a later refresh replaces the entry)
        return body

    def job(self, job_id: str, live_row: LiveRow) -> tuple[str, bytes] | None:
        """(tenant, JSON) of a job; None if the book does not have it."""
        entry = self.entries.get(job_id)
        if entry is None:
            return None
        return entry.tenant, self.body(entry, live_row)

    def page(self, tenant: str | None, after_seq: int, limit: int, live_row: LiveRow) -> bytes:
        """A ``JobPage``: the first ``limit`` jobs after ``after_seq`` in submission order
        (of ``tenant``, or all), with the cursor to the next page."""
        order = self.order if tenant is None else self.by_tenant.get(tenant, [])
        n = len(order)  # (appends meanwhile are the next page's)
        i = bisect_right(order, (after_seq, "\U0010ffff"), 0, n)
        chosen = order[i : min(n, i + limit + 1)]
        more = len(chosen) > limit
        chosen = chosen[:limit]
        bodies = []
        for _seq, job_id in chosen:
            entry = self.entries.get(job_id)
            if entry is not None:
                bodies.append(self.body(entry, live_row))
        cursor = b'"%d"' % chosen[-1][0] if more and chosen else b"null"
        return b'{"items":[' + b",".join(bodies) + b'],"next_cursor":' + cursor + b"}"
