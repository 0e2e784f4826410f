"""fifo-backfill: Slurm-like FIFO with EASY backfill; contracts ignored except isolation.

1. Walk the queue in order (priority, then submit time); start each job that fits.
2. The first job that does not fit gets a reservation: the time enough running
   jobs are expected to end (by GPU count).
3. Later jobs start only if they fit now and either end before that time or use
   only GPUs the reserved job will not need.
Under a site power cap a job that fits but would exceed the power budget waits
(held-for-power); the first such job takes the reservation, counted in power.
"""

from __future__ import annotations

from cotenant.scheduler.decisions import Behind, Decisions, Place, Reason, Wait
from cotenant.scheduler.policies import register
from cotenant.scheduler.policies.common import PowerBudget, reject_if_impossible, shadow
from cotenant.scheduler.snapshot import Snapshot
from cotenant.scheduler.workspace import Workspace


class FifoBackfill:
    name = "fifo-backfill"
    description = "FIFO with EASY backfill; contracts ignored except isolation (the baseline)"
    honours_contracts = False
    wake_every_s: int | None = None
    backfill = True

    def decide(self, snap: Snapshot) -> Decisions:
        out = Decisions()
        ws = Workspace(snap)
        power = PowerBudget(snap.power_headroom_gpus)
        free_total = ws.free_total()
        reserve_until: int | None = None
        reserved = False
        extra = 0
        for i, pj in enumerate(snap.pending):
            job = pj.spec
            if reject_if_impossible(snap, job, out):
                continue
            if free_total <= 0:
                tenants = snap.pending_tenants
                if tenants is None:
                    tenants = frozenset(p.spec.tenant for p in snap.pending)
                for t in sorted(tenants):
                    out.tenant_waits[t] = Wait("", Reason.NO_CAPACITY, "the cluster is full")
                break
            if reserved:
                if not self.backfill:
                    stop_at_head(snap, i, out)
                    break
                short = (
                    reserve_until is not None and snap.now + job.runtime_estimate_s <= reserve_until
                )
                if not short and job.gpus > extra:
                    out.waits.append(Wait(job.id, Reason.RESERVED_FOR_EARLIER, ""))
                    continue
            # (``try_now`` itself knows a gang no smaller failed this cycle.)
            p = None if job.gpus > free_total else ws.try_now(job)
            if p is not None and not power.allows(job.gpus):
                power.hold(job.id, out)
                if not reserved:
                    reserved = True
                    reserve_until, extra = shadow(snap.now, job.gpus, power.left or 0, snap.running)
                continue
            if p is not None:
                ws.commit_now(job.tenant, p)
                power.spend(job.gpus)
                free_total -= job.gpus
                out.places.append(
                    Place(job.id, p, Reason.BACKFILLED if reserved else Reason.PLACED)
                )
                if reserved and not (
                    reserve_until is not None and snap.now + job.runtime_estimate_s <= reserve_until
                ):
                    extra -= job.gpus
                continue
            if not reserved:
                reserved = True
                avail = ws.free_gpus(job.tenant, job.accelerator, job.providers)
                on = snap.state.topo.job_nodes(job.accelerator, job.providers)
                reserve_until, extra = shadow(snap.now, job.gpus, avail, snap.running, on)
                when = "unknown" if reserve_until is None else str(reserve_until)
                out.waits.append(
                    Wait(job.id, Reason.NO_CAPACITY, f"reserved; expected start {when}")
                )
            else:
                out.waits.append(Wait(job.id, Reason.NO_CAPACITY, ""))
        return out


class Fifo(FifoBackfill):
    name = "fifo"
    description = "strict FIFO: the queue head blocks everything behind it"
    backfill = False


def stop_at_head(snap: Snapshot, index: int, out: Decisions) -> None:
    """Strict FIFO: the head waits, so does every job from ``index`` on, in one verdict
    (``Behind``); only a job no cluster could ever hold is rejected now, as it would be
    anywhere in the queue (the snapshot names those, so this is no walk of the queue)."""
    rest = snap.pending[index:]
    rejected = 0
    if snap.never_fit is None or snap.never_fit:
        for pj in rest:
            rejected += reject_if_impossible(snap, pj.spec, out)
    out.behind = Behind(index, len(rest) - rejected, Reason.QUEUED_BEHIND, "strict FIFO")


register("fifo-backfill")(FifoBackfill)
register("fifo")(Fifo)
