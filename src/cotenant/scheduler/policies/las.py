"""las: least attained service, Tiresias-style discretized 2D-LAS, preemptive.

A job's *attained service* is the GPU-seconds it has held so far (GPUs x time,
over all its runs: the two dimensions of 2D-LAS). Jobs fall into priority
queues by attained service; the thresholds are GPU-seconds:

    queue 0: attained <  1 GPU-hour      (3,600 GPU-s)
    queue 1: attained < 10 GPU-hours     (36,000 GPU-s)
    queue 2: the rest

Tiresias (Gu et al., NSDI 2019) found two or three queues enough; its simulator
puts the first threshold near one GPU-hour (3,250 GPU-s). A second one at ten
GPU-hours separates Philly's day-long multi-GPU runs from its hour-long ones.

The cycle, in order:
1. Jobs with room already being freed for them (a promise) go first and keep
   it while it is still valid: a promise is never stolen.
2. The rest in LAS order: spec priority (higher first), queue (lower first),
   then submit time (FIFO within a queue, as Tiresias) and id. A job that fits
   now starts (no reservation; short-cuts as ``fifo-backfill``). A job that
   fits once reclaims under way finish waits with that room promised.
3. Otherwise preempt: running jobs in a *strictly higher* queue than the waiter
   (and of no higher spec priority), the MOST attained service first, are
   released until the gang fits; only those under the chosen nodes are kept as
   victims. Each gets ``Reclaim`` with the deadline now + ``checkpoint_write_s``
   (rule ``preempt-least-attained``): it writes a checkpoint and stops, keeps
   its work, pays the restart cost when it runs again, and is requeued.

Time alone changes LAS decisions (service grows, a run's protection expires) while
the engine runs a cycle only on events, so the policy asks to be woken every
``wake_every_s`` (default 5 minutes); the engine does that while work waits and runs.

No thrashing: a run can be preempted only after it has done ``min_run_s`` of
work since its restart cost (default 10 minutes), so every run makes progress;
a victim is always in a higher queue than the job it yields to, and jobs in the
same queue never preempt each other (two jobs cannot take turns forever).

The policy sees only the snapshot, so the checkpoint write time is a constructor
argument whose default (60 s) matches the engine's default.

Contracts are ignored except isolation (rivals never share a node). Under a site
power cap a job that would exceed the power budget waits (held-for-power) and
keeps any promised room; LAS does not preempt for power.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections.abc import Sequence
from itertools import pairwise

import numpy as np

from cotenant.cluster.state import ClusterState, Placement
from cotenant.model.errors import SpecError
from cotenant.model.jobs import JobSpec
from cotenant.scheduler.decisions import Decisions, Place, Reason, Reclaim, Wait
from cotenant.scheduler.placement import find_placement, level_range
from cotenant.scheduler.policies import register
from cotenant.scheduler.policies.common import PowerBudget, reject_if_impossible
from cotenant.scheduler.snapshot import PendingJob, RunningJob, Snapshot, blocked_nodes
from cotenant.scheduler.workspace import Workspace

THRESHOLDS_GPU_S: tuple[int, ...] = (3_600, 36_000)  # 1 and 10 GPU-hours
CHECKPOINT_WRITE_S = 60  # the engine's default ``checkpoint_write_s``
MIN_RUN_S = 600  # work a run must do (after its restart cost) before it can be preempted
WAKE_EVERY_S = 300  # scheduling interval: decisions change with time, not only on events


class LeastAttainedService:
    """Discretized 2D-LAS over attained GPU-seconds, preempting the most served first."""

    name = "las"
    description = (
        "least attained service (Tiresias 2D-LAS, queues at 1 and 10 GPU-hours); preemptive"
    )
    honours_contracts = False

    def __init__(
        self,
        thresholds_gpu_s: Sequence[int] = THRESHOLDS_GPU_S,
        checkpoint_write_s: int = CHECKPOINT_WRITE_S,
        min_run_s: int = MIN_RUN_S,
        wake_every_s: int = WAKE_EVERY_S,
    ) -> None:
        th = tuple(int(x) for x in thresholds_gpu_s)
        if any(x <= 0 for x in th) or any(b <= a for a, b in pairwise(th)):
            raise SpecError("las.thresholds_gpu_s", f"must be positive and increasing, got {th}")
        if checkpoint_write_s < 0:
            raise SpecError("las.checkpoint_write_s", f"must be >= 0, got {checkpoint_write_s}")
        if min_run_s < 0:
            raise SpecError("las.min_run_s", f"must be >= 0, got {min_run_s}")
        if wake_every_s < 1:
            raise SpecError("las.wake_every_s", f"must be >= 1, got {wake_every_s}")
        self.thresholds_gpu_s = th
        self.checkpoint_write_s = checkpoint_write_s
        self.min_run_s = min_run_s
        self.wake_every_s: int | None = wake_every_s

    def queue_of(self, attained_gpu_s: int) -> int:
        """The priority queue (0 = least served) of a job with this attained service."""
        return bisect_right(self.thresholds_gpu_s, attained_gpu_s)

    def attained_now(self, r: RunningJob, now: int) -> int:
        """Attained service of a running job, counting its current run up to ``now``."""
        return r.attained_gpu_s + max(0, now - r.start_s) * r.gpus

    def order_key(self, pj: PendingJob) -> tuple[int, int, int, str]:
        return (-pj.spec.priority, self.queue_of(pj.attained_gpu_s), pj.spec.submit_s, pj.spec.id)

    def decide(self, snap: Snapshot) -> Decisions:
        out = Decisions()
        reclaiming = [r for r in snap.running if r.reclaiming]
        ws = Workspace(snap, ((r.tenant, r.placement) for r in reclaiming))
        victims = _Victims(self, snap)
        power = PowerBudget(snap.power_headroom_gpus)
        done = self._keep_promises(snap, ws, power, out)
        self._serve_in_order(snap, ws, victims, power, done, out)
        return out

    def _keep_promises(
        self, snap: Snapshot, ws: Workspace, power: PowerBudget, out: Decisions
    ) -> set[str]:
        """1. Promises are kept while the room is still there. Returns the jobs decided."""
        done: set[str] = set()
        promised = sorted(
            (pj for pj in snap.pending if pj.promise is not None),
            key=lambda pj: (pj.promised_since_s or 0, pj.spec.id),
        )
        for pj in promised:
            job, p = pj.spec, pj.promise
            assert p is not None
            if ws.still_fits(job, p, now=True) and not power.allows(job.gpus):
                ws.promise(job.tenant, p)
                power.hold(job.id, out, p)
            elif ws.still_fits(job, p, now=True):
                ws.commit_now(job.tenant, p)
                power.spend(job.gpus)
                out.places.append(Place(job.id, p, Reason.PLACED))
            elif ws.still_fits(job, p, now=False):
                ws.promise(job.tenant, p)
                out.waits.append(Wait(job.id, Reason.WAITING_FOR_RECLAIM, "preempted jobs", p))
            else:
                continue
            done.add(job.id)
        return done

    def _serve_in_order(
        self,
        snap: Snapshot,
        ws: Workspace,
        victims: _Victims,
        power: PowerBudget,
        done: set[str],
        out: Decisions,
    ) -> None:
        """2-3. Everyone else in LAS order: start now, wait for room being freed, or
        preempt jobs with more attained service."""
        free = ws.now.free if ws.future is None else np.minimum(ws.now.free, ws.future.free)
        free_total = int(free[ws.now.usable()].sum())
        failed: dict[tuple[int, str, str | None, tuple[str, ...], int, int], int] = {}
        order = sorted(snap.pending, key=self.order_key)
        for i, pj in enumerate(order):
            job = pj.spec
            if job.id in done or reject_if_impossible(snap, job, out):
                continue
            q = self.queue_of(pj.attained_gpu_s)
            if free_total <= 0 and ws.future is None and not victims.any_above(q, job.priority):
                # Nothing is free, nothing is being freed, and nobody this job may preempt:
                # the same holds for every later job (same or higher queue, or lower
                # priority, so no more victims), as fifo-backfill stops when full.
                for t in sorted({p.spec.tenant for p in order[i:]}):
                    out.tenant_waits[t] = Wait("", Reason.NO_CAPACITY, "the cluster is full")
                break
            if free_total > 0 and job.gpus <= free_total and not ws.known_not_to_fit(job):
                p = ws.try_now(job)
                if p is not None and not power.allows(job.gpus):
                    power.hold(job.id, out)
                    continue
                if p is not None:
                    ws.commit_now(job.tenant, p)
                    power.spend(job.gpus)
                    free_total -= job.gpus
                    out.places.append(Place(job.id, p, Reason.PLACED))
                    continue
            if ws.future is not None:
                p = ws.try_future(job)
                if p is not None:
                    ws.promise(job.tenant, p)
                    out.waits.append(Wait(job.id, Reason.WAITING_FOR_RECLAIM, "preempted jobs", p))
                    continue
            lo, hi = level_range(snap.state.topo, job.gpus, job.constraint)
            key = (q, job.tenant, job.accelerator, job.providers, int(lo), int(hi))
            if job.gpus < failed.get(key, 1 << 30) and victims.any_above(q, job.priority):
                if self._preempt_for(snap, ws, victims, job, q, out):
                    continue
                failed[key] = min(failed.get(key, 1 << 30), job.gpus)
            out.waits.append(Wait(job.id, Reason.NO_CAPACITY, f"LAS queue {q}"))

    def _preempt_for(
        self, snap: Snapshot, ws: Workspace, victims: _Victims, job: JobSpec, q: int, out: Decisions
    ) -> bool:
        """3. Reclaim jobs in a higher queue, most attained service first, until the gang
        fits; it waits with that room promised. False if no such choice makes it fit."""
        chosen, p = victims.choose(ws, job, q)
        if p is None:
            return False
        for v in chosen:
            ws.release_future(v.tenant, v.placement)
            out.reclaims.append(
                Reclaim(
                    v.spec.id,
                    job.id,
                    snap.now + self.checkpoint_write_s,
                    Reason.PREEMPT_LEAST_ATTAINED,
                )
            )
        ws.promise(job.tenant, p)
        out.waits.append(
            Wait(
                job.id,
                Reason.WAITING_FOR_RECLAIM,
                f"{len(chosen)} job(s) with more attained service preempted",
                p,
            )
        )
        return True


class _Victims:
    """Running jobs that may be preempted this cycle, the most attained service first."""

    def __init__(self, policy: LeastAttainedService, snap: Snapshot) -> None:
        self.snap = snap
        now = snap.now
        cands: list[tuple[int, int, RunningJob]] = []
        for r in snap.running:
            if r.reclaiming or now - r.start_s - r.restart_s < policy.min_run_s:
                continue
            att = policy.attained_now(r, now)
            q = policy.queue_of(att)
            if q > 0:
                cands.append((att, q, r))
        cands.sort(key=lambda c: (-c[0], c[2].spec.id))
        self.cands = cands
        self.taken: set[str] = set()
        # Per queue, the candidates' priorities, least first (a heap, taken ones dropped
        # lazily): ``any_above`` is asked for every waiting job, so it must not walk
        # every running job each time.
        self._by_queue: dict[int, list[tuple[int, str]]] = {}
        for _, cq, r in cands:
            self._by_queue.setdefault(cq, []).append((r.spec.priority, r.spec.id))
        for heap in self._by_queue.values():
            heapq.heapify(heap)

    def any_above(self, q: int, priority: int) -> bool:
        """Whether an untaken candidate in a queue above ``q`` has priority <= ``priority``."""
        for cq, heap in self._by_queue.items():
            if cq <= q:
                continue
            while heap and heap[0][1] in self.taken:
                heapq.heappop(heap)
            if heap and heap[0][0] <= priority:
                return True
        return False

    def choose(
        self, ws: Workspace, job: JobSpec, q: int
    ) -> tuple[list[RunningJob], Placement | None]:
        """Release candidates (in doubling batches) until the gang fits in the view where
        reclaims have finished; keep only the victims under the chosen nodes."""
        cands = [
            r
            for _, cq, r in self.cands
            if cq > q and r.spec.priority <= job.priority and r.spec.id not in self.taken
        ]
        base = ws.future if ws.future is not None else ws.now
        usable = _usable(self.snap, job)
        scratch = base.copy()
        released, batch = 0, 1
        p: Placement | None = None
        while released < len(cands) and p is None:
            for v in cands[released : released + batch]:
                scratch.release(v.tenant, v.placement)
            released = min(len(cands), released + batch)
            batch *= 2
            p = _place(scratch, usable, job, self.snap)
        if p is None:
            return [], None
        on = set(p.nodes)
        needed = [v for v in cands[:released] if on.intersection(v.placement.nodes)]
        trial = base.copy()
        for v in needed:
            trial.release(v.tenant, v.placement)
        q_p = _place(trial, usable, job, self.snap)
        chosen = needed if q_p is not None else cands[:released]
        self.taken.update(v.spec.id for v in chosen)
        return chosen, q_p if q_p is not None else p


def _usable(snap: Snapshot, job: JobSpec) -> np.ndarray:
    """Nodes in service of the job's kind, on the providers it accepts."""
    mask = snap.state.usable()
    only = snap.state.topo.job_nodes(job.accelerator, job.providers)
    return mask if only is None else mask & only


def _place(
    state: ClusterState, usable: np.ndarray, job: JobSpec, snap: Snapshot
) -> Placement | None:
    blocked = blocked_nodes(state, job.tenant, snap.rivals)
    elig = usable if blocked is None else usable & ~blocked
    return find_placement(state.topo, state.free, elig, job.gpus, job.constraint)


register("las")(LeastAttainedService)
