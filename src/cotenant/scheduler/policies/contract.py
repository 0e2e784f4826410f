"""contract (the default): every tenant is served within its entitlement first.

The cycle, in order:
1. Entitled demand. For each tenant (contract priority, then name), walk its queue;
   a job inside the tenant's headroom (entitlement minus what it holds inside it)
   starts if it fits now; otherwise, if borrowers hold the room, they are told to
   checkpoint and stop after the grace period (victims that lose the least work
   since their last checkpoint first) and the job waits with the room promised.
   Jobs already waiting for a reclaim go first, so a promise is never stolen; one
   whose promised room a fault broke is planned afresh after the whole promises.
   A tenant's first job that exceeds its headroom gets a reservation among its own
   jobs (EASY within the tenant), so a big run is not starved by its own small ones.
2. Borrowing. What lenders leave idle (within their lending limits) plus capacity
   no contract covers is lent to the remaining jobs, tenants taking turns in
   proportion to their commitment (the least served, relative to commitment, next).
   Borrowed GPUs can be taken back at any time with the grace period.
Under a site power cap (``Snapshot.power_headroom_gpus``) every start spends the
cycle's power budget; a job that would exceed it waits (held-for-power), keeping
any promised room, and once entitled demand is held for power nothing is lent.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import cast

from cotenant.cluster.state import Placement
from cotenant.model.jobs import JobSpec
from cotenant.scheduler.decisions import Decisions, Place, Reason, Reclaim, Wait
from cotenant.scheduler.placement import find_placement, level_range
from cotenant.scheduler.policies import register
from cotenant.scheduler.policies.common import power_budget, reject_if_impossible, shadow
from cotenant.scheduler.policies.lending import LendingRound, borrowed_after, lendable
from cotenant.scheduler.policies.reclaims import ReclaimsUnderWay, reclaims_under_way
from cotenant.scheduler.snapshot import PendingJob, RunningJob, Snapshot, blocked_nodes
from cotenant.scheduler.workspace import Workspace


class ContractPolicy:
    name = "contract"
    description = "entitlement first; idle capacity lent and reclaimed with a grace period"
    honours_contracts = True
    wake_every_s: int | None = None

    def decide(self, snap: Snapshot) -> Decisions:
        out = Decisions()
        reclaiming = snap.reclaiming_runs()
        ws = Workspace(snap, ((r.tenant, r.placement) for r in reclaiming))
        headroom = {
            t: snap.entitlements.get(t, 0) - snap.owned_gpus.get(t, 0) for t in snap.entitlements
        }
        taken_victims: set[str] = {r.spec.id for r in reclaiming}

        # Jobs with room already being reclaimed for them go first, the one whose grace
        # period ends first first (oldest promise first among equal graces), and keep the
        # very room promised while it is still theirs: a promise is kept. (By deadline,
        # not age: room or power freed for a job with a short grace is not taken by an
        # older promise that can still wait.)
        def due(pj: PendingJob) -> tuple[int, int, str]:
            since = pj.promised_since_s or 0
            c = snap.contracts.get(pj.spec.tenant)
            grace = c.lending.reclaim_grace_s if c is not None else 0
            return (since + grace, since, pj.spec.id)

        promised = sorted((pj for pj in snap.pending if pj.promise is not None), key=due)
        # Promises still whole are kept before any broken one (a fault took part of its
        # room) is planned afresh: the new plan must not take room promised to another.
        broken: list[PendingJob] = []
        # Promised room still being reclaimed, with the part of it held now.
        waiting: list[tuple[PendingJob, Placement | None]] = []
        for pj in promised:
            job, p = pj.spec, pj.promise
            assert p is not None
            if self._room(snap, ws, headroom, job) < job.gpus:
                continue
            if ws.still_fits(job, p, now=True) and not power_budget(ws).allows(job.gpus):
                self._power_for(snap, ws, job, taken_victims, out)
                power_budget(ws).keep_now(job.gpus)
                ws.promise(job.tenant, p)
                power_budget(ws).hold(job.id, out, p)
            elif ws.still_fits(job, p, now=True):
                ws.commit_now(job.tenant, p)
                power_budget(ws).spend(job.gpus)
                out.places.append(Place(job.id, p, Reason.PLACED_OWN, borrowed=False))
            elif ws.still_fits(job, p, now=False):
                self._power_for(snap, ws, job, taken_victims, out)
                waiting.append((pj, ws.promise(job.tenant, p)))
            else:
                broken.append(pj)
                continue
            headroom[job.tenant] -= job.gpus
        for pj in broken:
            job = pj.spec
            if self._room(snap, ws, headroom, job) >= job.gpus and self._serve(
                snap, ws, job, taken_victims, out
            ):
                headroom[job.tenant] -= job.gpus
        # A job waiting for its promised room starts now if room is free now elsewhere
        # (a repair, an early end): its grace period is a bound, not a schedule. The
        # promised room it leaves goes back to the cycle, for the jobs decided after it.
        for pj, held_now in waiting:
            job, p = pj.spec, pj.promise
            assert p is not None
            q = ws.try_now(job)
            if q is not None and power_budget(ws).allows(job.gpus):
                ws.withdraw(job.tenant, p, held_now)
                ws.commit_now(job.tenant, q)
                power_budget(ws).spend(job.gpus)
                out.places.append(Place(job.id, q, Reason.PLACED_OWN, borrowed=False))
            else:
                out.waits.append(
                    Wait(job.id, Reason.WAITING_FOR_RECLAIM, "borrowers are checkpointing", p)
                )
        served = {p.job_id for p in out.places} | {w.job_id for w in out.waits}
        to_borrow = self._entitled_demand(snap, ws, headroom, taken_victims, out, served)
        self._lend(snap, ws, headroom, reclaiming, to_borrow, out)
        return out

    # -- step 1 ---------------------------------------------------------------------------
    def _entitled_demand(
        self,
        snap: Snapshot,
        ws: Workspace,
        headroom: dict[str, int],
        taken_victims: set[str],
        out: Decisions,
        served: set[str],
    ) -> list[PendingJob]:
        to_borrow: list[PendingJob] = []
        reservation: dict[str, tuple[int | None, int]] = {}
        by_tenant = snap.pending_by_tenant
        if by_tenant is None:
            grouped: dict[str, list[PendingJob]] = defaultdict(list)
            for pj in snap.pending:
                grouped[pj.spec.tenant].append(pj)
            by_tenant = {t: tuple(q) for t, q in grouped.items()}
        order = sorted(
            by_tenant,
            key=lambda t: (-(snap.contracts[t].priority if t in snap.contracts else -(1 << 30)), t),
        )
        for tenant in order:
            queue: Sequence[PendingJob] = by_tenant[tenant]
            entitled = snap.entitlements.get(tenant, 0)
            if entitled <= 0:
                to_borrow.extend(pj for pj in queue if not reject_if_impossible(snap, pj.spec, out))
                continue
            if served:
                queue = [pj for pj in queue if pj.spec.id not in served]
            if not queue:
                continue
            min_size = min(pj.spec.gpus for pj in queue)
            for k, pj in enumerate(queue):
                job = pj.spec
                if reject_if_impossible(snap, job, out):
                    continue
                room = headroom.get(tenant, 0)
                job_room = self._room(snap, ws, headroom, job)
                if job.gpus > job_room:
                    to_borrow.append(pj)
                    # A reservation among the tenant's own jobs, unless the job can start
                    # now on borrowed room (then a reservation would only hold others back).
                    if (
                        tenant not in reservation
                        and job.gpus <= entitled
                        and ws.try_now(job) is None
                    ):
                        own = (
                            r for r in snap.running if not r.borrowed and r.spec.tenant == tenant
                        )
                        reservation[tenant] = shadow(snap.now, job.gpus, max(room, 0), own)
                    if job_room < min_size:
                        # No job of this tenant fits its headroom: the rest can only borrow
                        # (a job no empty cluster could hold is still rejected).
                        to_borrow.extend(
                            q for q in queue[k + 1 :] if not reject_if_impossible(snap, q.spec, out)
                        )
                        break
                    continue
                held = reservation.get(tenant)
                if held is not None:
                    until, extra = held
                    short = until is not None and snap.now + job.runtime_estimate_s <= until
                    if not short and job.gpus > extra:
                        out.waits.append(Wait(job.id, Reason.RESERVED_FOR_EARLIER, ""))
                        continue
                    if not short:
                        reservation[tenant] = (until, extra - job.gpus)
                if self._serve(snap, ws, job, taken_victims, out):
                    headroom[tenant] = room - job.gpus
        return to_borrow

    @staticmethod
    def _room(snap: Snapshot, ws: Workspace, headroom: dict[str, int], job: JobSpec) -> int:
        """Headroom for this job: the tenant's free headroom plus what its less important
        owned work holds (the entitlement goes to the tenant's most important work; summed
        once per tenant and priority in a cycle)."""
        memo = cast(dict[tuple[str, int], int], ws.cache.setdefault("owned-below", {}))
        key = (job.tenant, job.priority)
        below = memo.get(key)
        if below is None:
            owned = snap.owned_by_priority.get(job.tenant, {})
            below = memo[key] = sum(g for p, g in owned.items() if p < job.priority)
        return headroom.get(job.tenant, 0) + below

    def _serve(
        self, snap: Snapshot, ws: Workspace, job: JobSpec, taken: set[str], out: Decisions
    ) -> bool:
        """Start or promise room for a job inside its entitlement. True if room is held."""
        p = ws.try_now(job)
        if p is not None and not power_budget(ws).allows(job.gpus):
            if self._reclaim_for_power(snap, ws, job, p, taken, out):
                return True
            power_budget(ws).hold(job.id, out)
            return False
        if p is not None:
            ws.commit_now(job.tenant, p)
            power_budget(ws).spend(job.gpus)
            out.places.append(Place(job.id, p, Reason.PLACED_OWN, borrowed=False))
            return True
        p = ws.try_future(job)
        if p is not None:
            self._hasten(snap, ws, job, p, out)
            self._power_for(snap, ws, job, taken, out)
            ws.promise(job.tenant, p)
            out.waits.append(
                Wait(job.id, Reason.WAITING_FOR_RECLAIM, "borrowers are checkpointing", p)
            )
            return True
        victims, p = self._choose_victims(snap, ws, job, taken, own_lower=False)
        rule = Reason.RECLAIM_FOR_ENTITLEMENT
        if p is None:
            # Only the tenant's own less important work stands in the way: preempt it.
            victims, p = self._choose_victims(snap, ws, job, taken, own_lower=True)
            rule = Reason.PREEMPT_LOWER_PRIORITY
        if p is None:
            out.waits.append(
                Wait(
                    job.id,
                    Reason.OWN_JOBS_HOLD_CAPACITY,
                    "inside entitlement; no borrowed room fits",
                )
            )
            return False
        grace = snap.contracts[job.tenant].lending.reclaim_grace_s
        freed: defaultdict[int, int] = defaultdict(int)
        for v in victims:
            taken.add(v.spec.id)
            ws.release_future(v.tenant, v.placement)
            out.reclaims.append(Reclaim(v.spec.id, job.id, snap.now + grace, rule))
            reclaims_under_way(snap, ws).add(v, snap.now + grace)
            for n, g in zip(v.placement.nodes, v.placement.gpus, strict=True):
                freed[n] += g
        self._hasten(snap, ws, job, p, out, freed)
        self._power_for(snap, ws, job, taken, out, sum(freed.values()))
        ws.promise(job.tenant, p)
        out.waits.append(
            Wait(job.id, Reason.WAITING_FOR_RECLAIM, f"{len(victims)} borrower(s) reclaimed", p)
        )
        return True

    def _reclaim_for_power(
        self,
        snap: Snapshot,
        ws: Workspace,
        job: JobSpec,
        p: Placement,
        taken: set[str],
        out: Decisions,
    ) -> bool:
        """The GPUs are free but the site's power cap is not: hold the room and make
        sure the power comes within the grace period (``_power_for``). False (nothing
        decided) if even reclaiming every other tenant's borrower could not free it."""
        if not self._power_for(snap, ws, job, taken, out):
            return False
        ws.promise(job.tenant, p)
        out.waits.append(
            Wait(job.id, Reason.WAITING_FOR_RECLAIM, "borrowers stop to free power", p)
        )
        return True

    def _power_for(
        self,
        snap: Snapshot,
        ws: Workspace,
        job: JobSpec,
        taken: set[str],
        out: Decisions,
        freeing: int = 0,
    ) -> bool:
        """Power for a job promised room: under a site cap, once the reclaims under way
        (and this job's own, ``freeing`` GPUs) are done, the job must still fit the power
        headroom. If not, other tenants' borrowers draw the power it is owed: reclaim
        enough of them (least work lost first) by the job's grace. Books the job's power
        in the budget's future either way; False if borrowers could not free enough."""
        budget = power_budget(ws)
        short = budget.future_short(job.gpus - freeing)
        victims: list[RunningJob] = []
        if short > 0:
            borrowed = self._borrowed_pool(snap, ws)
            for r in borrowed:
                if short <= 0:
                    break
                if r.tenant != job.tenant and r.spec.id not in taken:
                    victims.append(r)
                    short -= r.gpus
            if short > 0:
                return False
        deadline = snap.now + snap.contracts[job.tenant].lending.reclaim_grace_s
        for v in victims:
            taken.add(v.spec.id)
            ws.release_future(v.tenant, v.placement)
            out.reclaims.append(
                Reclaim(v.spec.id, job.id, deadline, Reason.RECLAIM_FOR_ENTITLEMENT)
            )
            reclaims_under_way(snap, ws).add(v, deadline)
        self._hasten_power(snap, ws, job, freeing + sum(v.gpus for v in victims), out)
        budget.promise(job.gpus, freeing + sum(v.gpus for v in victims))
        return True

    @staticmethod
    def _hasten_power(
        snap: Snapshot, ws: Workspace, job: JobSpec, freeing: int, out: Decisions
    ) -> None:
        """Power the job counts on beyond what is free now (and what its own reclaims
        free) comes from reclaims already under way, at their deadlines: those it relies
        on (earliest first) are moved up to its grace, as ``_hasten`` does for GPUs."""
        left = power_budget(ws).left
        if left is None:
            return
        short = job.gpus - freeing - max(left, 0)
        if short <= 0:
            return
        limit = snap.now + snap.contracts[job.tenant].lending.reclaim_grace_s
        under_way = reclaims_under_way(snap, ws)
        for r in sorted(under_way.runs(), key=lambda r: (under_way.deadline(r), r.spec.id)):
            if short <= 0:
                break
            short -= r.gpus
            if under_way.deadline(r) > limit:
                under_way.add(r, limit)
                out.reclaims.append(
                    Reclaim(r.spec.id, job.id, limit, Reason.RECLAIM_FOR_ENTITLEMENT)
                )

    def _hasten(
        self,
        snap: Snapshot,
        ws: Workspace,
        job: JobSpec,
        p: Placement,
        out: Decisions,
        freed: Mapping[int, int] | None = None,
    ) -> None:
        """Room freed by reclaims already under way (for another job, in an earlier cycle
        or earlier in this one) comes at their deadlines; if this job's own grace period
        ends earlier, the reclaims it relies on are moved up to it: its contract promises
        the room within its grace, whoever asked first. Only GPUs not free now (nor freed
        by ``freed``, this job's own new victims) are looked for, and any rival's run that
        closes one of the job's nodes (or racks) to it."""
        limit = snap.now + snap.contracts[job.tenant].lending.reclaim_grace_s
        under_way = reclaims_under_way(snap, ws)
        relied_on: list[RunningJob] = []
        for node, need in zip(p.nodes, p.gpus, strict=True):
            short = need - int(ws.now.free[node]) - (freed or {}).get(node, 0)
            for r in under_way.on_node(node):
                if short <= 0:
                    break
                short -= r.placement.gpus[r.placement.nodes.index(node)]
                relied_on.append(r)
        relied_on.extend(self._rivals_in_the_way(snap, ws, job, p, under_way))
        for r in relied_on:
            if under_way.deadline(r) > limit:
                under_way.add(r, limit)
                out.reclaims.append(
                    Reclaim(r.spec.id, job.id, limit, Reason.RECLAIM_FOR_ENTITLEMENT)
                )

    @staticmethod
    def _rivals_in_the_way(
        snap: Snapshot, ws: Workspace, job: JobSpec, p: Placement, under_way: ReclaimsUnderWay
    ) -> list[RunningJob]:
        """Reclaiming rival runs that must be gone before the job may use its room: a
        node (or rack) a rival holds is closed to the job however many GPUs are free."""
        blocked = ws.blocked_now(job.tenant)
        if blocked is None or not blocked[list(p.nodes)].any():
            return []
        names, rack_apart = snap.rivals[job.tenant]
        node_rack = ws.topo.node_rack
        racks = {int(node_rack[n]) for n in p.nodes}
        nodes = set(p.nodes)

        def in_the_way(r: RunningJob) -> bool:
            if r.tenant in rack_apart:
                return any(int(node_rack[n]) in racks for n in r.placement.nodes)
            return r.tenant in names and bool(nodes.intersection(r.placement.nodes))

        return [r for r in under_way.runs() if in_the_way(r)]

    def _choose_victims(
        self, snap: Snapshot, ws: Workspace, job: JobSpec, taken: set[str], own_lower: bool
    ) -> tuple[list[RunningJob], Placement | None]:
        """Victims whose release makes the gang fit: other tenants' borrowed runs, least
        work lost first; with ``own_lower`` then the tenant's own runs of lower priority,
        lowest priority first (an inference replica takes experiments before training)."""
        lo, hi = level_range(snap.state.topo, job.gpus, job.constraint)
        memo = cast(dict[tuple[object, ...], int], ws.cache.setdefault("victim-fail", {}))
        where = (job.tenant, job.accelerator, job.providers)  # (a memo: by where it may run)
        mkey = (*where, own_lower, int(lo), int(hi), job.priority)
        if job.gpus >= memo.get(mkey, 1 << 60):
            return [], None
        # Upper bound first (cheap): free room plus every candidate's GPUs. Isolation is
        # ignored here: releasing a rival's borrowers can unblock a node's free GPUs too.
        bound = ws.free_upper_bound(job.accelerator) + sum(
            g for t, g in snap.borrowed_gpus.items() if t != job.tenant
        )
        if own_lower:
            below = snap.owned_by_priority.get(job.tenant, {})
            extra = sum(g for prio, g in below.items() if prio < job.priority)
            if not extra:
                return [], None
            bound += extra
        if bound < job.gpus:
            memo[mkey] = min(memo.get(mkey, 1 << 60), job.gpus)
            return [], None
        borrowed = self._borrowed_pool(snap, ws)
        others = (r for r in borrowed if r.tenant != job.tenant and r.spec.id not in taken)
        pool: Iterator[RunningJob] = others
        if own_lower:
            mine = (
                r
                for r in self._own_pools(snap, ws).get(job.tenant, ())
                if r.spec.priority < job.priority and r.spec.id not in taken
            )
            # Other tenants' borrowers first, then the tenant's own least important work.
            pool = itertools.chain(others, mine)
        base = ws.future if ws.future is not None else ws.now
        scratch = base.copy()
        rivals = snap.rivals
        usable = ws.base(job.accelerator, job.providers)  # rivals are re-checked below
        cands: list[RunningJob] = []
        batch = 1
        p: Placement | None = None
        while True:
            chunk = list(itertools.islice(pool, batch))
            if not chunk:
                break
            scratch.release_many([(v.tenant, v.placement) for v in chunk])
            cands.extend(chunk)
            batch *= 2
            blocked = blocked_nodes(scratch, job.tenant, rivals)
            elig = usable if blocked is None else usable & ~blocked
            p = find_placement(scratch.topo, scratch.free, elig, job.gpus, job.constraint)
            if p is not None:
                break
        released = len(cands)
        if p is None:
            memo[mkey] = min(memo.get(mkey, 1 << 60), job.gpus)
            return [], None
        chosen_nodes = set(p.nodes)
        needed = [v for v in cands[:released] if chosen_nodes.intersection(v.placement.nodes)]
        # Re-check with only the overlapping victims (rack isolation may need more).
        trial = base.copy()
        trial.release_many([(v.tenant, v.placement) for v in needed])
        blocked = blocked_nodes(trial, job.tenant, rivals)
        elig = usable if blocked is None else usable & ~blocked
        q = find_placement(trial.topo, trial.free, elig, job.gpus, job.constraint)
        if q is None:
            return cands[:released], p
        # Overlapping victims suffice; keep placement consistent with the trial view.
        return needed, q

    @staticmethod
    def _victim_key(now: int) -> Callable[[RunningJob], tuple[int, int, str]]:
        return lambda r: (r.work_since_checkpoint_s(now) * r.gpus, -r.start_s, r.spec.id)

    def _borrowed_pool(self, snap: Snapshot, ws: Workspace) -> list[RunningJob]:
        got = ws.cache.get("victim-pool-borrowed")
        if got is None:
            key = self._victim_key(snap.now)
            got = sorted((r for r in snap.running if r.borrowed and not r.reclaiming), key=key)
            ws.cache["victim-pool-borrowed"] = got
        return cast(list[RunningJob], got)

    def _own_pools(self, snap: Snapshot, ws: Workspace) -> dict[str, list[RunningJob]]:
        got = ws.cache.get("victim-pools-own")
        if got is None:
            key = self._victim_key(snap.now)
            own: dict[str, list[RunningJob]] = defaultdict(list)
            # Own runs lowest priority first (then least work lost): a tenant's own
            # work makes room for its more important work in priority order.
            live = (r for r in snap.running if not r.borrowed and not r.reclaiming)
            for r in sorted(live, key=lambda r: (r.spec.priority, *key(r))):
                own[r.tenant].append(r)
            got = own
            ws.cache["victim-pools-own"] = got
        return cast(dict[str, list[RunningJob]], got)

    # -- step 2 ---------------------------------------------------------------------------
    def _lend(
        self,
        snap: Snapshot,
        ws: Workspace,
        headroom: dict[str, int],
        reclaiming: Sequence[RunningJob],
        to_borrow: list[PendingJob],
        out: Decisions,
    ) -> None:
        if not to_borrow:
            return
        budget = lendable(snap, headroom) - borrowed_after(snap, reclaiming)
        queues: dict[str, list[PendingJob]] = defaultdict(list)
        for pj in to_borrow:
            queues[pj.spec.tenant].append(pj)
        free_total = int(ws._free(0)[ws.now.usable()].sum())
        power = power_budget(ws)
        if power.held or not power.allows(1):
            # Entitled demand waits for power, or none is left: nothing is lent this cycle.
            for t in queues:
                out.tenant_waits[t] = Wait("", Reason.HELD_FOR_POWER, power.detail())
            return
        LendingRound(snap, ws, queues, budget, free_total, out).run()


register("contract")(ContractPolicy)
