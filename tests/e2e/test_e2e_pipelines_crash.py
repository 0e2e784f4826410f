"""Kill the server with SIGKILL while pipelines are in flight; restart it each time.

Eight 3-stage pipelines (pretrain -> sft -> eval, each stage ``after_ok`` the one
before) and one whose first stage is cancelled, so its second can never start, run on
the small-lease server at 60x while it is killed 4 times. After each restart:

- every stage is where it was: a stage that had ended (completed or cancelled) before the
  kill is still so, with the same end; a stage that had started never went back to waiting;
- dependencies still hold: no stage has started before the stage it waits for completed,
  and a stage still pending waits (``waiting-for-dependency``, naming the job) while what
  it waits for is live.

At the end every pipeline completed in order, and the other one's second stage ended
``dependency-never-met`` (its third, waiting for any end of the second, ran).
"""

from __future__ import annotations

import random
import signal
import time
from typing import Any

import httpx
import pytest
from live import LiveServer

KILLS = 4
OWNER = "owner-lab"


def stages(seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {"name": "pretrain", "gpus": 16, "duration_s": rng.randrange(120, 600)},
        {"name": "sft", "gpus": 8, "duration_s": rng.randrange(60, 300), "after_ok": ["pretrain"]},
        {"name": "eval", "gpus": 4, "duration_s": rng.randrange(30, 120), "after_ok": ["sft"]},
    ]


def snapshot(c: httpx.Client, ids: list[str]) -> dict[str, dict[str, Any]]:
    return {pid: c.get(f"/v1/pipelines/{pid}").json() for pid in ids}


def check_holds(pipes: dict[str, dict[str, Any]]) -> None:
    """No stage started before the stage it waits for completed; a pending stage waits for
    a live one with its reason naming it."""
    for p in pipes.values():
        by_name = {s["name"]: s for s in p["stages"]}
        for s in p["stages"]:
            for dep in s["after"]:
                for name in dep["jobs"]:
                    before = by_name[name]
                    if s["first_start_s"] is not None:
                        assert before["end_s"] is not None, (p["id"], s["name"])
                        assert before["end_s"] <= s["first_start_s"], (p["id"], s["name"])
                        if dep["kind"] == "after_ok":
                            assert before["state"] == "completed", (p["id"], s["name"])
                    if s["state"] == "pending" and before["state"] in ("pending", "running"):
                        assert s["reason"] == "waiting-for-dependency", s
                        assert before["job"] in s["reason_detail"], s


def check_kept(old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]) -> None:
    """What had ended is still ended the same way; what had started did not go back."""
    for pid, p in old.items():
        for was, now in zip(p["stages"], new[pid]["stages"], strict=True):
            if was["state"] in ("completed", "cancelled", "failed"):
                assert (now["state"], now["end_s"]) == (was["state"], was["end_s"]), (pid, was)
            if was["first_start_s"] is not None:
                assert now["first_start_s"] == was["first_start_s"], (pid, was)


@pytest.mark.slow
def test_sigkill_with_pipelines_in_flight_keeps_every_stage_where_it_was(
    sqlite_server: LiveServer,
) -> None:
    s = sqlite_server
    with s.client(OWNER) as c:
        ids = []
        for n in range(8):
            r = c.post("/v1/pipelines", json={"name": f"llm-{n}", "stages": stages(n)})
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        doomed = [
            {"name": "data", "gpus": 8, "duration_s": 86_400},
            {"name": "train", "gpus": 8, "duration_s": 60, "after_ok": ["data"]},
            {"name": "report", "gpus": 1, "duration_s": 60, "after": ["train"]},
        ]
        r = c.post("/v1/pipelines", json={"name": "doomed", "stages": doomed})
        assert r.status_code == 201, r.text
        other = r.json()
        data_job = other["stages"][0]["job"]

    rng = random.Random(7)
    for k in range(KILLS):
        time.sleep(rng.uniform(0.8, 2.0))
        with s.client(OWNER) as c:
            if k == 1:
                assert c.post(f"/v1/jobs/{data_job}/cancel").status_code == 200
            before = snapshot(c, [*ids, other["id"]])
        check_holds(before)
        s.kill(signal.SIGKILL)
        s.start()
        with s.client(OWNER) as c:
            after = snapshot(c, [*ids, other["id"]])
        check_kept(before, after)
        check_holds(after)

    deadline = time.monotonic() + 90
    with s.client(OWNER) as c:
        while True:
            final = snapshot(c, [*ids, other["id"]])
            states = [final[pid]["state"] for pid in ids]
            if all(st == "completed" for st in states) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert states == ["completed"] * len(ids), final
        check_holds(final)
        o = final[other["id"]]["stages"]
        assert [x["state"] for x in o] == ["cancelled", "cancelled", "completed"], o
        assert o[1]["reason"] == "dependency-never-met"
        assert c.get("/v1/admin/invariants").status_code in (200, 403)
    with s.client("operator") as op:
        assert op.get("/v1/admin/invariants").json() == {"ok": True, "problems": []}
        assert op.get("/v1/audit/verify").json()["ok"]
