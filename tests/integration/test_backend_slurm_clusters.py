"""The Slurm backend on two real Slurm clusters on this host (tests/harness/slurm.py,
``LocalSlurms``): `alpha` (nodes a1, a2) and `beta` (b1, b2), each with its own
controller, configuration and accounting.

Each backend drives the cluster its ``slurm_conf`` names and no other; a backend told
the wrong ``cluster`` refuses to start; a controller that goes away is detected within
a bounded time: its nodes are reported down and the engine requeues its jobs, without
the other cluster noticing; when the controller is back the lost run is cancelled in
Slurm and the job runs again.
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
from builders import finished, submit_command
from cotenant.backends.local import EXIT_LOST
from cotenant.backends.slurm import SlurmBackend, read_cluster_spec
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
    return eng, backend, events


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
