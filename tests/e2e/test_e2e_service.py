"""The real server on SQLite and PostgreSQL, driven over HTTP and through the CLI client."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
from live import LiveServer

OWNER, LESSEE = "owner-lab", "lessee-lab"


def wait_for(c: httpx.Client, job_id: str, state: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        j: dict[str, Any] = c.get(f"/v1/jobs/{job_id}").json()
        if j["state"] == state or time.monotonic() > deadline:
            return j
        time.sleep(0.05)


def test_http_lifecycle_of_tenants_contracts_and_jobs(server: LiveServer) -> None:
    with server.client("operator") as op, server.client(LESSEE) as lessee:
        r = op.post(
            "/v1/tenants",
            json={
                "name": "third-lab",
                "contract": {
                    "commitment": {"gpus": 0},
                    "isolation": {"rivals": [OWNER]},
                    "term": {"start": "2026-10-01", "length": "30d"},
                },
            },
        )
        assert r.status_code == 201, r.text
        k = op.post("/v1/keys", json={"role": "tenant-admin", "tenant": "third-lab"}).json()
        server.keys["third-lab"] = k["token"]

        j = lessee.post(
            "/v1/jobs",
            json={
                "gpus": 16,
                "duration_s": 3 * 3600,
                "name": "pretrain",
                "kind": "training",
                "checkpoint_interval_s": 3600,
            },
        )
        assert j.status_code == 201
        job = wait_for(lessee, j.json()["id"], "running")
        assert job["reason"] == "placed-own" and len(job["placement"]["nodes"]) == 2
        assert lessee.get(f"/v1/jobs/{job['id']}/why").json()["state"] == "running"

        with server.client("third-lab") as third:
            t = third.post("/v1/jobs", json={"gpus": 8, "duration_s": 600})
            borrowed = wait_for(third, t.json()["id"], "running")
            assert borrowed["borrowed"] is True  # no commitment: it runs on lent capacity
            assert third.get("/v1/cluster").json()["tenants"][0]["tenant"] == "third-lab"

        amended = op.put(
            f"/v1/tenants/{OWNER}/contract",
            json={
                "commitment": {"gpus": 40},
                "isolation": {"rivals": [LESSEE]},
                "term": {"start": "2026-10-01", "end": "2027-10-01"},
                "priority": 10,
            },
        )
        assert amended.status_code == 200 and amended.json()["commitment"]["gpus"] == 40
        notice = op.post("/v1/tenants/third-lab/contract/notice", json={})
        assert notice.status_code == 200

        time.sleep(0.5)
        usage = {u["tenant"]: u for u in op.get("/v1/usage").json()["tenants"]}
        assert usage[LESSEE]["gpu_seconds"] > 0
        inv = op.get(f"/v1/invoices/{LESSEE}/2026-10").json()
        assert inv["tenant"] == LESSEE and inv["total_cents"] > 0
        metrics = op.get("/metrics").text
        for name in (
            "cotenant_queue_depth",
            "cotenant_allocated_gpus{tenant=",
            "cotenant_entitled_gpus{tenant=",
            "cotenant_decisions_per_second",
            "cotenant_decisions_total",
        ):
            assert name in metrics

        canc = lessee.post(f"/v1/jobs/{job['id']}/cancel")
        assert canc.status_code == 200 and canc.json()["state"] == "cancelled"

        export = op.get("/v1/audit")
        kinds = [json.loads(line)["kind"] for line in export.text.splitlines()]
        for kind in (
            "cluster-created",
            "key-issued",
            "tenant-created",
            "contract-create",
            "contract-amend",
            "contract-notice",
            "job-submitted",
            "place",
            "cancel",
        ):
            assert kind in kinds, kind
        assert op.get("/v1/audit/verify").json()["ok"]
        assert op.get("/v1/admin/invariants").json() == {"ok": True, "problems": []}


def test_cli_client_drives_the_server(server: LiveServer, tmp_path: Path) -> None:
    # The installed entry point, as a user runs it...
    out = server.cli(
        LESSEE,
        "jobs",
        "submit",
        "--gpus",
        "8",
        "--duration",
        "2h",
        "--name",
        "cli-run",
        "--idempotency-key",
        "cli-1",
        "--",
        "python",
        "train.py",
    )
    job_id = out.stdout.strip()
    assert job_id.startswith("job-")
    bad = server.cli(LESSEE, "jobs", "submit", "--gpus", "0", "--duration", "1h", check=False)
    assert bad.returncode == 2 and "body.gpus" in bad.stderr

    # ...and the same commands in process, to keep the suite fast.
    def cli(who: str, *args: str, code: int = 0) -> tuple[str, str]:
        rc, stdout, stderr = server.cli_in_process(who, *args)
        assert rc == code, (args, stdout, stderr)
        return stdout, stderr

    again, _ = cli(
        LESSEE,
        "jobs",
        "submit",
        "--gpus",
        "8",
        "--duration",
        "2h",
        "--name",
        "cli-run",
        "--idempotency-key",
        "cli-1",
        "--",
        "python",
        "train.py",
    )
    assert again.strip() == job_id
    assert "cli-run" in cli(LESSEE, "jobs", "list", "--all")[0]
    got = json.loads(cli(LESSEE, "jobs", "get", job_id, "--json")[0])
    assert got["command"] == ["python", "train.py"] and got["tenant"] == LESSEE
    assert job_id in cli(LESSEE, "jobs", "why", job_id)[0]
    assert LESSEE in cli(LESSEE, "usage")[0]
    cluster = cli(LESSEE, "cluster")[0]
    assert "GPUs" in cluster and OWNER not in cluster
    assert "cancelled" in cli(LESSEE, "jobs", "cancel", job_id)[0]
    _, err = cli(OWNER, "jobs", "get", job_id, code=2)
    assert "no job" in err and "HTTP 404" in err

    export = tmp_path / "audit.jsonl"
    head = cli("auditor", "audit", "export", "--out", str(export))[0].split()[-1]
    assert cli("auditor", "audit", "verify", "--file", str(export), "--head", head)[0].startswith(
        "ok:"
    )
    lines = export.read_text().splitlines()
    export.write_text("\n".join(lines[:2] + lines[3:]) + "\n")
    _, err = cli("auditor", "audit", "verify", "--file", str(export), code=1)
    assert "bad entry seq 3" in err


def test_a_restart_keeps_jobs_placements_and_the_chain(server: LiveServer) -> None:
    with server.client(OWNER) as owner:
        run = owner.post("/v1/jobs", json={"gpus": 8, "duration_s": 86_400}).json()
        wait_for(owner, run["id"], "running")
        before = owner.get(f"/v1/jobs/{run['id']}").json()
    server.restart()
    with server.client(OWNER) as owner, server.client("operator") as op:
        after = owner.get(f"/v1/jobs/{run['id']}").json()
        assert after["state"] == "running" and after["placement"] == before["placement"]
        assert op.get("/v1/admin/invariants").json()["ok"]
        assert op.get("/v1/audit/verify").json()["ok"]
    rc, stdout, _ = server.cli_in_process("operator", "audit", "verify", "--db", server.db_url)
    assert rc == 0 and stdout.startswith("ok:")
