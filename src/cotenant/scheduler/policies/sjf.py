"""sjf: shortest job first, using the job's duration as an ORACLE estimate.

The duration comes from the trace (``JobSpec.duration_s``): it is what the job
really ran, which no real scheduler knows in advance. SJF here is therefore an
optimistic reference point for a non-preemptive policy, not something to deploy.

1. Order the queue by spec priority (higher first), then duration (shortest
   first), then queue time and id (a stable tie-break).
2. Walk it and start every job that fits now: no reservation, so a large job
   can wait behind a stream of short ones (the textbook SJF trade-off).
3. Non-preemptive: running jobs are never stopped.

Short-cuts shared with ``fifo-backfill``: stop when no GPU is free, and skip a
gang no smaller than one that already failed this cycle (``Workspace``).
Contracts are ignored except isolation (rivals never share a node). Under a site
power cap a job that would exceed the power budget waits (held-for-power).
"""

from __future__ import annotations

from cotenant.scheduler.decisions import Decisions, Place, Reason, Wait
from cotenant.scheduler.policies import register
from cotenant.scheduler.policies.common import PowerBudget, reject_if_impossible
from cotenant.scheduler.snapshot import PendingJob, Snapshot
from cotenant.scheduler.workspace import Workspace


def sjf_key(pj: PendingJob) -> tuple[int, int, int, str]:
    """Priority first, then the oracle duration, then queue time and id."""
    return (-pj.spec.priority, pj.spec.duration_s, pj.queued_since_s, pj.spec.id)


class ShortestJobFirst:
    """Non-preemptive SJF on the trace's duration (an oracle estimate)."""

    name = "sjf"
    description = "shortest job first on the trace duration (ORACLE estimate); non-preemptive"
    honours_contracts = False
    wake_every_s: int | None = None

    def decide(self, snap: Snapshot) -> Decisions:
        out = Decisions()
        ws = Workspace(snap)
        power = PowerBudget(snap.power_headroom_gpus)
        free_total = ws.free_total()
        for pj in sorted(snap.pending, key=sjf_key):
            job = pj.spec
            if reject_if_impossible(snap, job, out):
                continue
            if free_total <= 0:
                for t in sorted({p.spec.tenant for p in snap.pending}):
                    out.tenant_waits[t] = Wait("", Reason.NO_CAPACITY, "the cluster is full")
                break
            if job.gpus > free_total or ws.known_not_to_fit(job):
                out.waits.append(Wait(job.id, Reason.NO_CAPACITY, "shorter jobs first"))
                continue
            p = ws.try_now(job)
            if p is None:
                out.waits.append(Wait(job.id, Reason.NO_CAPACITY, "shorter jobs first"))
                continue
            if not power.allows(job.gpus):
                power.hold(job.id, out)
                continue
            ws.commit_now(job.tenant, p)
            power.spend(job.gpus)
            free_total -= job.gpus
            out.places.append(Place(job.id, p, Reason.PLACED))
        return out


register("sjf")(ShortestJobFirst)
