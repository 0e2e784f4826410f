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

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Protocol

from cotenant.model.errors import SpecError
from cotenant.model.jobs import JobKind

_KINDS = tuple(k.value for k in JobKind)


@dataclass(frozen=True, slots=True)
class UsageRecord:
    job_id: str
    tenant: str
    gpus: int
    accelerator: str
    nodes: tuple[int, ...]
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
