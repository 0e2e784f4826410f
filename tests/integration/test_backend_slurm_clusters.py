"""The Slurm backend on two real Slurm clusters on this host (tests/harness/slurm.py,
``LocalSlurms``): `alpha` (nodes a1, a2) and `beta` (b1, b2), each with its own
controller, configuration and accounting.

Each backend drives the cluster its ``slurm_conf`` names and no other; a backend told
the wrong ``cluster`` refuses to start; a controller that goes away is detected within
a bounded time: its nodes are reported down and the engine requeues its jobs, without
the other cluster noticing; when the controller is back the lost run is cancelled in
Slurm and the job runs again. One engine over both (``SlurmClusters``): a gang never
spans the two (it waits for one with room), and a job is never failed because a
controller went silent under its start: it runs on the other cluster.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from builders import drive as drive_until
from builders import finished, job, submit_command
from cotenant.backends.base import Backend
from cotenant.backends.local import EXIT_LOST
from cotenant.backends.slurm import SlurmBackend, read_cluster_spec
from cotenant.backends.slurm_clusters import ClusterConf, SlurmClusters, read_union_spec
from cotenant.cluster.state import Health
from cotenant.cluster.topology import Topology
from cotenant.engine.clock import WallClock
from cotenant.engine.core import Engine
from cotenant.model.errors import SpecError
from cotenant.model.jobs import JobState
from cotenant.scheduler.policies import get_policy
from harness.slurm import MUNGE_SOCKET, LocalSlurm, LocalSlurms

drive = partial(drive_until, timeout_s=30.0)
CONTROLLER_TIMEOUT_S = 3
# A Slurm command in flight when its controller dies hangs about 9 s before it fails
# (docs/design/0008-backends.md): detection may start only after it.
SLURM_HANG_S = 10


@pytest.fixture
def pair(slurm_pair: LocalSlurms) -> Iterator[LocalSlurms]:
    """The session's two clusters, put back to all-idle (controllers up) after each test."""
    yield slurm_pair
    slurm_pair.reset()


def engine_on(
    cluster: LocalSlurm, state_dir: Path, **backend_kw: Any
) -> tuple[Engine, SlurmBackend, list[dict[str, Any]]]:
    """An engine on the wall clock whose backend drives ``cluster`` through its conf only
    (the test process's own environment names no cluster)."""
    conf = cluster.conf_path
    topo = Topology(read_cluster_spec({**cluster.env}))
    backend = SlurmBackend(
        topo,
        state_dir,
        slurm_conf=conf,
        cluster=cluster.cluster_name,
        adopt=False,
        **backend_kw,
    )
    eng, events = fifo_engine(topo, backend)
    return eng, backend, events


def fifo_engine(topo: Topology, backend: Backend) -> tuple[Engine, list[dict[str, Any]]]:
    """A wall-clock engine under fifo-backfill for tenant B, recording its events."""
    eng = Engine(
        topo,
        [],
        get_policy("fifo-backfill"),
        backend,
        WallClock(),
        restart_cost_s=0,
        checkpoint_write_s=0,
        tenants=["B"],
    )
    events: list[dict[str, Any]] = []
    eng.sinks.append(events.append)
    return eng, events


def engine_over(
    pair: LocalSlurms, state_dir: Path
) -> tuple[Engine, SlurmClusters, list[dict[str, Any]]]:
    """One engine over both clusters' nodes, as the server runs it (each a provider)."""
    confs = [ClusterConf(c.cluster_name, str(c.conf_path), c.cluster_name) for c in pair]
    spec, nodes = read_union_spec(confs, os.environ)
    topo = Topology(spec)
    backend = SlurmClusters(
        topo,
        state_dir,
        confs,
        nodes,
        base_env=os.environ,
        controller_timeout_s=CONTROLLER_TIMEOUT_S,
        adopt=False,
    )
    eng, events = fifo_engine(topo, backend)
    return eng, backend, events


def slurm_state(backend: SlurmClusters, job_id: str, attempt: int) -> str | None:
    """What Slurm last said of a run (None: never sent)."""
    runs = [r for _, r in backend.accounting() if (r.job_id, r.attempt) == (job_id, attempt)]
    return runs[-1].state if runs else None


def test_a_gang_waits_for_one_cluster_with_room_never_spans_two(
    pair: LocalSlurms, tmp_path: Path
) -> None:
    """a1 and b1 busy, a2 and b2 free: a 16-GPU gang has room only across the two. It
    waits (it used to be placed on a2 + b2, refused at start and failed); when b1 frees
    it runs on beta as one Slurm job. A gang larger than either cluster is rejected."""
    eng, backend, ev = engine_over(pair, tmp_path)
    for j in ("f1", "f2", "f3"):
        submit_command(eng, j, 8, "sleep 300", duration_s=300)
    drive(eng, lambda: all(slurm_state(backend, j, 1) == "RUNNING" for j in ("f1", "f2", "f3")))
    where = {j: backend.cluster_of(j) for j in ("f1", "f2", "f3")}
    assert where == {"f1": "alpha", "f2": "alpha", "f3": "beta"}, where
    eng.cancel("f2")
    submit_command(eng, "gang", 16, "sleep 300", duration_s=300)
    submit_command(eng, "huge", 24, "sleep 300", duration_s=300)
    eng.run(eng.clock.now() + 3)

    gang = eng.jobs["gang"]
    assert gang.state is JobState.PENDING and gang.attempt == 0, (gang.state, gang.reason)
    assert slurm_state(backend, "gang", 1) is None
    huge = eng.jobs["huge"]
    assert (huge.state, huge.reason) == (JobState.FAILED, "too-large"), huge.reason
    assert "the largest provider (of its kind) has 16" in huge.reason_detail, huge.reason_detail

    eng.cancel("f3")
    drive(eng, lambda: slurm_state(backend, "gang", 1) == "RUNNING")
    [run] = [r for _, r in backend.accounting() if r.job_id == "gang"]
    assert backend.cluster_of("gang") == "beta" and run.slurm_nodes == ("b1", "b2")
    assert run.slurm_gpus == (8, 8)
    [placed] = [e for e in ev if e["event"] == "place" and e["job"] == "gang"]
    assert (placed["provider"], placed["route"]) == ("beta", "no-room-before"), placed
    assert (
        placed["route_detail"] == "on beta: alpha has no room for 16 GPUs (8 of its 16 free to it)"
    )
    for j in ("gang", "f1"):
        eng.cancel(j)


def test_a_job_runs_only_on_the_clusters_it_names(pair: LocalSlurms, tmp_path: Path) -> None:
    """Both clusters empty: a job naming beta runs on beta, though alpha is first; with
    beta then full, a second job naming beta waits while alpha has room; one naming a
    cluster too small for it is rejected, naming it."""
    eng, backend, ev = engine_over(pair, tmp_path)
    on_beta = ("beta",)
    for j, gpus in (("b-full", 16), ("b-more", 8)):
        eng.submit(
            job(j, "B", gpus, 300, eng.clock.now(), command=("sleep", "300"), providers=on_beta)
        )
    eng.submit(job("b-huge", "B", 24, 300, eng.clock.now(), command=("true",), providers=on_beta))
    drive(eng, lambda: slurm_state(backend, "b-full", 1) == "RUNNING")
    eng.run(eng.clock.now() + 3)

    [run] = [r for _, r in backend.accounting() if r.job_id == "b-full"]
    assert backend.cluster_of("b-full") == "beta" and run.slurm_nodes == ("b1", "b2")
    [placed] = [e for e in ev if e["event"] == "place" and e["job"] == "b-full"]
    assert (placed["provider"], placed["route"]) == ("beta", "named-by-job"), placed
    more = eng.jobs["b-more"]
    assert more.state is JobState.PENDING and slurm_state(backend, "b-more", 1) is None
    huge = eng.jobs["b-huge"]
    assert (huge.state, huge.reason) == (JobState.FAILED, "too-large"), huge.reason
    assert "the providers it accepts (beta) have at most 16" in huge.reason_detail
    for j in ("b-full", "b-more"):
        eng.cancel(j)


def test_a_job_placed_as_a_controller_goes_silent_runs_on_the_other(
    pair: LocalSlurms, tmp_path: Path
) -> None:
    """alpha's controller dies while `kept` runs on a1. A job submitted right after runs
    on beta as its first attempt (alpha's nodes drain as soon as a ping fails; it used to
    be placed on a2 and wait there for the timeout). `kept` follows at the timeout."""
    alpha = pair["alpha"]
    eng, backend, ev = engine_over(pair, tmp_path)
    submit_command(eng, "kept", 8, "sleep 300", duration_s=300)
    drive(eng, lambda: slurm_state(backend, "kept", 1) == "RUNNING")
    alpha.save_state()
    alpha.kill_slurmctld()
    killed = time.monotonic()
    submit_command(eng, "fresh", 8, "sleep 300", duration_s=300)
    drive(eng, lambda: slurm_state(backend, "fresh", 1) == "RUNNING", timeout_s=20)
    took = time.monotonic() - killed

    assert backend.cluster_of("fresh") == "beta" and eng.jobs["fresh"].attempt == 1
    assert took < CONTROLLER_TIMEOUT_S + SLURM_HANG_S, took
    print(f"\nfresh running on beta {took:.1f} s after alpha's controller was killed")
    drains = [e for e in ev if e["event"] == "node-health" and e["health"] == "draining"]
    assert sorted(e["node"] for e in drains) == [0, 1]
    assert all("controller of cluster alpha does not answer" in e["reason"] for e in drains)
    [placed] = [e for e in ev if e["event"] == "place" and e["job"] == "fresh"]
    assert (
        placed["route_detail"] == "on beta: alpha has no room for 8 GPUs (0 of its 16 free to it)"
    )
    drive(eng, lambda: slurm_state(backend, "kept", 2) == "RUNNING", timeout_s=30)
    assert backend.cluster_of("kept") == "beta"
    alpha.start_slurmctld()
    drive(eng, lambda: slurm_state(backend, "kept", 1) == "CANCELLED", timeout_s=20)
    assert all(int(h) == int(Health.HEALTHY) for h in eng.state.health)
    for j in ("kept", "fresh"):
        eng.cancel(j)


def test_a_start_whose_sbatch_dies_with_the_controller_is_queued_again(
    pair: LocalSlurms, tmp_path: Path
) -> None:
    """The controller dies between the poll and the sbatch: the sbatch fails (after
    Slurm's retries) and the job, which never ran, goes back to the queue and runs on
    beta; it used to end `not-started`, failed."""
    alpha = pair["alpha"]
    eng, backend, ev = engine_over(pair, tmp_path)
    submit_command(eng, "j", 8, "sleep 300", duration_s=300)
    now = eng.clock.now()
    eng.handle_due(now)  # polled: both controllers answer
    alpha.kill_slurmctld()
    eng.cycle(now)  # placed on a1; its sbatch cannot reach alpha
    assert eng.jobs["j"].attempt == 1 and slurm_state(backend, "j", 1) is None

    drive(eng, lambda: slurm_state(backend, "j", 2) == "RUNNING", timeout_s=20)
    job_ = eng.jobs["j"]
    assert job_.state is JobState.RUNNING and backend.cluster_of("j") == "beta"
    [interrupt] = [e for e in ev if e["event"] == "interrupt"]
    assert interrupt["cause"].startswith("not started: the Slurm controller of cluster alpha")
    assert not [e for e in ev if e["event"] == "end"]
    eng.cancel("j")


def test_the_two_clusters_are_apart(pair: LocalSlurms) -> None:
    alpha, beta = pair["alpha"], pair["beta"]
    assert (alpha.nodes, beta.nodes) == (["a1", "a2"], ["b1", "b2"])
    assert alpha.conf_path != beta.conf_path
    assert alpha.slurmctld_port != beta.slurmctld_port
    assert not set(alpha.slurmd_ports.values()) & set(beta.slurmd_ports.values())
    for c in pair:
        config = c.run("scontrol", "show", "config").stdout
        assert f"ClusterName             = {c.cluster_name}" in config
        assert str(c.workdir / "state") in config
    assert Topology(read_cluster_spec(alpha.env)).node_names == ("a1", "a2")
    assert Topology(read_cluster_spec(beta.env)).node_names == ("b1", "b2")


def test_each_cluster_runs_its_own_jobs(pair: LocalSlurms, tmp_path: Path) -> None:
    """Two engines, one per cluster, at once: each job runs on its cluster's nodes, each
    controller lists only its own, and each run's Slurm accounting matches its ledger."""
    alpha, beta = pair["alpha"], pair["beta"]
    engines = {c.cluster_name: engine_on(c, tmp_path / c.cluster_name) for c in (alpha, beta)}
    cmd = 'echo "$SLURM_CLUSTER_NAME $SLURMD_NODENAME"; sleep 2'
    for name, (eng, _, _) in engines.items():
        submit_command(eng, f"{name}-full", 8, cmd)
        submit_command(eng, f"{name}-half", 4, cmd)
    listed: dict[str, list[str]] = {}
    errors: list[BaseException] = []

    def run(eng: Engine) -> None:
        try:
            drive(eng, finished(eng))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(e,)) for e, _, _ in engines.values()]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while not listed and time.monotonic() < deadline:  # both busy: ask each controller
        names = {c.cluster_name: c.run("squeue", "-h", "-o", "%j").stdout.split() for c in pair}
        if all(len(v) == 2 for v in names.values()):
            listed = names
        time.sleep(0.2)
    for t in threads:
        t.join(60)
    assert not errors, errors

    assert {k: sorted(v) for k, v in listed.items()} == {
        "alpha": ["alpha-full", "alpha-half"],
        "beta": ["beta-full", "beta-half"],
    }
    for name, (eng, backend, _) in engines.items():
        assert {j: r.state for j, r in eng.jobs.items()} == {
            f"{name}-full": JobState.COMPLETED,
            f"{name}-half": JobState.COMPLETED,
        }
        prefix = name[0]
        for run in backend.accounting():
            out = backend.log_paths(run.job_id, 1)[0].read_text().split()
            assert out[0] == name and out[1].startswith(prefix), out
            assert all(n.startswith(prefix) for n in run.slurm_nodes)
        ledger = {r.job_id: r for r in eng.ledger.records()}
        for run in backend.accounting():
            rec = ledger[run.job_id]
            assert run.started_s is not None and run.ended_s is not None
            assert -1 <= run.started_s - rec.start_s <= 3, (run, rec)
            assert -1 <= rec.end_s - run.ended_s <= 2, (run, rec)
            assert sum(run.slurm_gpus) == rec.gpus


def test_a_backend_refuses_a_cluster_its_conf_does_not_name(
    pair: LocalSlurms, tmp_path: Path
) -> None:
    alpha = pair["alpha"]
    topo = Topology(read_cluster_spec(alpha.env))
    with pytest.raises(SpecError) as err:
        SlurmBackend(topo, tmp_path, slurm_conf=alpha.conf_path, cluster="beta")
    assert err.value.field == "backend.cluster"
    assert "'alpha'" in str(err.value)
    with pytest.raises(SpecError, match=r"backend\.slurm_conf"):
        SlurmBackend(topo, tmp_path, slurm_conf=tmp_path / "nope.conf")


def test_a_lost_controller_sends_its_jobs_back_to_the_queue(
    pair: LocalSlurms, tmp_path: Path
) -> None:
    """alpha's controller is killed while `lost` runs there (and `other` on beta): within
    controller_timeout_s plus a poll the engine has alpha's nodes down and `lost` back in
    the queue; nothing is sent to alpha meanwhile; beta runs on. The controller comes
    back: the nodes are healthy again, attempt 1 is cancelled in Slurm (it was still
    running on its slurmd) and attempt 2 runs to the end."""
    alpha, beta = pair["alpha"], pair["beta"]
    eng, backend, ev = engine_on(
        alpha, tmp_path / "alpha", controller_timeout_s=CONTROLLER_TIMEOUT_S
    )
    other = beta.sbatch("--gres=gpu:8", "--wrap", "sleep 120")
    submit_command(eng, "lost", 8, "sleep 300", duration_s=300)
    drive(eng, lambda: any(r.state == "RUNNING" for r in backend.accounting()))
    alpha.save_state()  # (else a restart forgets the running job)
    [first] = backend.accounting()

    alpha.kill_slurmctld()
    killed = time.monotonic()
    drive(eng, lambda: eng.jobs["lost"].state is JobState.PENDING, timeout_s=30)
    detected = time.monotonic() - killed

    assert CONTROLLER_TIMEOUT_S - 1 <= detected <= CONTROLLER_TIMEOUT_S + SLURM_HANG_S + 3, detected
    downs = [e for e in ev if e["event"] == "node-health" and e["health"] == "down"]
    assert sorted(e["node"] for e in downs) == [0, 1]
    assert all("controller of cluster alpha unreachable" in e["reason"] for e in downs)
    [interrupt] = [e for e in ev if e["event"] == "interrupt"]
    assert interrupt["job"] == "lost"
    assert eng.jobs["lost"].reason == "requeued"
    assert beta.job_fields(other)["JobState"] == "RUNNING"
    eng.run(eng.clock.now() + 2)
    assert len(backend.accounting()) == 1  # nothing sent to a cluster without a controller

    alpha.start_slurmctld()
    drive(eng, lambda: len(backend.accounting()) == 2, timeout_s=20)
    assert all(int(h) == int(Health.HEALTHY) for h in eng.state.health)
    drive(eng, lambda: first.state == "CANCELLED", timeout_s=15)
    assert alpha.job_fields(first.slurm_id)["JobState"] == "CANCELLED"
    second = backend.accounting()[1]
    assert (second.job_id, second.attempt) == ("lost", 2)
    drive(eng, lambda: second.state == "RUNNING", timeout_s=15)
    eng.cancel("lost")
    beta.run("scancel", str(other))


@pytest.mark.usefixtures("slurm_pair")  # skips (or fails in CI) without Slurm
def test_a_job_id_given_again_after_a_controller_forgot_is_not_the_old_run(
    tmp_path: Path,
) -> None:
    """slurmctld saves its state about 5 s after a change that follows a save: killed
    within that, it restarts without its newest job and gives that job's id out again.
    `old` is that job; `new` gets its id. The backend must not take `new`'s Slurm job for
    `old`'s run (it would report `old` ending as `new` does): `old` is lost the moment
    its id is given out again, and each run keeps its own Slurm job."""
    socket = MUNGE_SOCKET.with_name(f"cotenant-{os.getpid()}-forget.socket")
    with LocalSlurm(2, 8, cluster_name="forgetful", node_prefix="f", munge_socket=socket) as c:
        eng, backend, ev = engine_on(c, tmp_path, controller_timeout_s=60)
        c.save_state()  # a save now: the next comes about 5 s after the next change
        submit_command(eng, "old", 8, "sleep 300", duration_s=300)
        drive(eng, lambda: any(r.state == "RUNNING" for r in backend.accounting()))
        c.kill_slurmctld()
        c.start_slurmctld()
        [old] = backend.accounting()
        assert not c.job_fields(old.slurm_id), "slurmctld saved old's job before it was killed"

        submit_command(eng, "new", 8, "sleep 300", duration_s=300)
        drive(eng, lambda: len(backend.accounting()) == 2)
        new = next(r for r in backend.accounting() if r.job_id == "new")
        eng.run(eng.clock.now() + 2)

        assert new.slurm_id == old.slurm_id and new.nodes == ("f2",)
        assert old.state == "LOST" and old.exit_code == EXIT_LOST
        [end] = [e for e in ev if e["event"] == "end" and e["job"] == "old"]
        assert end["exit_code"] == EXIT_LOST
        assert new.state != "LOST" and [r.job_id for r in backend.runs()] == ["new"]
        eng.cancel("new")
