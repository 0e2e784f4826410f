"""Steps shared by policies: rejecting the impossible, backfill shadows."""

from __future__ import annotations

from collections.abc import Iterable

from cotenant.model.jobs import JobSpec
from cotenant.scheduler.decisions import Decisions, Reason, Reject
from cotenant.scheduler.placement import could_ever_fit
from cotenant.scheduler.snapshot import RunningJob, Snapshot


def reject_if_impossible(snap: Snapshot, job: JobSpec, out: Decisions) -> bool:
    """Reject a gang no empty cluster could hold; True if rejected."""
    topo = snap.state.topo
    why = could_ever_fit(topo, job.gpus, job.constraint, topo.capacity_of(job.accelerator))
    if why is None:
        return False
    out.rejects.append(Reject(job.id, Reason.TOO_LARGE, why))
    return True


def shadow(
    now: int, need: int, available: int, running: Iterable[RunningJob]
) -> tuple[int | None, int]:
    """EASY backfill reservation by GPU count: when ``need`` GPUs will be free, and how many
    spare GPUs there will be then. ``running`` must be in expected-end order."""
    if available >= need:
        return now, available - need
    for r in running:
        available += r.gpus
        if available >= need:
            return max(now, r.expected_end_s), available - need
    return None, 0


def capacity_by_kind(snap: Snapshot) -> dict[str | None, int]:
    return snap.state.topo.capacity_by_kind()
