"""The CLI against the real server: ``jobs submit --after-ok``, ``pipelines submit FILE``,
``pipelines list|get|cancel``, and a bad file or dependency as one line, exit code 2."""

from __future__ import annotations

import json
import time
from pathlib import Path

from live import LiveServer

OWNER, LESSEE = "owner-lab", "lessee-lab"
FILE = """
name = "llm"

[[stages]]
name = "pretrain"
gpus = 16
duration = "1d"
[[stages]]
name = "sft"
gpus = 8
duration = "1h"
after_ok = ["pretrain"]
[[stages]]
name = "eval"
gpus = 1
duration = "10m"
after_ok = ["sft"]
"""


def test_pipelines_and_dependencies_from_the_cli(sqlite_server: LiveServer, tmp_path: Path) -> None:
    s = sqlite_server
    f = tmp_path / "llm.toml"
    f.write_text(FILE)
    rc, out, err = s.cli_in_process(OWNER, "pipelines", "submit", str(f))
    assert rc == 0, err
    pid = out.strip()
    assert pid.startswith("pipe-")

    rc, out, err = s.cli_in_process(OWNER, "pipelines", "get", pid, "--json")
    assert rc == 0, err
    p = json.loads(out)
    assert [st["name"] for st in p["stages"]] == ["pretrain", "sft", "eval"]
    deadline = time.monotonic() + 20
    while p["stages"][1]["reason"] != "waiting-for-dependency" and time.monotonic() < deadline:
        time.sleep(0.2)
        p = json.loads(s.cli_in_process(OWNER, "pipelines", "get", pid, "--json")[1])
    assert p["stages"][1]["reason"] == "waiting-for-dependency"

    rc, out, err = s.cli_in_process(OWNER, "pipelines", "get", pid)
    assert rc == 0 and "waiting-for-dependency" in out and "after_ok:pretrain" in out, out
    rc, out, err = s.cli_in_process(OWNER, "pipelines", "list")
    assert rc == 0 and pid in out, out

    # A job that waits for the pretraining stage, by id.
    pre = p["stages"][0]["job"]
    rc, out, err = s.cli_in_process(
        OWNER, "jobs", "submit", "--gpus", "8", "--duration", "1h", "--after-ok", pre
    )
    assert rc == 0, err
    rc, out2, err = s.cli_in_process(OWNER, "jobs", "get", out.strip(), "--json")
    assert json.loads(out2)["after"] == [{"kind": "after_ok", "jobs": [pre], "take_nodes": False}]

    rc, out, err = s.cli_in_process(OWNER, "pipelines", "cancel", pid)
    assert rc == 0 and out.strip() == f"{pid} cancelled", (out, err)

    # Bad input: one line, exit code 2.
    rc, _, err = s.cli_in_process(
        LESSEE, "jobs", "submit", "--gpus", "8", "--duration", "1h", "--after-ok", pre
    )
    assert rc == 2 and f"no job '{pre}' (HTTP 404)" in err and err.count("\n") == 1, err
    f.write_text(FILE.replace('after_ok = ["sft"]', 'after_ok = ["eval"]'))
    rc, _, err = s.cli_in_process(OWNER, "pipelines", "submit", str(f))
    assert rc == 2 and "stages: the dependencies form a cycle: eval -> eval" in err, err
    f.write_text(FILE.replace("gpus = 1\n", "gpus = -1\n"))
    rc, _, err = s.cli_in_process(OWNER, "pipelines", "submit", str(f))
    assert rc == 2 and "stages[2].gpus: must be a whole number >= 1, got -1" in err, err
    rc, _, err = s.cli_in_process(
        OWNER, "jobs", "submit", "--gpus", "8", "--duration", "1h", "--provider", "west"
    )
    assert rc == 2 and err.count("\n") == 1, err
    assert "providers[0]: this server runs one cluster: there are no providers to name" in err
    f.write_text(FILE + 'providers = ["west"]\n')  # on the last stage
    rc, _, err = s.cli_in_process(OWNER, "pipelines", "submit", str(f))
    assert rc == 2 and "providers[0]: this server runs one cluster" in err, err
