"""Kill the server with SIGKILL, again and again, while clients submit jobs; restart it
each time. Every submission that got a 2xx must exist exactly once, no GPU may be
allocated twice, and the audit chain must verify.

Clients retry each submission with the same Idempotency-Key until it gets a 2xx (a
submission whose answer was lost in the crash may have been stored; the retry then
returns the stored job instead of making a second one).
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter

import httpx
import pytest
from live import LiveServer, all_jobs

KILLS = 5
CLIENTS = 4


def submitter(
    server: LiveServer,
    who: str,
    n: int,
    stop: threading.Event,
    accepted: dict[str, str],
    errors: list[str],
) -> None:
    rng = random.Random(n)
    i = 0
    with httpx.Client(
        base_url=server.url, timeout=3.0, headers={"Authorization": f"Bearer {server.keys[who]}"}
    ) as c:
        while not stop.is_set():
            key = f"{who}-{n}-{i}"
            body = {
                "gpus": rng.choice([1, 2, 4, 8, 16, 32]),
                "name": key,
                "duration_s": rng.randrange(60, 4 * 3600),
                "checkpoint_interval_s": 900,
            }
            while True:  # until this submission is acknowledged
                try:
                    r = c.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
                except httpx.TransportError:
                    time.sleep(0.05)
                    continue
                if r.status_code in (200, 201):
                    job_id = r.json()["id"]
                    if accepted.setdefault(key, job_id) != job_id:
                        errors.append(f"{key}: acknowledged as {accepted[key]} and {job_id}")
                    break
                if r.status_code >= 500:
                    errors.append(f"{key}: HTTP {r.status_code} {r.text}")
                    time.sleep(0.05)
                    continue
                errors.append(f"{key}: HTTP {r.status_code} {r.text}")
                break
            i += 1


@pytest.mark.slow
def test_sigkill_loses_no_acknowledged_job_and_duplicates_none(sqlite_server: LiveServer) -> None:
    s = sqlite_server
    accepted: dict[str, str] = {}
    errors: list[str] = []
    stop = threading.Event()
    threads = [
        threading.Thread(target=submitter, args=(s, who, n, stop, accepted, errors), daemon=True)
        for n, who in enumerate(["owner-lab", "lessee-lab"] * (CLIENTS // 2))
    ]
    for t in threads:
        t.start()
    rng = random.Random(0)
    for _ in range(KILLS):
        time.sleep(rng.uniform(0.4, 1.2))
        s.kill(signal.SIGKILL)
        s.start()
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(30)
    assert errors == []
    assert len(accepted) > 50, "the clients hardly submitted anything"

    with s.client("operator") as op:
        jobs = all_jobs(op)
        ids = Counter(j["id"] for j in jobs)
        keys = Counter(j["idempotency_key"] for j in jobs)
        assert [i for i, n in ids.items() if n > 1] == []
        assert [k for k, n in keys.items() if n > 1] == []
        stored = {j["idempotency_key"]: j["id"] for j in jobs}
        missing = [k for k in accepted if k not in stored]
        assert missing == []
        assert {k: stored[k] for k in accepted} == accepted
        assert len(jobs) == len(accepted)  # every stored job was acknowledged in the end

        # No GPU given twice: the engine's own check, and one from the stored placements.
        assert op.get("/v1/admin/invariants").json() == {"ok": True, "problems": []}
        held: Counter[str] = Counter()
        for j in jobs:
            if j["state"] in ("running", "reclaiming"):
                for node, g in zip(j["placement"]["nodes"], j["placement"]["gpus"], strict=True):
                    held[node] += g
        assert max(held.values(), default=0) <= 8
        assert op.get("/v1/audit/verify").json()["ok"]
        started = [
            line
            for line in op.get("/v1/audit").text.splitlines()
            if '"kind":"service-started"' in line
        ]
        assert len(started) == KILLS + 1
    rc, _, err = s.cli_in_process("operator", "audit", "verify", "--db", s.db_url)
    assert rc == 0, err
