"""Rebuild a live engine's jobs from what the store recorded.

A pending job is submitted again (its queue position is its submit time). A running
job is started again on the nodes it held, as of the time it started, so the backend
times its end as before (the digital twin; a real backend would re-attach to the
running processes instead). Its usage interval reopens where the ledger left off.
A job that was reclaiming is restored as running: the next cycle decides again
whether to reclaim it.

Restoring emits no decisions: the sinks are detached while it runs, so nothing is
audited twice. Uses the engine's own start path (``Engine.resume``) so that every piece of
bookkeeping (cluster state, ownership, guarantee views, usage) stays consistent.

The store can be behind what happened (the server was stopped while the store could
not take writes), so restoring *reconciles* it with what the backend reports, and
returns one ``Correction`` per change for the audit log:

- a backend with memory (local, Slurm) reports the runs it has; that is the truth: a
  job it runs is restored on the nodes and attempt it reports (``adopted`` if the
  store said otherwise); a job the store thinks runs but the backend does not is
  ``requeued`` (an ended run is still reported, and its end comes with the backend's
  outcome at the first poll).
- two stored placements over-committing a node (or a node the topology no longer
  has): the job the backend confirms, else the one that started first, keeps it; the
  other is ``requeued``. Its open usage interval is not billed: nothing shows it ran.
- what cannot be reconciled (the backend runs a job the store does not hold as live,
  or two jobs the backend runs claim the same GPUs) raises ``InvariantBroken`` with
  one line naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from cotenant.cluster.state import Health, Placement
from cotenant.engine.core import Engine
from cotenant.engine.jobs import JobRun
from cotenant.model.errors import InvariantBroken
from cotenant.model.jobs import JobSpec, JobState


@dataclass(frozen=True, slots=True)
class SavedJob:
    """What the store keeps of a job that was pending, running or reclaiming."""

    spec: JobSpec
    state: JobState
    placement: Placement | None = None
    borrowed: bool = False
    start_s: int | None = None  # start of the current run
    first_start_s: int | None = None
    usage_since_s: int | None = None  # open usage interval (after the last retag)
    attempt: int = 0
    work_saved_s: int = 0
    preemptions: int = 0
    reason: str = ""  # the reason code it was placed with


@dataclass(frozen=True, slots=True)
class ReportedRun:
    """A run a backend reports having (running, or ended and not yet polled)."""

    job_id: str
    attempt: int
    placement: Placement


@dataclass(frozen=True, slots=True)
class Correction:
    """One change restoring made to what the store said, for the audit log."""

    job: str
    tenant: str
    action: str  # "requeued" or "adopted"
    why: str
    unbilled_from_s: int | None = None  # a requeued run's open usage interval, not billed

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "job": self.job,
            "tenant": self.tenant,
            "action": self.action,
            "why": self.why,
        }
        if self.unbilled_from_s is not None:
            out["unbilled_from_s"] = self.unbilled_from_s
        return out


def restore_jobs(
    engine: Engine,
    saved: list[SavedJob],
    reported: Mapping[str, ReportedRun] | None = None,
) -> tuple[list[JobRun], list[Correction]]:
    """Put ``saved`` jobs back into ``engine``: running ones first (their GPUs are taken),
    then pending ones in the order given, reconciled with what the backend ``reported``
    (None: a backend without memory, the digital twin)."""
    live = {s.spec.id: s for s in saved}
    fixes: list[Correction] = []
    if reported is not None:
        for seen in sorted(reported.values(), key=lambda x: x.job_id):
            if seen.job_id not in live:
                raise InvariantBroken(
                    f"cannot reconcile: the backend runs job {seen.job_id} "
                    f"(attempt {seen.attempt}), "
                    "which the store does not hold as pending or running"
                )
    wanted: list[tuple[bool, SavedJob]] = []  # (confirmed by the backend, job as it runs)
    for s in saved:
        r = None if reported is None else reported.get(s.spec.id)
        if r is not None:
            if not _is_running(s) or s.placement != r.placement or s.attempt != r.attempt:
                fixes.append(
                    Correction(
                        s.spec.id,
                        s.spec.tenant,
                        "adopted",
                        f"the store had it {s.state.value}"
                        + (f" on nodes {list(s.placement.nodes)}" if s.placement else "")
                        + f"; the backend runs attempt {r.attempt} on nodes "
                        f"{list(r.placement.nodes)}",
                    )
                )
            run_as = replace(
                s,
                state=JobState.RUNNING if not _is_running(s) else s.state,
                placement=r.placement,
                attempt=r.attempt,
                start_s=s.start_s if s.start_s is not None else engine.clock.now(),
            )
            wanted.append((True, run_as))
        elif _is_running(s) and reported is not None:
            fixes.append(_requeue(s, "the backend does not run it"))
            wanted.append((False, _as_pending(s)))
        else:
            wanted.append((False, s))
    sinks, engine.sinks = engine.sinks, []
    try:
        running = sorted(
            ((c, s) for c, s in wanted if _is_running(s)),
            key=lambda cs: (not cs[0], cs[1].start_s or 0, cs[1].spec.id),
        )
        runs: list[JobRun] = []
        requeued: list[SavedJob] = []
        for confirmed, s in running:
            clash = _clash(engine, s)
            if clash is None:
                runs.append(_restore_running(engine, s))
            elif confirmed:
                raise InvariantBroken(f"cannot reconcile: the backend runs job {s.spec.id} {clash}")
            else:
                fixes.append(_requeue(s, clash))
                requeued.append(_as_pending(s))
        runs += [_restore_pending(engine, s) for _, s in wanted if not _is_running(s)]
        runs += [_restore_pending(engine, s) for s in requeued]
    finally:
        engine.sinks = sinks
    engine.state.check_invariants()
    return runs, fixes


def _clash(engine: Engine, s: SavedJob) -> str | None:
    """Why ``s`` cannot run where the store put it (None: it can)."""
    assert s.placement is not None
    topo, state = engine.topo, engine.state
    for n, g in zip(s.placement.nodes, s.placement.gpus, strict=True):
        if not 0 <= n < topo.n_nodes:
            return f"on node {n}, which the cluster does not have"
        if state.health[n] == Health.DOWN:
            return f"on node {n}, which is down"
        if state.free[n] < g:
            holders = [r.id for r in engine.jobs_on_node(n)]
            return f"over-commits node {n} (held by {', '.join(holders) or 'others'})"
    return None


def _requeue(s: SavedJob, why: str) -> Correction:
    where = list(s.placement.nodes) if s.placement is not None else []
    return Correction(
        s.spec.id,
        s.spec.tenant,
        "requeued",
        f"the store had it running on nodes {where}, but it {why}",
        s.usage_since_s if s.usage_since_s is not None else s.start_s,
    )


def _as_pending(s: SavedJob) -> SavedJob:
    return replace(s, state=JobState.PENDING, placement=None, borrowed=False, start_s=None)


def _is_running(s: SavedJob) -> bool:
    return s.state in (JobState.RUNNING, JobState.RECLAIMING) and s.placement is not None


def _restore_pending(engine: Engine, s: SavedJob) -> JobRun:
    run = engine.submit(s.spec)
    run.attempt = s.attempt
    run.work_saved_s = s.work_saved_s
    run.preemptions = s.preemptions
    run.first_start_s = s.first_start_s
    run.touch()
    return run


def _restore_running(engine: Engine, s: SavedJob) -> JobRun:
    assert s.placement is not None
    start = s.start_s if s.start_s is not None else engine.clock.now()
    run = engine.submit(s.spec)  # its queue event finds it running and does nothing
    run.attempt = max(0, s.attempt - 1)  # the start counts this run again
    run.work_saved_s = s.work_saved_s
    run.preemptions = s.preemptions
    run.first_start_s = s.first_start_s if s.first_start_s is not None else start
    since = s.usage_since_s if s.usage_since_s is not None else start
    try:
        engine.resume(run, s.placement, s.borrowed, start, since)
    except InvariantBroken as e:
        raise InvariantBroken(f"restoring job {s.spec.id}: {e}") from None
    if s.reason:
        run.reason = s.reason
    return run
