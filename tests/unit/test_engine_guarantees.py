"""The guarantee monitor (engine/guarantees.py), on its own parts: demand inside an
entitlement is owed once borrowers alone keep it out, a start beyond the grace period is a
violation, and an undeliverable entitlement counts its unserved demand as shortfall."""

from __future__ import annotations

from builders import MIN, T0, cluster, contract, job
from cotenant.cluster.state import ClusterState, Health, Placement
from cotenant.engine.accounting import Accounting
from cotenant.engine.guarantees import GuaranteeMonitor
from cotenant.engine.jobs import JobRun
from cotenant.engine.ownership import Ownership
from cotenant.engine.queue import PendingQueue
from cotenant.engine.running import RunningSet
from cotenant.engine.tenants import TenantBook
from cotenant.model.contracts import Contract
from cotenant.model.jobs import JobState


class Parts:
    """A 4-node cluster (32 GPUs) and the parts the monitor reads, without an engine."""

    def __init__(self, *contracts: Contract) -> None:
        topo = cluster(nodes=4, per_rack=2)
        self.jobs: dict[str, JobRun] = {}
        self.state = ClusterState(topo)
        self.queue = PendingQueue(topo)
        self.running = RunningSet()
        self.book = TenantBook(topo)
        for c in contracts:
            self.book.set_contract(c)
            self.state.tenant_index(c.tenant)
        self.owners = Ownership(self.jobs)
        self.acct = Accounting(T0, topo.total_gpus)
        self.monitor = GuaranteeMonitor(
            self.jobs, self.state, self.queue, self.running, self.book, self.owners, self.acct
        )
        self.book.read(T0, 0)

    def running_job(self, id: str, tenant: str, nodes: tuple[int, ...], borrowed: bool) -> JobRun:
        spec = job(id, tenant, 8 * len(nodes), duration_s=10 * 3600)
        p = Placement(nodes, (8,) * len(nodes))
        run = JobRun(spec, JobState.RUNNING, placement=p, start_s=T0, borrowed=borrowed)
        self.jobs[id] = run
        self.state.apply(tenant, p)
        self.running.add(run)
        self.owners.hold(run, +1)
        self.monitor.hold(run, +1)
        return run

    def waiting(self, id: str, tenant: str, gpus: int, priority: int = 0) -> JobRun:
        run = JobRun(job(id, tenant, gpus, priority=priority), queued_since_s=T0)
        self.jobs[id] = run
        self.queue.add(run)
        return run


def test_demand_inside_the_entitlement_kept_out_by_borrowers_is_owed() -> None:
    p = Parts(contract("A", 16), contract("B", 0))
    for n in range(4):
        p.running_job(f"b{n}", "B", (n,), borrowed=True)
    a = p.waiting("a", "A", 16)
    p.monitor.check(T0 + 5, site=None)
    assert a.claim.entitled_since_s == T0 + 5
    assert p.monitor.owed == {"A": {"a"}}
    p.monitor.check(T0 + 9, site=None)
    assert a.claim.entitled_since_s == T0 + 5  # owed since it first was


def test_demand_held_back_by_the_tenants_own_work_or_beyond_its_entitlement_is_not_owed() -> None:
    p = Parts(contract("A", 24), contract("B", 0))
    for n in (0, 1):
        p.running_job(f"own{n}", "A", (n,), borrowed=False)  # A owns 16 of its 24
    for n in (2, 3):
        p.running_job(f"b{n}", "B", (n,), borrowed=True)
    big = p.waiting("big", "A", 16)  # beyond the 8 left of its entitlement
    p.monitor.check(T0, site=None)
    assert big.claim.entitled_since_s is None
    small = p.waiting("small", "A", 8)  # queued behind big: big holds it back
    p.monitor.check(T0, site=None)
    assert small.claim.entitled_since_s is None


def test_a_promise_taking_the_room_of_the_tenants_less_important_work_is_counted() -> None:
    """From colossus-lease at 10x failures (lessee-lab-exp-9664, 32 s late): the policy
    promised a job room held partly by the tenant's own less important work (being
    preempted for it) and counted that promise against the headroom, so the job behind it
    waited; the monitor skipped the promise and counted the job behind it owed."""
    p = Parts(contract("A", 24), contract("B", 0), contract("C", 8))
    p.running_job("own0", "A", (0,), borrowed=False)  # A's less important work
    for n in (1, 2):
        p.running_job(f"b{n}", "B", (n,), borrowed=True)  # reclaimed for A's promise
    p.running_job("c3", "C", (3,), borrowed=False)
    big = p.waiting("big", "A", 24, priority=5)  # 16 of headroom + own0's 8
    small = p.waiting("small", "A", 8, priority=6)  # first in A's queue
    p.monitor.promise(big, Placement((0, 1, 2), (8, 8, 8)), T0)
    p.monitor.check(T0 + 5, site=None)
    assert small.claim.entitled_since_s is None  # the promise takes A's whole room
    assert big.claim.entitled_since_s is None  # its own work holds it back: not owed
    p.monitor.set_health(0, Health.DOWN, T0 + 10)  # a fault breaks the promise
    p.monitor.check(T0 + 15, site=None)
    assert small.claim.entitled_since_s == T0 + 15  # planned afresh: no longer spoken for


def test_a_start_later_than_the_grace_period_is_a_violation() -> None:
    p = Parts(contract("A", 16, grace=5 * MIN))
    on_time, late = p.waiting("on-time", "A", 8), p.waiting("late", "A", 8)
    on_time.claim.entitled_since_s = late.claim.entitled_since_s = T0
    p.monitor.started(on_time, T0 + 5 * MIN)
    p.monitor.started(late, T0 + 7 * MIN)
    tt = p.acct.tenants["A"]
    assert (tt.violation_s, tt.violation_jobs) == (2 * MIN, 1)
    assert late.claim.entitled_since_s is None and late.claim.promise is None


def test_a_promise_is_tracked_and_a_fault_on_its_room_owes_the_job_afresh() -> None:
    p = Parts(contract("A", 16))
    a = p.waiting("a", "A", 8)
    room = Placement((2,), (8,))
    assert p.monitor.promise(a, room, T0)
    assert not p.monitor.promise(a, room, T0 + 1)  # the same promise
    assert a.claim.promised_since_s == T0 and p.monitor.promised_tenants() == {"A"}
    a.claim.entitled_since_s = T0
    p.monitor.set_health(3, Health.DOWN, T0 + 60)  # elsewhere
    assert a.claim.entitled_since_s == T0
    p.monitor.set_health(2, Health.DOWN, T0 + 90)
    assert a.claim.entitled_since_s == T0 + 90
    assert p.monitor.promise(a, None, T0 + 100)
    assert a.claim.promised_since_s is None and p.monitor.promised_tenants() == set()


def test_an_undeliverable_entitlement_counts_the_demand_it_would_cover_as_shortfall() -> None:
    p = Parts(contract("A", 24), contract("B", 8))
    p.book.read(T0, 16)  # 16 GPUs down, no spares: A keeps 12 of 24, B 4 of 8
    assert p.book.deficit == {"A": 12, "B": 4}
    p.waiting("a", "A", 16)  # A wants 16: 12 deliverable, 4 short
    p.monitor.accrue_shortfall(10)
    assert p.acct.tenants["A"].shortfall_gpu_s == 40
    assert p.acct.tenants["B"].shortfall_gpu_s == 0  # wants nothing
