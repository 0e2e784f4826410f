"""The engine under small deterministic scenarios whose outcomes can be checked by hand.

Most cases use a 4-node cluster of 8 GPUs (32 GPUs; 2 nodes to a rack, one block):
tenant A has a fixed commitment, B and C have no contract and only borrow. The engine's
defaults apply: a restart costs 600 s and a checkpoint written on notice takes 60 s.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from builders import DAY, H100, HOUR, T0, cluster, contract, engine, job
from cotenant.cluster.state import Health
from cotenant.engine.core import Engine
from cotenant.model.contracts import Ramp
from cotenant.model.errors import Conflict
from cotenant.model.jobs import Constraint, JobState
from cotenant.twin.report import build_report
from cotenant.twin.runtime import simulate
from cotenant.twin.scenario import load_scenario

SMALL = cluster(nodes=4, per_rack=2, racks_per_block=2)  # 32 GPUs
BIG = cluster(nodes=16, per_rack=4, racks_per_block=2)  # 128 GPUs
RESTART = 600
CKPT_WRITE = 60


def of(events: list[dict[str, Any]], kind: str, job_id: str | None = None) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == kind and (job_id is None or e.get("job") == job_id)]


def at(events: list[dict[str, Any]], kind: str, job_id: str) -> list[int]:
    """Times (relative to T0) of one job's events of one kind."""
    return [e["t"] - T0 for e in of(events, kind, job_id)]


def node_gpus_by_tenant(eng: Engine) -> dict[str, list[int]]:
    st = eng.state
    return {t: [int(x) for x in st.tenant_gpus[st.tenant_index(t)]] for t in st.tenants}


# -- one job ------------------------------------------------------------------------------------


def test_a_job_runs_and_completes_at_submit_plus_duration() -> None:
    ev: list[dict[str, Any]] = []
    eng = engine(SMALL, [contract("A", 16)], events=ev)
    eng.submit(job("a1", "A", 8, duration_s=HOUR, submit_s=T0 + 100))
    eng.run(T0 + DAY)
    run = eng.jobs["a1"]
    assert run.state is JobState.COMPLETED
    assert (run.first_start_s, run.end_s) == (T0 + 100, T0 + 100 + HOUR)
    assert at(ev, "place", "a1") == [100] and at(ev, "end", "a1") == [100 + HOUR]
    assert of(ev, "place", "a1")[0]["borrowed"] is False
    assert eng.ledger.gpu_seconds(tenant="A") == 8 * HOUR
    assert eng.acct.tenants["A"].used_gpu_s == 8 * HOUR
    assert eng.state.allocated_gpus() == 0
    eng.state.check_invariants()


# -- gangs --------------------------------------------------------------------------------------


def test_a_gang_waits_for_all_its_gpus_and_then_starts_whole() -> None:
    """16 GPUs are asked for while 12 are free (4 on node 2, all of node 3): nothing starts
    until the 4-GPU job on node 2 ends, then all 16 start at once."""
    ev: list[dict[str, Any]] = []
    eng = engine(SMALL, tenants=["B"], events=ev)
    eng.submit(job("f16", "B", 16, duration_s=10 * HOUR))
    eng.submit(job("f4", "B", 4, duration_s=HOUR))
    eng.submit(job("gang", "B", 16, submit_s=T0 + 60, constraint=Constraint.ANY))
    eng.run(T0 + HOUR - 1)
    assert int(eng.state.free.sum()) == 12
    assert eng.jobs["gang"].state is JobState.PENDING
    assert eng.jobs["gang"].placement is None
    assert of(ev, "place", "gang") == []
    eng.run(T0 + HOUR)
    assert at(ev, "place", "gang") == [HOUR]
    p = eng.jobs["gang"].placement
    assert p is not None and p.total_gpus == 16 and p.nodes == (2, 3)


# -- reclaim ------------------------------------------------------------------------------------


def lease_with_borrower(ev: list[dict[str, Any]], grace: int = 300) -> Engine:
    """B borrows the whole cluster at T0 (10 h of work, checkpoint every hour); at T0 + 2.5 h
    A asks for 16 GPUs, inside its commitment of 16."""
    eng = engine(SMALL, [contract("A", 16, grace=grace)], tenants=["B"], events=ev)
    eng.submit(job("b1", "B", 32, duration_s=10 * HOUR, checkpoint_interval_s=HOUR))
    eng.submit(job("a1", "A", 16, duration_s=HOUR, submit_s=T0 + 9000))
    return eng


def run_length(work_s: int, every: int) -> int:
    """Wall time of ``work_s`` of work checkpointed every ``every`` s (no write after the last)."""
    return work_s + (work_s - 1) // every * CKPT_WRITE


def test_a_lender_reclaims_its_capacity_within_the_grace_period() -> None:
    ev: list[dict[str, Any]] = []
    eng = lease_with_borrower(ev)
    eng.run(T0 + 9000)
    [reclaim] = of(ev, "reclaim", "b1")
    assert reclaim["t"] == T0 + 9000 and reclaim["deadline"] == T0 + 9300
    assert reclaim["beneficiary"] == "a1" and reclaim["rule"] == "reclaim-for-entitlement"
    assert eng.jobs["b1"].state is JobState.RECLAIMING
    assert eng.why("a1")[0] == "waiting-for-reclaim"

    eng.run(T0 + 9299)
    assert eng.jobs["b1"].state is JobState.RECLAIMING and eng.jobs["a1"].state is JobState.PENDING
    eng.run(T0 + 9300)
    assert at(ev, "preempt", "b1") == [9300]
    assert at(ev, "place", "a1") == [9300]
    assert eng.jobs["a1"].placement is not None and eng.jobs["a1"].placement.total_gpus == 16
    assert eng.jobs["b1"].state is JobState.PENDING  # requeued
    # The checkpoint on notice is written over the last minute before the deadline: it holds
    # the work done by 9240 s, which is 9240 s less two periodic writes of 60 s.
    saved = 9240 - 2 * CKPT_WRITE
    assert eng.jobs["b1"].work_saved_s == saved
    assert of(ev, "preempt", "b1")[0]["lost_s"] == CKPT_WRITE

    eng.run(T0 + DAY)
    # b1 resumes when a1 ends, pays the restart, and does only the work it had not saved.
    a1_end = 9300 + HOUR
    assert at(ev, "place", "b1") == [0, a1_end]
    b1_end = a1_end + RESTART + run_length(10 * HOUR - saved, HOUR)
    assert at(ev, "end", "b1") == [b1_end]
    assert eng.jobs["b1"].state is JobState.COMPLETED and eng.jobs["b1"].preemptions == 1
    assert eng.acct.tenants["A"].violation_s == 0
    assert eng.ledger.gpu_seconds(tenant="B") == 32 * (9300 + b1_end - a1_end)


@pytest.mark.parametrize(
    ("grace", "saved", "lost"),
    [
        # Written on notice between 9240 s and 9300 s: the work done by 9240 s is safe.
        pytest.param(300, 9240 - 2 * CKPT_WRITE, CKPT_WRITE, id="grace-holds-a-checkpoint-write"),
        # 30 s is too short to write one: the second periodic checkpoint (2 h of work, written
        # by 7320 s) is what is left, and the 1710 s of work since then are lost.
        pytest.param(30, 2 * HOUR, 9030 - 2 * (HOUR + CKPT_WRITE), id="grace-too-short"),
    ],
)
def test_work_saved_on_preemption(grace: int, saved: int, lost: int) -> None:
    ev: list[dict[str, Any]] = []
    eng = lease_with_borrower(ev, grace)
    eng.run(T0 + 9000 + grace)
    assert at(ev, "preempt", "b1") == [9000 + grace]
    assert eng.jobs["b1"].work_saved_s == saved
    assert of(ev, "preempt", "b1")[0]["lost_s"] == lost
    assert eng.jobs["b1"].lost_gpu_s == 32 * lost


@pytest.mark.parametrize(
    ("b_every", "c_every", "victim"),
    [
        # At T0 + 2900 s, a checkpoint every 1000 s leaves under 1000 s unsaved; every 3000 s,
        # all 2900 s are unsaved.
        pytest.param(1000, 3000, "b", id="b-loses-less"),
        pytest.param(3000, 1000, "c", id="c-loses-less"),
    ],
)
def test_the_victim_is_the_borrower_that_loses_least_work(
    b_every: int, c_every: int, victim: str
) -> None:
    ev: list[dict[str, Any]] = []
    eng = engine(SMALL, [contract("A", 16)], tenants=["B", "C"], events=ev)
    eng.submit(job("b", "B", 16, duration_s=DAY, checkpoint_interval_s=b_every))
    eng.submit(job("c", "C", 16, duration_s=DAY, checkpoint_interval_s=c_every))
    eng.submit(job("a", "A", 16, submit_s=T0 + 2900))
    eng.run(T0 + 2900 + 300)
    assert [e["job"] for e in of(ev, "reclaim")] == [victim]
    assert [e["job"] for e in of(ev, "preempt")] == [victim]
    survivor = "c" if victim == "b" else "b"
    assert eng.jobs[survivor].state is JobState.RUNNING
    a = eng.jobs["a"].placement
    assert a is not None and list(a.nodes) == of(ev, "place", victim)[0]["nodes"]


# -- isolation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rivals", "b_nodes", "c_nodes"),
    [
        pytest.param(("B",), [1], [0], id="rivals-take-separate-nodes"),
        pytest.param((), [0], [1], id="without-isolation-best-fit-shares-the-node"),
    ],
)
def test_rivals_never_share_a_node(
    rivals: tuple[str, ...], b_nodes: list[int], c_nodes: list[int]
) -> None:
    ev: list[dict[str, Any]] = []
    eng = engine(SMALL, [contract("A", 16, rivals=rivals)], tenants=["B", "C"], events=ev)
    eng.submit(job("a", "A", 4))
    eng.submit(job("b", "B", 4, submit_s=T0 + 1))
    eng.submit(job("c", "C", 4, submit_s=T0 + 2))
    eng.run(T0 + 10)
    assert of(ev, "place", "a")[0]["nodes"] == [0]
    assert of(ev, "place", "b")[0]["nodes"] == b_nodes
    held = node_gpus_by_tenant(eng)
    shared = [n for n in range(4) if held["A"][n] and held["B"][n]]
    assert shared == ([] if rivals else [0])
    # C is nobody's rival: it takes the fullest node that holds it, next to A or B.
    assert of(ev, "place", "c")[0]["nodes"] == c_nodes


@pytest.mark.parametrize(
    ("rivals", "b_nodes"),
    [
        pytest.param(("B",), None, id="rival-waits"),
        pytest.param((), [0], id="non-rival-takes-the-room"),
    ],
)
def test_a_borrower_never_takes_room_beside_a_rival(
    rivals: tuple[str, ...], b_nodes: list[int] | None
) -> None:
    """A's four 6-GPU jobs leave 2 free GPUs on every node: the only room is beside A."""
    ev: list[dict[str, Any]] = []
    eng = engine(SMALL, [contract("A", 32, rivals=rivals)], tenants=["B"], events=ev)
    for i in range(4):
        eng.submit(job(f"a{i}", "A", 6, duration_s=DAY))
    eng.submit(job("b", "B", 2, submit_s=T0 + 1))
    eng.run(T0 + 10)
    assert sorted(n for i in range(4) for n in of(ev, "place", f"a{i}")[0]["nodes"]) == [0, 1, 2, 3]
    placed = of(ev, "place", "b")
    assert (placed[0]["nodes"] if placed else None) == b_nodes


# -- cancel --------------------------------------------------------------------------------------


def test_cancel_frees_the_gpus_for_the_next_job() -> None:
    ev: list[dict[str, Any]] = []
    eng = engine(SMALL, tenants=["B"], events=ev)
    eng.submit(job("x1", "B", 32, duration_s=10 * HOUR))
    eng.submit(job("x2", "B", 32, duration_s=HOUR))
    eng.submit(job("x3", "B", 8, submit_s=T0 + HOUR))  # an event at T0 + 1 h
    eng.run(T0 + HOUR)
    assert eng.clock.now() == T0 + HOUR
    eng.cancel("x1")
    eng.step(T0 + HOUR)  # the live loop steps within a second of an input
    assert eng.jobs["x1"].state is JobState.CANCELLED and eng.jobs["x1"].end_s == T0 + HOUR
    assert at(ev, "place", "x2") == [HOUR]
    assert eng.ledger.gpu_seconds(tenant="B") == 32 * HOUR
    eng.cancel("x3")  # still pending: leaves the queue and never runs
    eng.run(T0 + DAY)
    assert of(ev, "place", "x3") == []
    assert eng.jobs["x3"].state is JobState.CANCELLED
    with pytest.raises(Conflict):
        eng.cancel("x2")  # already completed
    assert eng.ledger.gpu_seconds(tenant="B") == eng.acct.tenants["B"].used_gpu_s == 64 * HOUR
    eng.state.check_invariants()


def test_run_until_moves_the_simulated_clock_to_until() -> None:
    eng = engine(SMALL, tenants=["B"])
    eng.submit(job("x1", "B", 32, duration_s=10 * HOUR))
    eng.run(T0 + HOUR)
    assert eng.clock.now() == T0 + HOUR


def test_cancel_after_run_until_meters_what_accounting_counted() -> None:
    eng = engine(SMALL, tenants=["B"])
    eng.submit(job("x1", "B", 32, duration_s=10 * HOUR))
    eng.run(T0 + HOUR)
    eng.cancel("x1")
    eng.run(T0 + 2 * HOUR)
    assert eng.ledger.gpu_seconds() == eng.acct.tenants["B"].used_gpu_s == 32 * HOUR


def test_run_after_cancel_schedules_the_waiting_job() -> None:
    ev: list[dict[str, Any]] = []
    eng = engine(SMALL, tenants=["B"], events=ev)
    eng.submit(job("x1", "B", 32, duration_s=10 * HOUR))
    eng.submit(job("x2", "B", 32, duration_s=HOUR))
    eng.submit(job("tick", "B", 1, duration_s=1, submit_s=T0 + HOUR))  # puts the clock at 1 h
    eng.run(T0 + HOUR)
    eng.cancel("x1")
    eng.run(T0 + 2 * HOUR)
    assert at(ev, "place", "x2") == [HOUR]


# -- notice --------------------------------------------------------------------------------------


def test_notice_with_a_linear_ramp_lowers_the_entitlement_over_time() -> None:
    """64 GPUs, 10 h notice: 57 after 1 h, 32 after 5 h, none after 10 h. A's 64-GPU run is
    no longer covered once the entitlement falls below 64, so it is demoted to borrowed."""
    ev: list[dict[str, Any]] = []
    a = contract("A", 64, notice_period=10 * HOUR, ramp=Ramp.LINEAR)
    eng = engine(BIG, [a, contract("L", all_available=True)], events=ev)
    eng.submit(job("a", "A", 64, duration_s=DAY))
    eng.run(T0)
    assert eng.entitlements_now() == {"A": 64, "L": 64}
    eng.give_notice("A", T0)
    got = {}
    for h in (1, 2, 5, 9, 10, 11):  # the engine re-reads a linear ramp every tick (1 h)
        eng.run(T0 + h * HOUR)
        got[h] = eng.entitlements_now()["A"]
    assert got == {1: 57, 2: 51, 5: 32, 9: 6, 10: 0, 11: 0}
    # The all-available tenant's base ignores the rival's ramp until its notice ends.
    assert eng.entitlements_now()["L"] == 128
    assert [e["borrowed"] for e in of(ev, "retag", "a")] == [True]
    assert at(ev, "retag", "a") == [HOUR]
    with pytest.raises(Conflict):
        eng.give_notice("A", T0 + 12 * HOUR)


def test_a_step_ramp_holds_the_entitlement_until_the_end() -> None:
    eng = engine(BIG, [contract("A", 64, notice_period=10 * HOUR, ramp=Ramp.STEP)])
    eng.give_notice("A", T0)
    eng.run(T0 + 10 * HOUR - 1)
    eng.step(T0 + 10 * HOUR - 1)
    assert eng.entitlements_now()["A"] == 64
    eng.run(T0 + 10 * HOUR)
    assert eng.entitlements_now()["A"] == 0


# -- why -----------------------------------------------------------------------------------------


def why_own_jobs_hold_capacity() -> tuple[Engine, str]:
    """Four 6-GPU jobs leave 2 GPUs on each node: an 8-GPU job inside A's headroom fits nowhere
    and there is no borrower to reclaim."""
    eng = engine(SMALL, [contract("A", 32)])
    for i in range(4):
        eng.submit(job(f"a{i}", "A", 6))
    eng.submit(job("x", "A", 8, submit_s=T0 + 1))
    return eng, "x"


def why_no_lendable_capacity() -> tuple[Engine, str]:
    eng = engine(SMALL, [contract("A", 32, lend=False)], tenants=["B"])
    eng.submit(job("b", "B", 8))
    return eng, "b"


def why_waiting_for_reclaim() -> tuple[Engine, str]:
    eng = engine(SMALL, [contract("A", 16)], tenants=["B"])
    eng.submit(job("b", "B", 32, duration_s=DAY))
    eng.submit(job("x", "A", 8, submit_s=T0 + 1))
    return eng, "x"


def why_over_entitlement() -> tuple[Engine, str]:
    """A fills its 8 GPUs on node 0 and asks for 12 more, beyond its headroom. B borrows 4 GPUs
    on node 1 and all of node 2: 12 GPUs are free and lendable, but no rack holds a whole node
    plus a 4-GPU remainder (the job requires one rack)."""
    eng = engine(SMALL, [contract("A", 8)], tenants=["B"])
    eng.submit(job("a", "A", 8))
    eng.submit(job("b1", "B", 4, submit_s=T0 + 1))
    eng.submit(job("b2", "B", 8, submit_s=T0 + 2))
    eng.submit(job("x", "A", 12, submit_s=T0 + 3, constraint=Constraint.RACK))
    return eng, "x"


def why_reserved_for_earlier() -> tuple[Engine, str]:
    eng = engine(SMALL, policy="fifo-backfill", tenants=["B"])
    eng.submit(job("f", "B", 24, duration_s=2 * HOUR))
    eng.submit(job("big", "B", 32, submit_s=T0 + 1))
    eng.submit(job("x", "B", 8, duration_s=5 * HOUR, submit_s=T0 + 2))
    return eng, "x"


def why_queued_behind() -> tuple[Engine, str]:
    eng = engine(SMALL, policy="fifo", tenants=["B"])
    eng.submit(job("f", "B", 24, duration_s=2 * HOUR))
    eng.submit(job("big", "B", 32, submit_s=T0 + 1))
    eng.submit(job("x", "B", 8, duration_s=60, submit_s=T0 + 2))
    return eng, "x"


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        pytest.param(why_own_jobs_hold_capacity, "own-jobs-hold-capacity", id="own-jobs"),
        pytest.param(why_no_lendable_capacity, "no-lendable-capacity", id="nothing-lent"),
        pytest.param(why_waiting_for_reclaim, "waiting-for-reclaim", id="reclaiming"),
        pytest.param(why_over_entitlement, "over-entitlement", id="over-entitlement"),
        pytest.param(why_reserved_for_earlier, "reserved-for-earlier-job", id="backfill-reserve"),
        pytest.param(why_queued_behind, "queued-behind", id="strict-fifo"),
    ],
)
def test_why_gives_a_reason_code_for_a_pending_job(setup: Any, reason: str) -> None:
    eng, job_id = setup()
    eng.run(T0 + 10)
    assert eng.jobs[job_id].state is JobState.PENDING
    code, _detail = eng.why(job_id)
    assert code == reason


def test_why_for_a_job_not_pending_gives_its_state() -> None:
    eng = engine(SMALL, [contract("A", 16)])
    eng.submit(job("a", "A", 8))
    eng.submit(job("huge", "A", 12, constraint=Constraint.NODE))
    eng.run(T0 + 10)
    assert eng.why("a")[0] == "running"
    assert eng.why("huge") == ("failed", "12 GPUs cannot fit inside one node")


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param(job("huge", "B", 64), id="larger-than-the-cluster"),
        pytest.param(job("huge", "B", 12, constraint=Constraint.NODE), id="larger-than-a-node"),
    ],
)
def test_contract_policy_rejects_a_borrowers_impossible_job(spec: Any) -> None:
    eng = engine(SMALL, [contract("A", 16)], tenants=["B"])
    eng.submit(spec)
    eng.run(T0 + 10)
    assert eng.jobs["huge"].state is JobState.FAILED
    assert eng.jobs["huge"].reason == "too-large"


def test_contract_policy_rejects_an_impossible_job_behind_one_beyond_its_headroom() -> None:
    """Once a job of the tenant does not fit its headroom, the rest of its queue can only
    borrow; an impossible job there is still rejected, not left pending (found by the
    providers' property test)."""
    eng = engine(SMALL, [contract("A", 16), contract("B", 8)])
    eng.submit(job("b", "B", 8, duration_s=DAY))
    eng.run(T0 + 1)
    eng.submit(job("x", "B", 16, submit_s=T0 + 1))
    eng.submit(job("zbig", "B", 64, submit_s=T0 + 1))  # queued behind x
    eng.run(T0 + 10)
    assert eng.jobs["zbig"].state is JobState.FAILED
    assert eng.jobs["zbig"].reason == "too-large"


# -- determinism ---------------------------------------------------------------------------------


def decision_log() -> list[str]:
    lines: list[str] = []

    def hook(eng: Engine) -> None:
        eng.sinks.append(lambda e: lines.append(json.dumps(e, sort_keys=True)))

    simulate(load_scenario("small-lease"), engine_hook=hook)
    return lines


def test_same_seed_gives_the_same_run() -> None:
    first, second = decision_log(), decision_log()
    assert len(first) > 100
    assert {json.loads(x)["event"] for x in first} >= {"submit", "place", "reclaim", "preempt"}
    assert first == second


# -- fifo and EASY backfill ----------------------------------------------------------------------


def backfill_case(policy: str, ev: list[dict[str, Any]]) -> Engine:
    """f holds 24 of 32 GPUs for 2 h; big (32 GPUs, 1 h) is blocked behind it until then.
    long (8 GPUs, 5 h) would delay big; short (8 GPUs, 1 h) ends before big can start."""
    eng = engine(SMALL, policy=policy, tenants=["B"], events=ev)
    eng.submit(job("f", "B", 24, duration_s=2 * HOUR))
    eng.submit(job("big", "B", 32, duration_s=HOUR, submit_s=T0 + 1))
    eng.submit(job("long", "B", 8, duration_s=5 * HOUR, submit_s=T0 + 2))
    eng.submit(job("short", "B", 8, duration_s=HOUR, submit_s=T0 + 3))
    eng.run(T0 + DAY)
    return eng


@pytest.mark.parametrize(
    ("policy", "starts"),
    [
        pytest.param(
            "fifo-backfill",
            {"f": 0, "big": 2 * HOUR, "long": 3 * HOUR, "short": 3},
            id="easy-backfill-short-job-goes-first",
        ),
        pytest.param(
            "fifo",
            {"f": 0, "big": 2 * HOUR, "long": 3 * HOUR, "short": 3 * HOUR},
            id="strict-fifo-never-backfills",
        ),
    ],
)
def test_backfill_never_delays_the_reserved_job(policy: str, starts: dict[str, int]) -> None:
    ev: list[dict[str, Any]] = []
    eng = backfill_case(policy, ev)
    assert {j: at(ev, "place", j) for j in starts} == {j: [s] for j, s in starts.items()}
    reasons = {e["job"]: e["reason"] for e in of(ev, "place")}
    assert reasons["short"] == ("backfilled" if policy == "fifo-backfill" else "placed")
    assert all(eng.jobs[j].state is JobState.COMPLETED for j in starts)


def test_a_reservation_counts_only_ends_on_the_kind_the_job_needs() -> None:
    """Three H100 nodes (one free) and two A100 nodes. The 24-GPU H100 head waits for the
    H100 run ending in 1,000 s, not for the A100 run ending in 100 s (its GPUs are no room
    for it): so an 8-GPU H100 job of 500 s ends before the head could start, and backfills
    now. Counting the A100 run's end, the reservation fell at 100 s and held it back."""
    from cotenant.cluster.topology import ClusterSpec, NodeGroup, Topology

    a100 = "A100-SXM-80GB"
    topo = Topology(
        ClusterSpec("two-kinds", (NodeGroup(H100, 3, 3, 1), NodeGroup(a100, 2, 2, 1)))
    )
    ev: list[dict[str, Any]] = []
    eng = engine(topo, policy="fifo-backfill", tenants=["A"], events=ev)
    eng.submit(job("ra", "A", 16, duration_s=1000, accelerator=H100))
    eng.submit(job("rb", "A", 16, duration_s=100, accelerator=a100))
    eng.submit(job("head", "A", 24, submit_s=T0 + 1, accelerator=H100))
    eng.submit(job("c", "A", 8, duration_s=500, submit_s=T0 + 2, accelerator=H100))
    eng.run(T0 + DAY)
    assert at(ev, "place", "c") == [2]  # (seconds from the start)
    assert [e["reason"] for e in of(ev, "place", "c")] == ["backfilled"]
    assert at(ev, "place", "head") == [1000]


# -- the guarantee metric can fail -------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "violation_s", "a_start"),
    [
        pytest.param("contract", 0, HOUR + 300, id="contract-reclaims-within-grace"),
        pytest.param(
            "fifo-backfill", 10 * HOUR - HOUR - 300, 10 * HOUR, id="fifo-backfill-makes-a-wait"
        ),
    ],
)
def test_a_borrower_hogging_the_cluster_violates_the_guarantee_only_without_contracts(
    policy: str, violation_s: int, a_start: int
) -> None:
    """B borrows all 128 GPUs for 10 h; one hour in, A asks for 32 of its committed 64."""
    ev: list[dict[str, Any]] = []
    eng = engine(BIG, [contract("A", 64)], policy=policy, tenants=["B"], events=ev)
    eng.submit(job("hog", "B", 128, duration_s=10 * HOUR))
    eng.submit(job("a", "A", 32, submit_s=T0 + HOUR))
    eng.run(T0 + DAY)
    assert at(ev, "place", "a") == [a_start]
    assert eng.acct.tenants["A"].violation_s == violation_s
    assert (eng.acct.tenants["A"].violation_jobs > 0) == (violation_s > 0)


# -- node health ---------------------------------------------------------------------------------


def test_no_new_work_lands_on_a_down_node() -> None:
    ev: list[dict[str, Any]] = []
    eng = engine(SMALL, [contract("A", 32)], events=ev)
    eng.set_node_health(0, Health.DOWN, "test", T0)
    eng.submit(job("a", "A", 8))
    eng.submit(job("b", "A", 24, submit_s=T0 + 1, constraint=Constraint.ANY))
    eng.run(T0 + 10)
    assert of(ev, "place", "a")[0]["nodes"] == [1]
    assert eng.jobs["b"].state is JobState.PENDING  # 24 GPUs on 3 healthy nodes, 8 taken
    eng.set_node_health(0, Health.HEALTHY, "test", T0 + 10)
    eng.step(T0 + 10)
    assert of(ev, "place", "b")[0]["nodes"] == [0, 2, 3]


# -- reclaims, promises and reservations ------------------------------------------------------


def test_a_job_that_leaves_its_entitlement_during_the_grace_is_not_counted_late() -> None:
    """x (16 GPUs, all of its tenant's commitment) has a borrower reclaimed for it; notice is
    then given with a 1 h linear ramp, so by the deadline x is beyond its entitlement (15) and
    only borrows. It waits for the borrower, but no guarantee was broken."""
    ev: list[dict[str, Any]] = []
    terms = {"notice_period": HOUR, "ramp": Ramp.LINEAR}
    eng = engine(SMALL, [contract("lessee", 16, **terms)], tenants=["hog"], events=ev)
    eng.submit(job("hog1", "hog", 32, duration_s=HOUR))
    eng.submit(job("x", "lessee", 16, submit_s=T0 + 1))
    eng.run(T0 + 1)
    assert [e["beneficiary"] for e in of(ev, "reclaim")] == ["x"]
    eng.give_notice("lessee", T0 + 100)
    eng.run(T0 + DAY)
    assert eng.jobs["x"].state is JobState.COMPLETED
    assert of(ev, "place", "x")[0]["borrowed"] is True
    assert eng.acct.tenants["lessee"].violation_s == 0


def test_a_reservation_does_not_outlive_the_job_it_was_for() -> None:
    """A holds 8 of its 16. big (12) is beyond A's headroom and gets a reservation until a1
    ends at 1 h; small (5) fits the headroom and the free GPUs but is held for big. Then big
    starts at once on borrowed GPUs, and small still waits the whole hour."""
    ev: list[dict[str, Any]] = []
    eng = engine(SMALL, [contract("A", 16)], events=ev)
    eng.submit(job("a1", "A", 8, duration_s=HOUR))
    eng.submit(job("big", "A", 12, duration_s=2 * HOUR, submit_s=T0 + 1))
    eng.submit(job("small", "A", 5, duration_s=2 * HOUR, submit_s=T0 + 1))
    eng.run(T0 + DAY)
    assert at(ev, "place", "big") == [1]
    assert at(ev, "place", "small") == [1]  # today: [3600]
    assert eng.acct.tenants["A"].violation_s == 0  # today: 3299


def test_a_job_served_by_a_reclaim_runs_inside_the_entitlement() -> None:
    """C borrows 3 nodes; A's 16-GPU gang (all of its commitment) needs a free rack, so C is
    reclaimed for it. Meanwhile A's 4-GPU job starts borrowed on the free node and is promoted
    to own GPUs, eating the promised headroom: the 16-GPU job starts as borrowed."""
    ev: list[dict[str, Any]] = []
    eng = engine(SMALL, [contract("A", 16)], tenants=["C"], events=ev)
    eng.submit(job("c1", "C", 24, duration_s=DAY))
    eng.submit(job("big", "A", 16, duration_s=2 * HOUR, submit_s=T0 + 1))
    eng.submit(job("small", "A", 4, duration_s=2 * HOUR, submit_s=T0 + 2))
    eng.run(T0 + HOUR)
    assert at(ev, "place", "big") == [301]
    assert of(ev, "place", "big")[0]["borrowed"] is False
    assert (eng.owned["A"], eng.borrowed["A"]) == (16, 4)  # today: (4, 16)


def test_a_promise_keeps_its_free_gpus_from_a_later_reclaim() -> None:
    """Found replaying Philly with loaded quotas (issue 14). One node of 8 GPUs: borrower B
    holds 7, one is free. E (entitled to 4) needs 3 reclaimed and the free one: promised at
    10 s, due by 310 s. F (entitled to 1) reclaims one more at 50 s (due 350 s). At the next
    cycle F must not start on the free GPU (E's), trading it for the GPU F's own reclaim
    frees at 350 s: E would start at 350 s, 40 s past its grace."""
    ev: list[dict[str, Any]] = []
    one_node = cluster(nodes=1, per_rack=1, racks_per_block=1)
    eng = engine(one_node, [contract("E", 4), contract("F", 1)], tenants=["B"], events=ev)
    for i in range(7):
        eng.submit(job(f"b{i}", "B", 1, duration_s=DAY, submit_s=T0 + i))
    eng.submit(job("e", "E", 4, duration_s=HOUR, submit_s=T0 + 10))
    eng.submit(job("f", "F", 1, duration_s=HOUR, submit_s=T0 + 50))
    eng.submit(job("b-late", "B", 1, duration_s=HOUR, submit_s=T0 + 60))  # another cycle
    eng.run(T0 + HOUR)
    assert len(of(ev, "reclaim")) == 4
    assert at(ev, "place", "e") == [310]
    assert at(ev, "place", "f") == [350]  # its own reclaim: 300 s after it was owed
    assert eng.acct.tenants["E"].violation_s == 0  # before: 40
    assert eng.acct.tenants["F"].violation_s == 0


def test_the_report_accounts_for_every_submitted_job() -> None:
    """submitted = done + running + pending + rejected + failed + cancelled, per tenant;
    a job cancelled mid-run and one too large to ever fit are counted where they are."""
    eng = engine(SMALL, [contract("A", 16)], tenants=["B"])
    eng.submit(job("done", "A", 8, duration_s=HOUR))
    eng.submit(job("running", "A", 8, duration_s=DAY))
    eng.submit(job("waits", "A", 32, duration_s=HOUR, submit_s=T0 + 1))  # all 32
    eng.submit(job("huge", "B", 64))  # more than the cluster: rejected
    eng.submit(job("gone", "B", 8, duration_s=DAY))
    eng.run(T0 + 2 * HOUR)
    eng.cancel("gone")
    eng.run(T0 + 3 * HOUR)
    books = build_report(eng, "t", T0, T0 + 3 * HOUR, 1.0).tenants
    assert books["A"]["jobs"] == {
        "submitted": 3, "completed": 1, "running": 1, "pending": 1,
        "rejected": 0, "failed": 0, "cancelled": 0, "lost": 0,
    }  # fmt: skip
    assert books["B"]["jobs"] == {
        "submitted": 2, "completed": 0, "running": 0, "pending": 0,
        "rejected": 1, "failed": 0, "cancelled": 1, "lost": 0,
    }  # fmt: skip


def test_a_promise_the_policy_no_longer_restates_is_dropped() -> None:
    """A (all available) is promised the whole cluster for a 32-GPU job, reclaimed from
    borrowers; a node fails, A's entitlement falls below the job and the policy stops
    serving it: its promise holds no room from that cycle on (it was kept, stale, and the
    guarantee monitor counted its room as taken)."""
    from cotenant.cluster.state import Health

    eng = engine(SMALL, [contract("A", all_available=True), contract("B", 0)])
    for n in range(4):
        eng.submit(job(f"b{n}", "B", 8, duration_s=DAY))
    eng.run(T0 + 1)
    assert all(eng.jobs[f"b{n}"].state is JobState.RUNNING for n in range(4))
    eng.submit(job("a", "A", 32, submit_s=T0 + 10))
    eng.run(T0 + 20)
    a = eng.jobs["a"]
    assert a.claim.promise is not None and a.state is JobState.PENDING
    eng.at(T0 + 30, lambda now: eng.node_reported(0, Health.DOWN, "test", now))
    eng.run(T0 + 40)
    assert eng.book.entitled["A"] < 32
    assert a.claim.promise is None
