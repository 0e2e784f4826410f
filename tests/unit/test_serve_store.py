"""The store remembers what seeded it, the demo keeps its own store, and a real backend
never runs a job without a command (issue 13, point 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cotenant.api.app import create_app
from cotenant.backends.base import JobEnded
from cotenant.cluster.state import Placement
from cotenant.model.errors import SpecError
from cotenant.server.bootstrap import bootstrap
from cotenant.server.settings import Settings, load_settings
from cotenant.store.repo import Store


def seed(db: str, **kw: object) -> list[str]:
    s = Settings(db=db, **kw)  # type: ignore[arg-type]
    store = Store(s.db)
    try:
        return [k.token for k in bootstrap(store, s)]
    finally:
        store.close()


def test_a_store_refuses_a_scenario_other_than_its_seed(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'c.db'}"
    assert seed(db, demo=True)  # seeded from colossus-lease
    with pytest.raises(SpecError) as e:
        seed(db, scenario="small-lease")
    assert e.value.field == "--scenario"
    assert "colossus-lease" in str(e.value) and "--reset" in str(e.value)
    assert seed(db, scenario="colossus-lease") == []  # the same scenario: fine, no new keys
    assert seed(db) == []  # no scenario asked: fine


def test_the_demo_keeps_its_own_store() -> None:
    assert load_settings(demo=True).db.endswith("cotenant-demo.db")
    assert load_settings().db.endswith("/cotenant.db")
    assert load_settings(demo=True, db="sqlite:///x.db").db == "sqlite:///x.db"


def test_a_real_backend_refuses_a_job_without_a_command(tmp_path: Path) -> None:
    s = Settings(
        db=f"sqlite:///{tmp_path / 'l.db'}",
        demo=True,
        scenario="small-lease",
        backend="local",
        state_dir=str(tmp_path / "runs"),
        min_step_s=0.01,
    )
    store = Store(s.db)
    keys = {k.role.value: k.token for k in bootstrap(store, s)}
    store.close()
    with TestClient(create_app(s)) as c:
        h = {"Authorization": f"Bearer {keys['operator']}"}
        body = {"tenant": "lessee-lab", "gpus": 1, "duration_s": 60}
        r = c.post("/v1/jobs", json=body, headers=h)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["field"] == "command"
        r = c.post("/v1/jobs", json={**body, "command": ["true"]}, headers=h)
        assert r.status_code == 201, r.text


def test_the_local_backend_never_runs_a_commandless_job(tmp_path: Path) -> None:
    from builders import cluster, job
    from cotenant.backends.base import StartRequest
    from cotenant.backends.local import EXIT_NOT_STARTED, LocalBackend

    topo = cluster(nodes=1)
    b = LocalBackend(topo, tmp_path)
    spec = job("sim-only", "B", 1, duration_s=60, submit_s=0)
    b.start(StartRequest(spec, 1, Placement((0,), (1,)), (topo.node_names[0],), 0, 0, 0))
    assert b.runs() == []  # nothing started
    (ev,) = b.poll(1)
    assert isinstance(ev, JobEnded) and ev.exit_code == EXIT_NOT_STARTED
    err = (tmp_path / "jobs" / "sim-only" / "attempt-1.err").read_text()
    assert "no command" in err
    b.close()


def test_keys_out_on_a_set_up_store_says_why_and_how(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys
    import time

    from harness import free_ports

    db = f"sqlite:///{tmp_path / 'k.db'}"
    seed(db, scenario="small-lease")
    keys = tmp_path / "keys.json"
    argv = [sys.executable, "-m", "cotenant.cli.main", "serve", "--db", db]
    argv += ["--port", str(free_ports(1)[0]), "--keys-out", str(keys)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        assert proc.stdout is not None
        out = ""
        deadline = time.monotonic() + 60
        while "serving on" not in out and time.monotonic() < deadline:
            line = proc.stdout.readline().decode()
            if not line:
                break
            out += line
    finally:
        proc.kill()
        proc.wait(10)
    assert "no keys printed" in out and "already set up" in out, out
    assert f"cotenant keys issue --db {db} --role operator" in out
    assert not keys.exists()


def test_reset_deletes_a_sqlite_store_only(tmp_path: Path) -> None:
    from cotenant.cli.serve import reset_store

    db = f"sqlite:///{tmp_path / 'r.db'}"
    seed(db, demo=True)
    (tmp_path / "r.db-wal").write_bytes(b"")
    reset_store(db)
    assert not (tmp_path / "r.db").exists() and not (tmp_path / "r.db-wal").exists()
    assert seed(db, scenario="small-lease")  # seeded afresh: new keys
    with pytest.raises(SpecError) as e:
        reset_store("postgresql://u@localhost/cotenant")
    assert e.value.field == "--reset"
