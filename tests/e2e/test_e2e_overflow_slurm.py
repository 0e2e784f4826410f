"""Overflow from two real Slurm clusters to an elastic pool (issue 16): `serve` drives
`alpha` (a1, a2) and `beta` (b1, b2), 8 fake GPUs per node, each a real controller
(tests/harness/slurm.py), as the lease, and a 16-GPU pool run by the local backend beside
them, on a SQLite store.

The lessee fills both clusters with jobs of 600 s; its next job's expected wait (600 s)
exceeds its max_wait (1 min), so it runs on the pool (a local process, no Slurm job),
while its $4 fits the $6 budget; the next waits over-budget. A kill -9 of the server and
a restart: the Slurm jobs and the pool's run are adopted (one attempt each), the pool
job's usage is its run's GPU-seconds on the pool's terms, and no Slurm cluster ever held
the pool's jobs.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from live import LiveServer, kill_local_runs

from cotenant.backends.slurm import parse_squeue
from harness import poll
from harness.slurm import LocalSlurms

pytestmark = pytest.mark.slow  # real Slurm timings: about 30 s

LESSEE = "lessee-lab"


@pytest.fixture
def pair(slurm_pair: LocalSlurms) -> Iterator[LocalSlurms]:
    yield slurm_pair
    slurm_pair.reset()


def wait_for(fn: Any, timeout: float = 30.0, what: str = "") -> Any:
    got = poll(fn, timeout, interval=0.2)
    assert got, f"not within {timeout:.0f}s: {what}"
    return got


def submit(c: httpx.Client, gpus: int, command: str, **extra: Any) -> str:
    body = {"gpus": gpus, "duration_s": 600, "command": ["sh", "-c", command], **extra}
    r = c.post("/v1/jobs", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def job(c: httpx.Client, job_id: str) -> dict[str, Any]:
    r = c.get(f"/v1/jobs/{job_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def slurm_names(pair: LocalSlurms) -> set[str]:
    """The cotenant job ids every cluster's Slurm holds."""
    out = set()
    for cl in pair:
        for j in parse_squeue(cl.run("squeue", "--json").stdout).values():
            out.add(j.comment.rpartition(":")[0].rpartition(":")[2])
    return out


def test_slurm_clusters_overflow_to_a_local_pool(pair: LocalSlurms, tmp_path: Path) -> None:
    alpha, beta = pair["alpha"], pair["beta"]
    runs = tmp_path / "runs"
    config = tmp_path / "cotenant.toml"
    config.write_text(
        f"""
backend = "slurm"
state_dir = "{runs}"
policy = "fifo-backfill"

[[slurm_clusters]]
name = "alpha"
slurm_conf = "{alpha.conf_path}"
cluster = "alpha"

[[slurm_clusters]]
name = "beta"
slurm_conf = "{beta.conf_path}"
cluster = "beta"

[[pools]]
name = "cloud"
accelerator = "H100-SXM-80GB"
max_gpus = 16
on_demand_per_gpu_hour = "3.00"
provisioning = "1s"

[overflow.lessee-lab]
providers = ["lease", "cloud"]
budget_per_month = "6"
max_wait = {{ experiment = "1m" }}
"""
    )
    srv = LiveServer(
        f"sqlite:///{tmp_path / 'c.db'}", tmp_path, speed=1, extra=("--config", str(config))
    )
    try:
        with srv:
            run(srv, pair)
    finally:  # (the pool's processes would outlive the test)
        srv.stop()
        kill_local_runs(runs.glob("pools/**/attempt-*.pid"))


def run(srv: LiveServer, pair: LocalSlurms) -> None:
    with srv.client(LESSEE) as c:
        fill = [submit(c, 8, "sleep 600") for _ in range(4)]
        for j in fill:
            wait_for(lambda j=j: job(c, j)["state"] == "running", what=f"{j} on Slurm")
        nodes = sorted(job(c, j)["placement"]["nodes"][0] for j in fill)
        assert nodes == ["a1", "a2", "b1", "b2"], nodes
        go = srv.workdir / "go"
        pooled = submit(c, 8, f'echo "$COTENANT_NODES"; while [ ! -e {go} ]; do sleep 0.2; done')
        wait_for(lambda: job(c, pooled)["state"] == "running", what="the pool job running")
        assert job(c, pooled)["placement"]["nodes"] == ["cloud-1"]
        assert wait_for(lambda: c.get(f"/v1/jobs/{pooled}/logs").text) == "cloud-1\n"
        waiting = submit(c, 8, "sleep 600", providers=["beta", "cloud"])
        why = c.get(f"/v1/jobs/{waiting}/why").json()
        assert why["reason"] == "over-budget", why
        assert "overflow to cloud would cost $4, budget left $2" in why["detail"], why
        held = slurm_names(pair)
        assert set(fill) <= held and pooled not in held and waiting not in held, held

    srv.kill(signal.SIGKILL)
    srv.start()
    with srv.client(LESSEE) as c, srv.client("operator") as op:
        for j in [*fill, pooled]:
            again = job(c, j)
            assert again["state"] == "running" and len(again["attempts"]) == 1, again
        assert c.get(f"/v1/jobs/{waiting}/why").json()["reason"] == "over-budget"
        (srv.workdir / "go").touch()
        wait_for(lambda: job(c, pooled)["state"] == "completed", what="the pool job ends")
        [a] = job(c, pooled)["attempts"]
        [u] = c.get("/v1/usage").json()["tenants"]
        [pool] = u["pools"]
        assert pool["gpu_seconds"] == 8 * (a["end_s"] - a["start_s"]), (pool, a)
        assert op.get("/v1/admin/invariants").json()["ok"]
        for j in [*fill, waiting]:
            assert op.post(f"/v1/jobs/{j}/cancel").status_code == 200
