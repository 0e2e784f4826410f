"""The Slurm backend on a real Slurm of 3 nodes with 8 fake GPUs each (tests/harness/slurm.py).

Cotenant schedules (the real engine on a wall clock at speed 1) and Slurm runs the
work. Each case checks what Slurm itself reports: the nodes a job ran on, when it
started and ended, the GPUs it held, the signals its processes received.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from builders import contract, finished, job, submit_command
from builders import drive as drive_until
from cotenant.backends.base import JobEnded, StartRequest
from cotenant.backends.slurm import SlurmBackend, expand_hostlist, read_cluster_spec
from cotenant.cluster.state import Health, Placement
from cotenant.cluster.topology import Topology
from cotenant.engine.clock import WallClock
from cotenant.engine.core import Engine
from cotenant.model.contracts import Contract
from cotenant.model.jobs import JobState
from cotenant.scheduler.policies import get_policy
from harness.slurm import LocalSlurm

# Slurm dispatches on a 1 s tick and notices a dead slurmd late.
drive = partial(drive_until, timeout_s=30.0)


@pytest.fixture
def cluster(slurm_cluster: LocalSlurm) -> Iterator[LocalSlurm]:
    """The session cluster, put back to all-idle after each test."""
    yield slurm_cluster
    slurm_cluster.reset()


@pytest.fixture
def topo(slurm_cluster: LocalSlurm) -> Topology:
    return Topology(read_cluster_spec(slurm_cluster.env))


def slurm_engine(
    cluster: LocalSlurm,
    topo: Topology,
    state_dir: Path,
    contracts: Iterable[Contract] = (),
    tenants: Iterable[str] = ("B",),
    policy: str = "fifo-backfill",
) -> tuple[Engine, SlurmBackend, list[dict[str, Any]]]:
    backend = SlurmBackend(topo, state_dir, env=cluster.env, adopt=False)
    eng = Engine(
        topo,
        list(contracts),
        get_policy(policy),
        backend,
        WallClock(),
        restart_cost_s=0,
        checkpoint_write_s=0,
        tenants=list(tenants),
    )
    events: list[dict[str, Any]] = []
    eng.sinks.append(events.append)
    return eng, backend, events


def slurm_state(backend: SlurmBackend, job_id: str, attempt: int = 1) -> str:
    runs = [r for r in backend.accounting() if (r.job_id, r.attempt) == (job_id, attempt)]
    return runs[0].state if runs else ""


def of(events: list[dict[str, Any]], kind: str, job_id: str | None = None) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == kind and (job_id is None or e.get("job") == job_id)]


def test_the_cluster_spec_is_imported_from_scontrol(topo: Topology) -> None:
    assert topo.node_names == ("node1", "node2", "node3")
    assert [int(g) for g in topo.node_gpus] == [8, 8, 8]


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        pytest.param("node2", ["node2"], id="one"),
        pytest.param("node[1-3]", ["node1", "node2", "node3"], id="range"),
        pytest.param(
            "node[1,3],gpu-a[08-10]",
            ["node1", "node3", "gpu-a08", "gpu-a09", "gpu-a10"],
            id="list-and-padding",
        ),
        pytest.param("r[1-2]n[1-2]", ["r1n1", "r1n2", "r2n1", "r2n2"], id="two-brackets"),
    ],
)
def test_host_lists_expand(expr: str, names: list[str]) -> None:
    assert expand_hostlist(expr) == names


# -- placement, gangs, accounting ---------------------------------------------------------------

CVD = 'echo "$CUDA_VISIBLE_DEVICES $SLURMD_NODENAME"; sleep 2'


@pytest.fixture(scope="module")
def three_jobs(
    slurm_cluster: LocalSlurm, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Engine, SlurmBackend, list[dict[str, Any]]]]:
    """a (8 GPUs) fills node1; b (3) and c (5) share node2, best fit; c exits 3."""
    topo = Topology(read_cluster_spec(slurm_cluster.env))
    eng, backend, ev = slurm_engine(slurm_cluster, topo, tmp_path_factory.mktemp("three"))
    submit_command(eng, "a", 8, CVD)
    submit_command(eng, "b", 3, CVD)
    submit_command(eng, "c", 5, CVD + "; exit 3")
    drive(eng, finished(eng))
    yield eng, backend, ev
    slurm_cluster.reset()


def test_jobs_run_on_the_nodes_cotenant_chose(
    three_jobs: tuple[Engine, SlurmBackend, list[dict[str, Any]]],
) -> None:
    eng, backend, ev = three_jobs
    chosen = {e["job"]: [eng.topo.node_names[n] for n in e["nodes"]] for e in of(ev, "place")}
    ran = {r.job_id: list(r.slurm_nodes) for r in backend.accounting()}
    assert chosen == {"a": ["node1"], "b": ["node2"], "c": ["node2"]}
    assert ran == chosen

    seen = {j: backend.log_paths(j, 1)[0].read_text().split() for j in "abc"}
    assert {j: (len(cvd.split(",")), node) for j, (cvd, node) in seen.items()} == {
        "a": (8, "node1"),
        "b": (3, "node2"),
        "c": (5, "node2"),
    }
    assert not set(seen["b"][0].split(",")) & set(seen["c"][0].split(","))  # Slurm's GRES

    assert {j: r.state for j, r in eng.jobs.items()} == {
        "a": JobState.COMPLETED,
        "b": JobState.COMPLETED,
        "c": JobState.FAILED,
    }
    assert [e["exit_code"] for e in of(ev, "end", "c")] == [3]
    assert slurm_state(backend, "c") == "FAILED"


def test_accounting_from_slurm_matches_the_ledger(
    three_jobs: tuple[Engine, SlurmBackend, list[dict[str, Any]]],
) -> None:
    eng, backend, _ = three_jobs
    ledger = {r.job_id: r for r in eng.ledger.records()}
    slurm = {r.job_id: r for r in backend.accounting()}
    assert sorted(ledger) == sorted(slurm) == ["a", "b", "c"]
    for job_id, rec in ledger.items():
        run = slurm[job_id]
        assert run.started_s is not None and run.ended_s is not None
        # Slurm starts a job at its next scheduling pass, about 1 s after the sbatch (up
        # to 3 s for the first jobs after slurmctld starts); the ledger counts from the
        # placement, when the GPUs were taken. The end is seen at the next poll. Slurm's
        # times are whole Unix seconds, mapped onto the engine clock (+-1 s).
        assert -1 <= run.started_s - rec.start_s <= 3, (job_id, run, rec)
        assert -1 <= rec.end_s - run.ended_s <= 2, (job_id, run, rec)
        assert run.slurm_nodes == tuple(eng.topo.node_names[n] for n in rec.nodes)
        assert sum(run.slurm_gpus) == rec.gpus


def test_accounting_also_answers_for_jobs_slurmctld_has_forgotten(
    three_jobs: tuple[Engine, SlurmBackend, list[dict[str, Any]]],
) -> None:
    """After MinJobAge squeue no longer lists a job; sacct (here the jobcomp file) does."""
    _, backend, _ = three_jobs
    ids = {r.job_id: r.slurm_id for r in backend.accounting()}

    a, c = backend.sacct_job(ids["a"]), backend.sacct_job(ids["c"])

    assert a is not None and (a.state, a.exit_code, a.nodes) == ("COMPLETED", 0, ("node1",))
    assert c is not None and (c.state, c.exit_code, c.nodes) == ("FAILED", 3, ("node2",))
    assert backend.sacct_job(999_999) is None


def test_a_two_node_gang_starts_as_one_unit(
    cluster: LocalSlurm, topo: Topology, tmp_path: Path
) -> None:
    eng, backend, _ = slurm_engine(cluster, topo, tmp_path)
    each = 'echo "$(date +%s.%N) $SLURMD_NODENAME $CUDA_VISIBLE_DEVICES"'
    submit_command(eng, "gang", 16, f"srun -l sh -c '{each}'; sleep 2")

    drive(eng, finished(eng))

    assert eng.jobs["gang"].state is JobState.COMPLETED
    [run] = backend.accounting()
    assert run.slurm_nodes == ("node1", "node2") and run.slurm_gpus == (8, 8)
    lines = [line.split() for line in backend.log_paths("gang", 1)[0].read_text().splitlines()]
    started = {node: float(t) for _, t, node, _ in lines}
    assert sorted(started) == ["node1", "node2"]
    assert max(started.values()) - min(started.values()) < 1.0
    assert {cvd for *_, cvd in lines} == {"0,1,2,3,4,5,6,7"}


def test_a_gang_of_uneven_counts_is_one_heterogeneous_job(
    cluster: LocalSlurm, topo: Topology, tmp_path: Path
) -> None:
    """8 GPUs on node1 and 4 on node3: exactly that, as two components of one job."""
    backend = SlurmBackend(topo, tmp_path, env=cluster.env, adopt=False)
    spec = job("uneven", "B", 12, duration_s=60, submit_s=0, command=("sleep", "60"))
    backend.start(StartRequest(spec, 1, Placement((0, 2), (8, 4)), ("node1", "node3"), 0, 0, 0))
    [run] = backend.runs()

    comps = [
        j
        for j in json.loads(cluster.run("squeue", "--json").stdout)["jobs"]
        if j["het_job_id"] == run.slurm_id
    ]
    backend.stop("uneven", 1)

    asked = sorted((j["required_nodes"], j["tres_per_node"], j["comment"]) for j in comps)
    assert asked == [
        ("node1", "gres:gpu:8", "cotenant:uneven:1"),
        ("node3", "gres:gpu:4", "cotenant:uneven:1"),
    ]


# -- preemption ----------------------------------------------------------------------------------

TRAPS_TERM = """
echo "start $COTENANT_ATTEMPT $(date +%s.%N)" >> {log}
[ "$COTENANT_ATTEMPT" = 2 ] && exit 0
trap 'echo "term $COTENANT_ATTEMPT $(date +%s.%N)" >> {log}' TERM
while true; do echo "beat $COTENANT_ATTEMPT $(date +%s.%N)" >> {log}; sleep 0.2; done
"""


def test_a_preempted_job_gets_the_signal_and_its_grace_then_is_requeued(
    cluster: LocalSlurm, topo: Topology, tmp_path: Path
) -> None:
    """B borrows the whole cluster; A's contract reclaims 8 GPUs with a 3 s grace. B's
    job traps SIGTERM (its checkpoint cue) and keeps going until Slurm cancels it at the
    deadline; cotenant requeues it and it runs again once A's job is done."""
    log = tmp_path / "b1.log"
    eng, backend, ev = slurm_engine(
        cluster, topo, tmp_path / "state", [contract("A", 24, grace=3)], ("B",), "contract"
    )
    submit_command(eng, "b1", 24, TRAPS_TERM.format(log=log), duration_s=60)
    drive(eng, lambda: log.exists())
    submit_command(eng, "a1", 8, "sleep 1", tenant="A")

    drive(eng, finished(eng), timeout_s=40)

    lines = [line.split() for line in log.read_text().splitlines()]
    terms = [float(t) for kind, att, t in lines if kind == "term" and att == "1"]
    beats = [float(t) for kind, att, t in lines if kind == "beat" and att == "1"]
    assert terms, lines
    assert beats[-1] - terms[0] >= 2.0  # it ran on through the grace period
    assert [att for kind, att, _ in lines if kind == "start"] == ["1", "2"]
    [reclaim] = of(ev, "reclaim", "b1")
    [preempt] = of(ev, "preempt", "b1")
    assert preempt["t"] - reclaim["t"] == 3
    assert [e["job"] for e in of(ev, "place")] == ["b1", "a1", "b1"]
    assert eng.jobs["b1"].state is JobState.COMPLETED and eng.jobs["b1"].preemptions == 1
    runs = [(r.job_id, r.attempt, r.state) for r in backend.accounting()]
    assert runs == [("b1", 1, "CANCELLED"), ("a1", 1, "COMPLETED"), ("b1", 2, "COMPLETED")]


# -- node health ---------------------------------------------------------------------------------


def test_a_node_set_down_in_slurm_requeues_its_job_elsewhere(
    cluster: LocalSlurm, topo: Topology, tmp_path: Path
) -> None:
    """fa fills node1, fb node2 (and ends), v node3. node3 goes DOWN in Slurm: cotenant
    marks it down, interrupts v and places it again on node2, the only free node, and
    takes node3 back when Slurm does. A DRAIN in Slurm makes the node draining in
    cotenant; the job on it runs on."""
    eng, backend, ev = slurm_engine(cluster, topo, tmp_path)
    submit_command(eng, "fa", 8, "sleep 60", duration_s=60)
    submit_command(eng, "fb", 8, "sleep 1", duration_s=1)
    submit_command(eng, "v", 8, "sleep 60", duration_s=60)
    drive(
        eng,
        lambda: (
            eng.jobs["fb"].state is JobState.COMPLETED and slurm_state(backend, "v") == "RUNNING"
        ),
    )
    assert [r.slurm_nodes for r in backend.accounting()] == [("node1",), ("node2",), ("node3",)]

    cluster.run("scontrol", "update", "nodename=node3", "state=down", "reason=test")
    drive(eng, lambda: slurm_state(backend, "v", 2) == "RUNNING", timeout_s=15)

    # Slurm kills v (NODE_FAIL) and, with ReturnToService=2, may return node3 to service
    # before sinfo is next read: the job's end is the evidence the node went down.
    down = of(ev, "node-health")[0]
    assert (down["node"], down["health"]) == (2, "down")
    assert down["reason"] in (
        "slurm: down (test)",
        f"slurm: NODE_FAIL of job {backend.accounting()[2].slurm_id} (v)",
    ), down
    assert [e["nodes"] for e in of(ev, "place", "v")] == [[2], [1]]
    assert len(of(ev, "interrupt", "v")) == 1
    assert [(r.attempt, r.slurm_nodes) for r in backend.accounting() if r.job_id == "v"] == [
        (1, ("node3",)),
        (2, ("node2",)),
    ]

    drive(eng, lambda: eng.state.health[2] == Health.HEALTHY, timeout_s=15)  # back in service

    cluster.run("scontrol", "update", "nodename=node1", "state=drain", "reason=maint")
    drive(eng, lambda: eng.state.health[0] == Health.DRAINING, timeout_s=5)
    assert eng.jobs["fa"].state is JobState.RUNNING
    for j in ("fa", "v"):
        eng.cancel(j)


# -- restart adoption ----------------------------------------------------------------------------


def test_a_new_backend_adopts_the_slurm_jobs_it_finds(
    cluster: LocalSlurm, topo: Topology, tmp_path: Path
) -> None:
    first = SlurmBackend(topo, tmp_path, env=cluster.env, adopt=False)
    now = int(time.time())
    for name, cmd in (("adopt-done", "exit 0"), ("adopt-later", "sleep 3; exit 4")):
        spec = job(name, "B", 2, duration_s=3, submit_s=now, command=("sh", "-c", cmd))
        first.start(StartRequest(spec, 1, Placement((1,), (2,)), ("node2",), now, 0, 0))
    del first  # the server is gone; Slurm keeps the jobs and their comments

    second = SlurmBackend(topo, tmp_path, env=cluster.env)
    mine = ("adopt-done", "adopt-later")  # Slurm still lists earlier tests' jobs too
    assert [(r.job_id, r.attempt, r.adopted) for r in second.runs() if r.job_id in mine] == [
        ("adopt-done", 1, True),
        ("adopt-later", 1, True),
    ]
    # A restored engine starts its running job again: the backend re-attaches to it.
    spec = job("adopt-later", "B", 2, duration_s=3, submit_s=now, command=("false",))
    second.start(StartRequest(spec, 1, Placement((1,), (2,)), ("node2",), now, 0, 0))
    assert len([r for r in second.accounting() if r.job_id == "adopt-later"]) == 1
    ended: list[JobEnded] = []
    deadline = time.monotonic() + 15
    while len(ended) < 2 and time.monotonic() < deadline:
        got = second.poll(int(time.time()))
        ended += [e for e in got if isinstance(e, JobEnded) and e.job_id in mine]
        time.sleep(0.5)
    assert sorted((e.job_id, e.exit_code) for e in ended) == [("adopt-done", 0), ("adopt-later", 4)]
    assert all(r.slurm_nodes == ("node2",) for r in second.accounting() if r.job_id in mine)
