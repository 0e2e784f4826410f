"""Overflow to an elastic pool through the real server (issue 16): `serve --backend local`
with a config file giving a 32-GPU pool and the lessee's overflow terms. The lease
(small-lease, 128 GPUs) is full, so the lessee's next jobs run on the pool (real
processes, in the pool's own state directory) while their cost fits its $10 budget; the
third waits over-budget. A kill -9 of the server and a restart keep each job's route and
the budget spent: the pool's jobs are adopted where they run, a new job is still over
budget, and the audit log holds every routing decision with its reason."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path
from typing import Any

import httpx
from live import LiveServer, kill_local_runs

from harness import poll as wait_for

LESSEE, OWNER = "lessee-lab", "owner-lab"
CONFIG = """
[[pools]]
name = "cloud"
accelerator = "H100-SXM-80GB"
max_gpus = 32
on_demand_per_gpu_hour = "3.00"
provisioning = "2s"

[overflow.lessee-lab]
providers = ["lease", "cloud"]
budget_per_month = "10"
max_wait = { experiment = "6m" }
"""
# 8 GPUs for 600 s on demand at $3 per GPU-hour: $4 reserved per job


def submit(c: httpx.Client, gpus: int, duration_s: int, command: list[str]) -> str:
    r = c.post("/v1/jobs", json={"gpus": gpus, "duration_s": duration_s, "command": command})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def state(c: httpx.Client, job: str) -> dict[str, Any]:
    out: dict[str, Any] = c.get(f"/v1/jobs/{job}").json()
    return out


def test_overflow_over_http_survives_a_kill(tmp_path: Path) -> None:
    cfg = tmp_path / "cotenant.toml"
    cfg.write_text(CONFIG)
    runs = tmp_path / "runs"
    srv = LiveServer(
        f"sqlite:///{tmp_path / 'c.db'}",
        tmp_path,
        speed=1,
        extra=("--backend", "local", "--state-dir", str(runs), "--config", str(cfg)),
    )
    try:
        run(srv, runs)
    finally:  # the jobs' processes would outlive the test
        srv.stop()
        kill_local_runs(runs.glob("**/attempt-*.pid"))


def run(srv: LiveServer, runs: Path) -> None:
    with srv:
        with srv.client(OWNER) as owner, srv.client(LESSEE) as c:
            fill = [
                submit(c, 80, 36000, ["sleep", "600"]),
                submit(owner, 48, 36000, ["sleep", "600"]),
            ]
            assert wait_for(lambda: all(state(owner, j)["state"] == "running" for j in fill[1:]))
            assert wait_for(lambda: state(c, fill[0])["state"] == "running")
            a = submit(c, 8, 600, ["sh", "-c", 'echo "on $COTENANT_NODES"; sleep 600'])
            why = c.get(f"/v1/jobs/{a}/why").json()
            assert why["reason"] in ("provisioning", "queued"), why  # (2 s to provision)
            ran = wait_for(lambda: state(c, a)["state"] == "running")
            assert ran, state(c, a)
            assert state(c, a)["placement"]["nodes"] == ["cloud-1"]
            out = wait_for(lambda: c.get(f"/v1/jobs/{a}/logs").text)
            assert out == "on cloud-1\n", out
            assert (runs / "pools" / "cloud" / "runs.json").exists()
            b = submit(c, 8, 600, ["sleep", "600"])
            assert wait_for(lambda: state(c, b)["state"] == "running"), state(c, b)
            over = submit(c, 8, 600, ["sleep", "600"])
        rc, text, _ = srv.cli_in_process(LESSEE, "jobs", "why", over)
        assert rc == 0 and "over-budget" in text and "budget left $2" in text, text
        named = ("jobs", "submit", "--gpus", "8", "--duration", "60", "--provider", "cloud")
        refused = srv.cli(OWNER, *named, "--", "true", check=False)
        assert refused.returncode != 0, refused.stdout
        assert (
            "providers[0]: provider 'cloud' is not one tenant 'owner-lab' may use" in refused.stderr
        ), refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr

        srv.kill(signal.SIGKILL)  # the pool's and the lease's processes run on
        srv.start()
        with srv.client(LESSEE) as c, srv.client("operator") as op:
            for j in (a, b):
                again = state(c, j)
                assert again["state"] == "running", again
                assert again["placement"]["nodes"][0].startswith("cloud-"), again
                assert len(again["attempts"]) == 1, again  # adopted, not run again
            assert c.get(f"/v1/jobs/{over}/why").json()["reason"] == "over-budget"
            late = submit(c, 8, 600, ["sleep", "600"])
            why = c.get(f"/v1/jobs/{late}/why").json()
            assert why["reason"] == "over-budget", why
            checked = op.get("/v1/admin/invariants").json()
            assert checked["ok"], checked
            lines = op.get("/v1/audit").text.splitlines()
            routes = [json.loads(x) for x in lines]
            routes = [e["payload"] for e in routes if e["kind"] == "route"]
            got = [(r["job"], r["provider"], r["reason"]) for r in routes if r["job"] != fill[0]]
            assert got[:4] == [
                (a, "cloud", "overflowed"),
                (b, "cloud", "overflowed"),
                (over, "lease", "over-budget"),
                (late, "lease", "over-budget"),
            ], got
            detail = routes[1]["detail"]
            assert re.fullmatch(
                r"overflowed to cloud: expected wait 10(\.0)? h > max_wait 0\.1 h; cost \$4", detail
            ), detail
            assert routes[1]["cost_micro"] == 4_000_000 and routes[1]["overflow"] is True
            rc, text, _ = srv.cli_in_process(LESSEE, "usage")
            assert rc == 0 and "cloud (pool)" in text and "lease" in text, text
            inv = c.get(f"/v1/invoices/{LESSEE}/2026-10").json()  # (small-lease's clock)
            assert inv["overflow"]["reserved_cents"] == 800, inv
            assert inv["pools"][0]["lines"][0]["description"] == "cloud H100-SXM-80GB on demand"
            for j in [*fill, a, b, over, late]:
                assert op.post(f"/v1/jobs/{j}/cancel").status_code == 200
            assert state(c, a)["state"] == "cancelled"
