"""fifo (strict), sjf and las on small traces whose outcomes are worked out by hand.

The runs go through ``cotenant.twin.replay`` (a trace becomes a scenario; each policy runs
until every job has ended). Most use a *pooled* cluster: 1-GPU nodes all in one rack
and one block, so a gang of g GPUs fits exactly when g GPUs are free, wherever they
are: no topology. The engine's defaults apply: a restart costs 600 s and a checkpoint
written on notice takes 60 s.
"""

from __future__ import annotations

from typing import Any

import pytest

from builders import HOUR, MIN, T0, job
from cotenant.cluster.topology import ClusterSpec, Topology
from cotenant.engine.core import Engine
from cotenant.model.jobs import JobSpec, JobState
from cotenant.scheduler.decisions import Reason
from cotenant.scheduler.placement import find_placement
from cotenant.scheduler.policies import get_policy, policy_names
from cotenant.scheduler.policies.las import THRESHOLDS_GPU_S, LeastAttainedService
from cotenant.traces import Trace
from cotenant.twin.replay import pooled_cluster, replay_scenario, run_policy
from cotenant.twin.report import Report

RESTART = 600
CKPT_WRITE = 60


def trace_of(*jobs: JobSpec) -> Trace:
    ordered = tuple(sorted(jobs, key=lambda j: (j.submit_s, j.id)))
    return Trace("test", "test", ordered, {}, (), (), ())


def run(
    policy: str, cluster: ClusterSpec, *jobs: JobSpec
) -> tuple[Engine, Report, list[dict[str, Any]]]:
    """Replay the jobs under one policy; return the engine, its report and every event."""
    t = trace_of(*jobs)
    events: list[dict[str, Any]] = []
    sc = replay_scenario(t, cluster)
    engine, report = run_policy(sc, t.jobs, policy, hook=lambda e: e.sinks.append(events.append))
    return engine, report, events


def ends(engine: Engine) -> dict[str, int]:
    """Completion time of each job, in seconds after T0."""
    out = {}
    for jid, r in engine.jobs.items():
        assert r.state is JobState.COMPLETED and r.end_s is not None, jid
        out[jid] = r.end_s - T0
    return out


def starts(engine: Engine) -> dict[str, int]:
    return {jid: (r.first_start_s or 0) - T0 for jid, r in engine.jobs.items()}


def of(events: list[dict[str, Any]], kind: str, job_id: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == kind and e.get("job") == job_id]


def test_the_new_policies_are_registered() -> None:
    assert {"fifo", "sjf", "las", "fifo-backfill", "contract"} <= set(policy_names())
    assert "ORACLE" in get_policy("sjf").description


def test_a_pooled_cluster_has_no_topology() -> None:
    """Any free GPUs hold a gang: 3 GPUs scattered over 3 nodes take a 3-GPU job."""
    topo = Topology(pooled_cluster(8))
    free = topo.node_gpus.astype("int16").copy()
    free[[0, 2, 3, 5, 7]] = 0  # nodes 1, 4 and 6 are free
    p = find_placement(topo, free, free >= 0, 3)
    assert p is not None and p.nodes == (1, 4, 6)


# -- the exactness test -------------------------------------------------------------------------


def test_strict_fifo_on_a_pooled_cluster_matches_the_hand_computation() -> None:
    """4 GPUs, no topology, strict FIFO (the queue head blocks everything behind it).

    job  submit  GPUs  duration
    a       0     2     100
    b       0     3      50
    c      10     1      20
    d      20     4      30
    e      30     1     500
    f     200     2      10
    g     200     2      40

    t=0    a starts (2 free left). b needs 3: the head waits.
    t=10   c arrives; 2 GPUs are free but c is behind b (strict FIFO): waits.
    t=20   d arrives, t=30 e arrives: both behind b.
    t=100  a ends: 4 free. b starts (1 left), c starts (0 left). d needs 4: head.
    t=120  c ends: 1 free; d still needs 4; e (1 GPU) waits behind d.
    t=150  b ends: 4 free. d starts (0 left).
    t=180  d ends: 4 free. e starts (3 left).
    t=200  f and g arrive (f first by id). f starts (1 left); g needs 2: head.
    t=210  f ends: 3 free. g starts.
    t=250  g ends.  t=680  e ends.

    ends:  a 100, b 150, c 120, d 180, e 680, f 210, g 250
    JCT:   a 100, b 150, c 110, d 160, e 650, f 10, g 50   (sum 1230)
    queue: a 0, b 100, c 90, d 130, e 150, f 0, g 10        (sum 480)
    """
    engine, report, _ = run(
        "fifo",
        pooled_cluster(4),
        job("a", "T", 2, 100, T0),
        job("b", "T", 3, 50, T0),
        job("c", "T", 1, 20, T0 + 10),
        job("d", "T", 4, 30, T0 + 20),
        job("e", "T", 1, 500, T0 + 30),
        job("f", "T", 2, 10, T0 + 200),
        job("g", "T", 2, 40, T0 + 200),
    )
    assert ends(engine) == {"a": 100, "b": 150, "c": 120, "d": 180, "e": 680, "f": 210, "g": 250}
    assert starts(engine) == {"a": 0, "b": 100, "c": 100, "d": 150, "e": 180, "f": 200, "g": 210}
    assert report.extra["jct_s"]["avg"] == pytest.approx(1230 / 7)
    assert report.extra["jct_s"]["p50"] == 110
    assert report.extra["queue_delay_s"]["avg"] == pytest.approx(480 / 7)
    assert report.extra["makespan_s"] == 680
    assert report.end_s - report.start_s == 680
    # GPU-seconds: 2*100 + 3*50 + 1*20 + 4*30 + 1*500 + 2*10 + 2*40 = 1090 of 4*680
    assert report.utilization == pytest.approx(1090 / (4 * 680))
    assert report.extra["preemptions"] == 0


# -- sjf ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "order"),
    [
        pytest.param("fifo", ["x-long", "y-short", "z-mid"], id="fifo-by-submit"),
        pytest.param("sjf", ["y-short", "z-mid", "x-long"], id="sjf-by-duration"),
    ],
)
def test_sjf_orders_the_queue_by_duration(policy: str, order: list[str]) -> None:
    """A 4-GPU blocker holds the pool until t=100; three whole-pool jobs queue behind it,
    submitted longest first. FIFO runs them as submitted, SJF shortest first."""
    engine, _, _ = run(
        policy,
        pooled_cluster(4),
        job("blocker", "T", 4, 100, T0),
        job("x-long", "T", 4, 300, T0 + 1),
        job("y-short", "T", 4, 100, T0 + 2),
        job("z-mid", "T", 4, 200, T0 + 3),
    )
    s = starts(engine)
    assert sorted(order, key=s.__getitem__) == order
    assert s[order[0]] == 100


def test_sjf_starts_whatever_fits_and_never_preempts() -> None:
    """Shortest first, but a job that does not fit does not block a longer one that does."""
    engine, report, _ = run(
        "sjf",
        pooled_cluster(4),
        job("long", "T", 3, 1000, T0),
        job("short-big", "T", 4, 10, T0 + 1),
        job("mid-small", "T", 1, 50, T0 + 2),
    )
    s = starts(engine)
    assert s == {"long": 0, "mid-small": 2, "short-big": 1000}
    assert report.extra["preemptions"] == 0


# -- las ----------------------------------------------------------------------------------------


def test_las_preempts_a_long_running_job_for_a_new_short_one() -> None:
    """L (4 GPUs, 10 h) has 8 GPU-hours (28,800 GPU-s) of service at t=2h: queue 1.
    S (1 GPU, 30 min) arrives with none (queue 0) and does not fit: L is told to
    checkpoint and stops at 2h + 60 s; S starts then and ends 30 min later; L, requeued
    with its work saved at 2h, restarts when S has ended (it needs all 4 GPUs), pays the
    600 s restart and runs its last 8 h."""
    engine, report, events = run(
        "las",
        pooled_cluster(4),
        job("L", "T", 4, 10 * HOUR, T0),
        job("S", "T", 1, 30 * MIN, T0 + 2 * HOUR),
    )
    reclaim = of(events, "reclaim", "L")
    assert len(reclaim) == 1
    assert reclaim[0]["t"] - T0 == 2 * HOUR
    assert reclaim[0]["beneficiary"] == "S"
    assert reclaim[0]["rule"] == Reason.PREEMPT_LEAST_ATTAINED.value
    assert reclaim[0]["deadline"] - reclaim[0]["t"] == CKPT_WRITE
    s_start = 2 * HOUR + CKPT_WRITE
    s_end = s_start + 30 * MIN
    assert ends(engine) == {"S": s_end, "L": s_end + RESTART + 8 * HOUR}
    assert ends(engine)["S"] < ends(engine)["L"]
    assert engine.jobs["L"].preemptions == 1
    assert report.extra["preemptions"] == 1
    assert LeastAttainedService().queue_of(4 * 2 * HOUR) == 1


def test_las_protects_a_restarted_job_for_its_minimum_run() -> None:
    """After its restart L cannot be preempted again until it has worked 10 minutes past
    its 600 s restart cost: S2, arriving 5 minutes into the restart, waits that long
    (to the next 5-minute wake-up), then gets L's GPUs."""
    first_restart = 2 * HOUR + CKPT_WRITE + 30 * MIN  # S1 ends; L starts again
    engine, _, events = run(
        "las",
        pooled_cluster(4),
        job("L", "T", 4, 10 * HOUR, T0),
        job("S1", "T", 1, 30 * MIN, T0 + 2 * HOUR),
        job("S2", "T", 1, 30 * MIN, T0 + first_restart + 5 * MIN),
    )
    assert [e["t"] - T0 for e in of(events, "place", "L")][:2] == [0, first_restart]
    second = of(events, "reclaim", "L")[1]["t"] - T0
    protected_until = first_restart + RESTART + 10 * MIN
    assert protected_until <= second < protected_until + 5 * MIN
    assert ends(engine)["S2"] < ends(engine)["L"]


def test_las_jobs_in_the_same_queue_do_not_preempt_each_other() -> None:
    """Two equal 4-GPU jobs: B waits while A is in its own queue; once A has more service
    (a higher queue) B takes over, and so on. Each swap moves a job up a queue, so with
    3 queues there are at most 2 preemptions per job, not one every cycle."""
    engine, report, _ = run(
        "las",
        pooled_cluster(4),
        job("A", "T", 4, 10 * HOUR, T0),
        job("B", "T", 4, 10 * HOUR, T0 + MIN),
    )
    queues = len(THRESHOLDS_GPU_S) + 1
    assert 1 <= report.extra["preemptions"] <= 2 * (queues - 1)
    for r in engine.jobs.values():
        assert r.state is JobState.COMPLETED
        assert r.preemptions <= queues - 1


def test_las_rejects_bad_settings() -> None:
    from cotenant.model.errors import SpecError

    with pytest.raises(SpecError, match="increasing"):
        LeastAttainedService(thresholds_gpu_s=(100, 50))
    with pytest.raises(SpecError, match="wake_every_s"):
        LeastAttainedService(wake_every_s=0)
