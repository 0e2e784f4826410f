"""The LocalSlurm harness gives a real Slurm that behaves like a GPU cluster.

Why: the Slurm backend's integration tests rely on these behaviours (gres
accounting, pinning to a node, gangs across nodes, node state changes); if the
harness breaks, this file says so before the backend's tests do.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.slurm import LocalSlurm, LocalSlurms


@pytest.fixture
def cluster(slurm_cluster: LocalSlurm) -> Iterator[LocalSlurm]:
    """The session cluster, put back to all-idle after each test."""
    yield slurm_cluster
    slurm_cluster.reset()


def test_three_nodes_idle_with_eight_gpus(cluster: LocalSlurm) -> None:
    nodes = json.loads(cluster.run("sinfo", "--json").stdout)["nodes"]
    seen = {n["name"]: (n["state"], n["gres"], n["cpus"], n["real_memory"]) for n in nodes}

    assert seen == {name: ("idle", "gpu:8", 8, 16000) for name in ("node1", "node2", "node3")}
    assert cluster.nodes == ["node1", "node2", "node3"]
    assert cluster.gpus_per_node == 8


def test_job_pinned_to_node2_sees_two_gpus(cluster: LocalSlurm, tmp_path: Path) -> None:
    out = tmp_path / "cvd.txt"
    job = cluster.sbatch(
        "--nodelist=node2",
        "--gres=gpu:2",
        "--wrap",
        f"echo $CUDA_VISIBLE_DEVICES $SLURMD_NODENAME > {out}",
    )

    fields = cluster.wait_job(job, {"COMPLETED", "FAILED", "CANCELLED"}, timeout=20)

    assert fields["JobState"] == "COMPLETED", cluster.job_output(job)
    assert fields["NodeList"] == "node2"
    gpus, node = out.read_text().split()
    assert node == "node2"
    assert len(gpus.split(",")) == 2
    assert all(idx.isdigit() and int(idx) < 8 for idx in gpus.split(","))


def test_gang_of_two_full_nodes_starts_at_once(cluster: LocalSlurm) -> None:
    job = cluster.sbatch("-N", "2", "--gres=gpu:8", "--wrap", "sleep 60")

    fields = cluster.wait_job(job, {"RUNNING"}, timeout=20)

    assert fields["NumNodes"] == "2"
    used = cluster.run("sinfo", "-h", "-N", "-o", "%N %G %T").stdout.split("\n")
    detail = cluster.run("scontrol", "show", "job", "-d", str(job)).stdout
    assert "GRES=gpu:8(IDX:0-7)" in detail, detail
    busy = [line.split()[0] for line in used if line and line.split()[2] != "idle"]
    assert len(busy) == 2, used
    cluster.run("scancel", str(job))
    cluster.wait_job(job, {"CANCELLED", "COMPLETED"}, timeout=20)


def test_node_down_and_resume(cluster: LocalSlurm) -> None:
    cluster.run("scontrol", "update", "nodename=node3", "state=down", "reason=test")
    assert cluster.node_states()["node3"].startswith("down")
    reason = cluster.run("sinfo", "-h", "-n", "node3", "-o", "%E").stdout.strip()
    assert reason == "test"

    cluster.run("scontrol", "update", "nodename=node3", "state=resume")
    cluster.wait_nodes_idle(["node3"], timeout=15)

    assert cluster.node_states() == {"node1": "idle", "node2": "idle", "node3": "idle"}


def test_restarted_slurmd_takes_jobs_again(cluster: LocalSlurm) -> None:
    """kill_slurmd/start_slurmd (the node-failure tool) leave a working node."""
    cluster.kill_slurmd("node1")
    cluster.start_slurmd("node1")
    cluster.wait_nodes_idle(["node1"], timeout=20)

    job = cluster.sbatch("--nodelist=node1", "--gres=gpu:1", "--wrap", "true")

    assert cluster.wait_job(job, {"COMPLETED", "FAILED"}, timeout=20)["JobState"] == "COMPLETED"


@pytest.mark.usefixtures("slurm_cluster")  # skips (or fails in CI) without Slurm
def test_stop_leaves_no_process_zombie_or_directory() -> None:
    """A second small cluster with its own munged: stop() must remove all of it.

    PID 1 here does not reap orphans, so a finished job must not leave a
    `[slurmstepd] <defunct>` behind either.
    """
    socket = Path("/run/munge/cotenant-harness-test.socket")
    with LocalSlurm(n_nodes=1, gpus_per_node=1, munge_socket=socket) as small:
        done = small.sbatch("--gres=gpu:1", "--wrap", "true")
        small.wait_job(done, {"COMPLETED"}, timeout=20)
        running = small.sbatch("--wrap", "sleep 300")
        small.wait_job(running, {"RUNNING"}, timeout=20)
        conf = f"SLURM_CONF={small.conf_path}".encode()
        started = small.pids()
        workdir = small.workdir

    assert len(started) == 6  # munged, slurmctld, slurmd and a supervisor for each
    assert not [pid for pid in started if Path(f"/proc/{pid}").exists()]
    assert not [pid for pid in _pids() if conf in _environ(pid)]
    assert not [pid for pid in _pids() if _stat(pid) == ("Z", 1) and "slurm" in _comm(pid)]
    assert not workdir.exists()
    assert not socket.exists()


@pytest.mark.usefixtures("slurm_cluster")  # skips (or fails in CI) without Slurm
def test_two_clusters_share_a_munged_and_stop_without_a_trace() -> None:
    """Two clusters, one munged (the first's). A controller killed and restarted keeps
    its running job; the other cluster's job runs on through it. stop() removes all."""
    socket = Path("/run/munge/cotenant-harness-pair-test.socket")
    with LocalSlurms(("east", "west"), n_nodes=1, gpus_per_node=2, munge_socket=socket) as two:
        east, west = two["east"], two["west"]
        jobs = {c.cluster_name: c.sbatch("--gres=gpu:1", "--wrap", "sleep 300") for c in two}
        for c in two:
            assert c.wait_job(jobs[c.cluster_name], {"RUNNING"})["NodeList"] == c.nodes[0]
        east.save_state()
        east.kill_slurmctld()
        assert not east.controller_up() and west.controller_up()
        assert west.job_fields(jobs["west"])["JobState"] == "RUNNING"
        east.start_slurmctld()
        assert east.job_fields(jobs["east"])["JobState"] == "RUNNING"
        confs = [f"SLURM_CONF={c.conf_path}".encode() for c in two]
        started = two.pids()
        workdirs = [c.workdir for c in two]

    # munged once, then a slurmctld and a slurmd per cluster, east's controller twice;
    # each with its supervisor
    assert len(started) == 2 * (1 + 2 + 2 + 1)
    assert not [pid for pid in started if Path(f"/proc/{pid}").exists()]
    assert not [pid for pid in _pids() for conf in confs if conf in _environ(pid)]
    assert not [w for w in workdirs if w.exists()]
    assert not socket.exists()


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _environ(pid: int) -> set[bytes]:
    try:
        return set(Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"))
    except OSError:
        return set()


def _stat(pid: int) -> tuple[str, int]:
    """(state, parent PID) of a process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "", 0
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""
