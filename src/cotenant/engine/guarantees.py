"""The guarantee monitor: whether demand inside a tenant's entitlement waits longer than
its grace period, measured independently of the policy.

It keeps, per contracted tenant, a view of the cluster without other tenants' borrowed
allocations; the jobs owed room now (``owed``, with ``JobClaim.entitled_since_s``); the
jobs the policy promised room (``promised``). When an owed job starts, the time it waited
beyond its grace period is a violation; while the failures beyond the spare pool leave a
tenant's entitlement undeliverable, the demand it would cover is a shortfall. Both are
counted in the accounting.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from cotenant.cluster.state import ClusterState, Health, Placement
from cotenant.engine.accounting import Accounting
from cotenant.engine.ownership import Ownership
from cotenant.engine.queue import Key, PendingQueue
from cotenant.engine.running import RunningSet
from cotenant.engine.tenants import TenantBook
from cotenant.metering.energy import SiteEnergy, topology_power_headroom
from cotenant.scheduler.placement import find_placement
from cotenant.scheduler.snapshot import blocked_nodes

if TYPE_CHECKING:
    from cotenant.engine.jobs import JobRun
    from cotenant.model.jobs import JobSpec

Held = list[tuple[str, Placement]]  # (tenant, placement) applied to a trial view


class GuaranteeMonitor:
    def __init__(
        self,
        jobs: Mapping[str, JobRun],
        state: ClusterState,
        queue: PendingQueue,
        running: RunningSet,
        book: TenantBook,
        owners: Ownership,
        acct: Accounting,
    ) -> None:
        self.jobs = jobs
        self.state = state
        self.topo = state.topo
        self.queue = queue
        self.running = running
        self.book = book
        self.owners = owners
        self.acct = acct
        self.window = 64  # jobs of each tenant's owed prefix placed per cycle
        self.owed: dict[str, set[str]] = {}
        self.promised: set[str] = set()
        # Per contracted tenant: the cluster without other tenants' borrowed allocations.
        self._views: dict[str, ClusterState] = {}

    # -- what the engine tells it ---------------------------------------------------------
    def hold(self, run: JobRun, sign: int) -> None:
        """The run's GPUs were taken (+1) or given back (-1): in each tenant's view where
        they count (every view for owned GPUs, the tenant's own for borrowed ones)."""
        if run.placement is None:
            return
        for viewer, view in self._views.items():
            if viewer == run.tenant or not run.borrowed:
                if sign > 0:
                    view.apply(run.tenant, run.placement)
                else:
                    view.release(run.tenant, run.placement)

    def promise(self, run: JobRun, promise: Placement | None, now: int) -> bool:
        """The policy's promise to a waiting job (None: none); True if it changed."""
        if promise is None:
            self.promised.discard(run.id)
        else:
            self.promised.add(run.id)
        if promise == run.claim.promise:
            return False
        if promise is None:
            run.claim.promised_since_s = None
        elif run.claim.promised_since_s is None:
            run.claim.promised_since_s = now
        run.claim.promise = promise
        return True

    def started(self, run: JobRun, now: int) -> None:
        """An owed job starts: the time it waited beyond its grace period is a violation.
        Its claim ends."""
        claim = run.claim
        c = self.book.contracts.get(run.tenant)
        if c is not None and claim.entitled_since_s is not None:
            late = now - claim.entitled_since_s - c.lending.reclaim_grace_s
            if late > 0:
                tt = self.acct.tenants[run.tenant]
                tt.violation_s += late
                tt.violation_jobs += 1
        claim.entitled_since_s = None
        claim.promise = claim.promised_since_s = None
        self.promised.discard(run.id)

    def set_health(self, node: int, health: Health, now: int) -> None:
        if health is not Health.HEALTHY:
            # Room promised on this node is lost to a fault, not to the scheduler: a job
            # waiting for it is owed afresh from now (the shortfall is the fault report's).
            for job_id in self.promised:
                claim = self.jobs[job_id].claim
                if (
                    claim.entitled_since_s is not None
                    and claim.promise is not None
                    and node in claim.promise.nodes
                ):
                    claim.entitled_since_s = now
        for view in self._views.values():
            view.set_health(node, health)

    def promised_tenants(self) -> set[str]:
        return {self.jobs[j].tenant for j in self.promised}

    def accrue_shortfall(self, dt: int) -> None:
        """Over ``dt`` seconds: demand the full entitlement covers but the deliverable one
        (failures beyond the spare pool taken out) does not."""
        book, owned = self.book, self.owners.owned
        if not book.any_deficit:
            return
        for tenant, d in book.deficit.items():
            if d > 0:
                ent = book.entitled.get(tenant, 0)
                want = owned[tenant] + self.queue.gpus[tenant]
                short = max(0, min(ent + d, want) - ent)
                self.acct.tenants[tenant].shortfall_gpu_s += short * dt

    # -- the check ------------------------------------------------------------------------
    def check(self, now: int, site: SiteEnergy | None) -> None:
        """Measure whether demand inside an entitlement waits longer than the grace period.

        A tenant's demand inside its entitlement is the prefix of its own queue that fits
        its headroom. A job in it is owed from the first cycle at which it would fit with
        other tenants' borrowed allocations gone and the owed demand ahead of it (tenants
        in contract-priority order) placed first; until then the tenant's own work, or the
        topology, holds it back, not a borrower. The check places on a per-tenant view kept
        incrementally and undoes its placements: no copies. Only the first ``window`` jobs
        of each prefix are placed each cycle; later ones keep their state (a bound on the
        work per cycle; see docs/design/0001-core.md)."""
        book = self.book
        if not any(self.owed.values()) and (not self.queue or not book.contracts):
            return  # nothing was owed, and nothing waits or nothing can be owed
        owed: Held = []
        promises = self._entitled_promises() if self.promised else []
        for tenant in book.tenant_order(self.queue.tenants_seen()):
            keys = self.queue.tenant_keys(tenant)
            room = book.entitled.get(tenant, 0) - self.owners.owned[tenant]
            if tenant not in book.contracts or room <= 0 or not keys:
                for job_id in self.owed.pop(tenant, set()):
                    self.jobs[job_id].claim.entitled_since_s = None
                continue
            trial = self._view(tenant)
            here: Held = []
            try:
                for other, p in promises:
                    q = trial.free_part(p) if other != tenant else None
                    if q is not None:
                        trial.apply(other, q)
                        here.append((other, q))
                for other, p in owed:
                    trial.apply(other, p, check=False)
                    here.append((other, p))
                # The site's power cap limits what is deliverable as much as the GPUs do;
                # other tenants' borrowers are gone in this view, so their power counts.
                power = topology_power_headroom(site, self.topo, trial)
                self._check_prefix(_Trial(tenant, trial, now, here, owed), keys, room, power)
            finally:
                for other, p in reversed(here):
                    trial.release(other, p)

    def _check_prefix(self, tr: _Trial, keys: list[Key], room: int, power: int | None) -> None:
        usable = tr.view.usable()
        blocked = blocked_nodes(tr.view, tr.tenant, self.book.rivals)
        tr.elig = usable if blocked is None else usable & ~blocked
        power_room = (1 << 62) if power is None else power
        try:
            self._walk_prefix(tr, keys, room, power_room)
        finally:
            # Jobs no longer owed (e.g. a job ahead of them is now held back) start afresh.
            for job_id in self.owed.get(tr.tenant, set()) - tr.owed_now:
                self.jobs[job_id].claim.entitled_since_s = None
            self.owed[tr.tenant] = tr.owed_now

    def _walk_prefix(self, tr: _Trial, keys: list[Key], room: int, power_room: int) -> None:
        # The tenant's jobs already promised room come first, as the policy serves them
        # (a promise is kept): room they hold is the tenant's own work holding it, not
        # a borrower, whatever their place in the queue (a job requeued after a fault
        # goes back to its old place, ahead of them).
        # A promise counts against the room as the policy counts it: its headroom plus what
        # the tenant's less important owned work holds (the entitlement goes to its most
        # important work), so a job behind a promise that takes that work's room is not
        # owed it.
        trial = tr.view
        for run in self._own_promised(tr.tenant):
            gpus = run.spec.gpus
            if gpus > room + self.owners.owned_below(tr.tenant, run.spec.priority):
                continue
            if gpus > power_room:
                # Held for power, as the policy holds it: it keeps the power there is now
                # (the tenant's own work holds the rest), so what follows is not owed it.
                room -= gpus
                power_room -= min(power_room, gpus)
                continue
            promise = p = run.claim.promise
            if p is None or not trial.holds(p):
                p = find_placement(
                    self.topo, trial.free, self._elig(tr, run.spec), gpus, run.spec.constraint
                )
            if p is None:
                if promise is not None and self._kept_by_own_work(tr, promise):
                    # Its room is held by the tenant's own work (being preempted for it), as
                    # the policy keeps it: spoken for, but not owed.
                    room -= gpus
                    power_room -= min(power_room, gpus)
                continue
            room -= gpus
            power_room -= gpus
            tr.owe(run, p)
        for n, key in enumerate(keys):
            run = self.jobs[key[3]]
            if run.id in tr.owed_now:
                continue
            if run.spec.gpus > room or n >= self.window:
                break
            if run.spec.gpus > power_room:
                break  # held for power by the site's cap: not deliverable, not owed
            room -= run.spec.gpus
            power_room -= run.spec.gpus
            elig = self._elig(tr, run.spec)
            p = find_placement(self.topo, trial.free, elig, run.spec.gpus, run.spec.constraint)
            if p is None:
                # Held back by the tenant's own work (or the topology): it is not owed yet,
                # and neither is anything behind it in the tenant's own order.
                break
            tr.owe(run, p)

    def _elig(self, tr: _Trial, spec: JobSpec) -> np.ndarray:
        """The nodes the tenant may use, on the providers the job accepts."""
        elig: np.ndarray = tr.elig
        only = self.topo.provider_nodes(spec.providers)
        return elig if only is None else elig & only

    @staticmethod
    def _kept_by_own_work(tr: _Trial, p: Placement) -> bool:
        """Whether a promise's room is whole once the tenant's own work on it leaves: its
        nodes are in service and hold enough GPUs free or the tenant's own (a fault that
        broke it, or another tenant's owned work on it, and the policy plans afresh)."""
        nodes, gpus = p.arrays()
        view = tr.view
        if not view.usable()[nodes].all():
            return False
        own = view.tenant_gpus[view.tenant_index(tr.tenant), nodes]
        return bool(np.all(view.free[nodes] + own >= gpus))

    def _own_promised(self, tenant: str) -> list[JobRun]:
        """The tenant's pending jobs with room promised, in the order the policy serves
        them (oldest promise first)."""
        if not self.promised:
            return []
        runs = [self.jobs[j] for j in self.promised if self.jobs[j].tenant == tenant]
        runs.sort(key=lambda r: (r.claim.promised_since_s or 0, r.id))
        return runs

    def _entitled_promises(self) -> Held:
        """Room being reclaimed for jobs inside their tenant's entitlement (counting the
        room of the tenant's less important owned work, which such a job may take): it is
        spoken for, so other tenants are not owed it. Checked here against the contracts,
        not taken on the policy's word."""
        out: Held = []
        spent: Counter[str] = Counter()
        runs = sorted(
            (self.jobs[j] for j in self.promised),
            key=lambda r: (r.claim.promised_since_s or 0, r.id),
        )
        book, owners = self.book, self.owners
        for run in runs:
            t, p = run.tenant, run.claim.promise
            if p is None or t not in book.contracts:
                continue
            room = (
                book.entitled.get(t, 0)
                - owners.owned[t]
                + owners.owned_below(t, run.spec.priority)
                - spent[t]
            )
            if run.spec.gpus <= room:
                spent[t] += run.spec.gpus
                out.append((t, p))
        return out

    def _view(self, tenant: str) -> ClusterState:
        view = self._views.get(tenant)
        if view is None:
            view = self.state.copy()
            for rv in self.running.views:
                if rv.borrowed and rv.tenant != tenant:
                    view.release(rv.tenant, rv.placement)
            self._views[tenant] = view
        return view


class _Trial:
    """One tenant's check in progress: its view with what is placed on it so far (to be
    undone), the owed placements of the tenants before it, and the jobs found owed."""

    __slots__ = ("elig", "here", "now", "owed", "owed_now", "tenant", "view")

    def __init__(self, tenant: str, view: ClusterState, now: int, here: Held, owed: Held) -> None:
        self.tenant = tenant
        self.view = view
        self.now = now
        self.here = here
        self.owed = owed
        self.owed_now: set[str] = set()
        self.elig: Any = None  # the nodes the tenant may use (set by the prefix check)

    def owe(self, run: JobRun, p: Placement) -> None:
        """The job fits inside its entitlement with borrowers gone: it is owed (from now,
        if it was not already), and its room is taken in the trial view."""
        self.view.apply(self.tenant, p)
        self.here.append((self.tenant, p))
        self.owed.append((self.tenant, p))
        self.owed_now.add(run.id)
        if run.claim.entitled_since_s is None:
            run.claim.entitled_since_s = self.now
