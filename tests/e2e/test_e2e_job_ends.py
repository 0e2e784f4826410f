"""Job end states and logs through the API and the CLI, on the real server with the
local backend: output readable while the job runs, after it ends, and after a kill -9 of
the server; a rival's key gets 404; exit codes, signals and attempts; ``jobs why`` and
the job's reason agree."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx
from live import LiveServer

from harness import poll as wait_for

LESSEE, OWNER = "lessee-lab", "owner-lab"
# Prints a line, waits for the test to create a file, prints another, exits 3.
SCRIPT = "echo first; echo oops >&2; while [ ! -e {go} ]; do sleep 0.1; done; echo second; exit 3"


def submit(c: httpx.Client, command: list[str]) -> str:
    r = c.post("/v1/jobs", json={"gpus": 1, "duration_s": 60, "command": command})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def logs(c: httpx.Client, job: str, **params: Any) -> httpx.Response:
    return c.get(f"/v1/jobs/{job}/logs", params=params)


def test_logs_exit_codes_and_attempts_survive_a_kill(tmp_path: Path) -> None:
    srv = LiveServer(
        f"sqlite:///{tmp_path / 'c.db'}",
        tmp_path,
        speed=1,
        extra=("--backend", "local", "--state-dir", str(tmp_path / "runs")),
    )
    go = tmp_path / "go"
    with srv:
        with srv.client(LESSEE) as c:
            job = submit(c, ["sh", "-c", SCRIPT.format(go=go)])
            assert wait_for(lambda: logs(c, job).text == "first\n"), logs(c, job).text
            assert logs(c, job, stream="err").text == "oops\n"
            running = c.get(f"/v1/jobs/{job}").json()
            assert running["state"] == "running" and running["exit_code"] is None
            (a1,) = running["attempts"]
            assert a1["attempt"] == 1 and a1["outcome"] is None and a1["nodes"]
            why = c.get(f"/v1/jobs/{job}/why").json()
            assert why["state"] == "running" and why["nodes"] == a1["nodes"]
            assert why["since_s"] == a1["start_s"]
        with srv.client(OWNER) as rival:
            assert logs(rival, job).status_code == 404
            assert rival.get(f"/v1/jobs/{job}/why").status_code == 404
        rc, out, _ = srv.cli_in_process(LESSEE, "jobs", "logs", job)
        assert rc == 0 and out == "first\n"

        srv.kill(signal.SIGKILL)  # the job runs on; its output is on disk
        go.touch()
        srv.start()
        with srv.client(LESSEE) as c:
            done = wait_for(lambda: c.get(f"/v1/jobs/{job}").json()["state"] == "failed")
            assert done, c.get(f"/v1/jobs/{job}").text
            j = c.get(f"/v1/jobs/{job}").json()
            assert j["exit_code"] == 3 and j["signal"] is None and j["ended_at"] == j["end_s"]
            assert j["reason"] == "failed" and j["reason_detail"] == "exit code 3"
            (a1,) = j["attempts"]
            assert (a1["outcome"], a1["exit_code"]) == ("failed", 3) and a1["end_s"] is not None
            assert logs(c, job).text == "first\nsecond\n"
            assert logs(c, job, attempt=2).status_code == 404
            why = c.get(f"/v1/jobs/{job}/why").json()
            assert (why["reason"], why["detail"]) == (j["reason"], j["reason_detail"])

            killed = submit(c, ["sh", "-c", "echo up; kill -KILL $$"])
            wait_for(lambda: c.get(f"/v1/jobs/{killed}").json()["state"] == "failed")
            k = c.get(f"/v1/jobs/{killed}").json()
            assert (k["exit_code"], k["signal"]) == (137, "SIGKILL"), k

            followed = submit(c, ["sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.3; done"])
        # (-f on a job that has not started yet waits for it)
        rc, out, err = srv.cli_in_process(LESSEE, "jobs", "logs", followed, "-f")
        assert rc == 0 and out == "1\n2\n3\n", (out, err)
        rc, out, _ = srv.cli_in_process(LESSEE, "jobs", "why", job)
        assert rc == 0 and out.startswith(f"{job}: failed at ") and "exit code 3" in out
        rc, out, _ = srv.cli_in_process(LESSEE, "jobs", "list", "--json")
        assert rc == 0
        rc, out, _ = srv.cli_in_process(LESSEE, "jobs", "get", killed)
        assert rc == 0 and "SIGKILL" in out
