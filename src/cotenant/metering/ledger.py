"""The usage ledger: an append-only record of who held which GPUs, when.

One ``UsageRecord`` is one allocation interval: ``gpus`` GPUs of one kind, held by
one job of one tenant on ``nodes`` over ``[start_s, end_s)``. A job that is
preempted and resumed leaves several records. ``borrowed`` marks GPUs beyond the
tenant's own commitment (lent from another tenant's idle capacity or the owner's);
they are billed as overage.

The ledger never updates or deletes a record: corrections are new records (the
store layer will persist it as an append-only table). Windows are half-open and
clipping is exact integer arithmetic, so summing a quantity over any partition of
the time axis gives the total.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, overload

import numpy as np

from cotenant.model.errors import SpecError
from cotenant.model.jobs import JobKind

_KINDS = tuple(k.value for k in JobKind)


# A record of a gang on more nodes than this keeps them as runs of consecutive nodes.
COMPACT_NODES = 512


class NodeRuns(Sequence[int]):
    """Ascending node indices kept as runs of consecutive nodes: a gang of 65,536 trays
    in whole NVLink domains is a few hundred runs, where a tuple is 65,536 ints (2.6 MB).
    A 30-day ledger of a 1,000,000-GPU site keeps thousands of such records (a gang that
    large is interrupted every few minutes). Reads as the tuple it stands for, and
    equals it."""

    __slots__ = ("_first", "_length", "_n", "_offset")

    def __init__(self, nodes: Sequence[int] | np.ndarray) -> None:
        a = np.asarray(nodes, dtype=np.int64)
        if a.size and np.any(np.diff(a) <= 0):
            raise ValueError("nodes must be ascending and distinct")
        breaks = np.flatnonzero(np.diff(a) != 1) + 1
        starts = np.concatenate(([0], breaks)) if a.size else np.zeros(0, np.int64)
        self._first = a[starts]
        self._length = np.diff(np.append(starts, a.size))
        self._offset = starts  # index of each run's first node
        self._n = int(a.size)

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, i: int) -> int: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[int, ...]: ...
    def __getitem__(self, i: int | slice) -> int | tuple[int, ...]:
        if isinstance(i, slice):
            return tuple(self)[i]
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError("node index out of range")
        r = int(np.searchsorted(self._offset, i, side="right")) - 1
        return int(self._first[r]) + i - int(self._offset[r])

    def __iter__(self) -> Iterator[int]:
        for first, length in zip(self._first.tolist(), self._length.tolist(), strict=True):
            yield from range(first, first + length)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, NodeRuns):
            return bool(
                np.array_equal(self._first, other._first)
                and np.array_equal(self._length, other._length)
            )
        if isinstance(other, tuple):
            return len(other) == self._n and tuple(self) == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"NodeRuns({self._n} nodes in {self._first.size} runs)"


@dataclass(frozen=True, slots=True)
class UsageRecord:
    job_id: str
    tenant: str
    gpus: int
    accelerator: str
    nodes: Sequence[int]  # ascending; a tuple, or ``NodeRuns`` for a wide gang
    start_s: int
    end_s: int
    borrowed: bool = False
    kind: str = JobKind.EXPERIMENT.value  # as JobSpec: training, experiment or service

    @property
    def gpu_seconds(self) -> int:
        return self.gpus * (self.end_s - self.start_s)


def validate_record(record: UsageRecord, field: str = "record") -> None:
    """Raise ``SpecError`` naming the first bad field of ``record``."""
    for name in ("gpus", "start_s", "end_s"):
        value = getattr(record, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(f"{field}.{name}", f"must be an integer, got {value!r}")
    if not record.job_id:
        raise SpecError(f"{field}.job_id", "must not be empty")
    if not record.tenant:
        raise SpecError(f"{field}.tenant", "must not be empty")
    if record.gpus <= 0:
        raise SpecError(f"{field}.gpus", f"must be > 0, got {record.gpus}")
    if record.end_s < record.start_s:
        raise SpecError(
            f"{field}.end_s", f"ends before it starts ({record.end_s} < {record.start_s})"
        )
    if record.kind not in _KINDS:
        raise SpecError(
            f"{field}.kind", f"unknown kind {record.kind!r}; valid: {', '.join(_KINDS)}"
        )


def overlap_s(start_s: int, end_s: int, t0: int | None, t1: int | None) -> int:
    """Seconds of ``[start_s, end_s)`` inside ``[t0, t1)``; None is an open bound."""
    lo = start_s if t0 is None else max(start_s, t0)
    hi = end_s if t1 is None else min(end_s, t1)
    return max(0, hi - lo)


def clip(record: UsageRecord, t0: int | None, t1: int | None) -> UsageRecord | None:
    """The part of ``record`` inside ``[t0, t1)`` (None: unbounded), or None if no part is."""
    lo = record.start_s if t0 is None else max(record.start_s, t0)
    hi = record.end_s if t1 is None else min(record.end_s, t1)
    if hi <= lo:
        return None
    if lo == record.start_s and hi == record.end_s:
        return record
    return replace(record, start_s=lo, end_s=hi)


class UsageSource(Protocol):
    """What rating and usage reports read: GPU-seconds inside ``[start_s, end_s)``,
    optionally of one tenant and of borrowed (True) or own (False) GPUs only. A
    ``UsageLedger`` in memory is one; the store's SQL aggregate (``store.usage``) another."""

    def gpu_seconds(
        self,
        tenant: str | None = None,
        start_s: int | None = None,
        end_s: int | None = None,
        borrowed: bool | None = None,
    ) -> int: ...


class UsageLedger:
    """Append-only usage records, in the order they were appended."""

    __slots__ = ("_records",)

    def __init__(self, records: Iterable[UsageRecord] = ()) -> None:
        self._records: list[UsageRecord] = []
        self.extend(records)

    def append(self, record: UsageRecord) -> None:
        """Validate and add one record. A bad record raises ``SpecError`` and is not added."""
        validate_record(record, f"record[{len(self._records)}]")
        self._records.append(record)

    def extend(self, records: Iterable[UsageRecord]) -> None:
        for r in records:
            self.append(r)

    def records(self) -> tuple[UsageRecord, ...]:
        return tuple(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[UsageRecord]:
        return iter(tuple(self._records))

    def gpu_seconds(
        self,
        tenant: str | None = None,
        start_s: int | None = None,
        end_s: int | None = None,
        borrowed: bool | None = None,
    ) -> int:
        """GPU-seconds inside ``[start_s, end_s)``, optionally of one tenant and of
        borrowed (True) or own (False) GPUs only. Records are clipped to the window."""
        total = 0
        for r in self._records:
            if tenant is not None and r.tenant != tenant:
                continue
            if borrowed is not None and r.borrowed != borrowed:
                continue
            total += r.gpus * overlap_s(r.start_s, r.end_s, start_s, end_s)
        return total

    def by_tenant(self) -> dict[str, tuple[UsageRecord, ...]]:
        """Records grouped by tenant, tenants in name order, records in append order."""
        groups: dict[str, list[UsageRecord]] = {}
        for r in self._records:
            groups.setdefault(r.tenant, []).append(r)
        return {t: tuple(groups[t]) for t in sorted(groups)}

    clip = staticmethod(clip)
