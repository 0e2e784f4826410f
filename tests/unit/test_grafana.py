"""The Grafana dashboard in deploy/ queries only metrics the server exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from fastapi.testclient import TestClient
from test_api import key_map

from cotenant.api.app import create_app
from cotenant.server.bootstrap import bootstrap
from cotenant.server.settings import Settings
from cotenant.store.repo import Store

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "cotenant-dashboard.json"
METRIC = re.compile(r"\bcotenant_[a-z0-9_]+\b")


def dashboard_metrics() -> set[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert exprs, "the dashboard has no queries"
    return {m for e in exprs for m in METRIC.findall(e)}


def exported_metrics(text: str) -> set[str]:
    return {
        line.split("{")[0].split(" ")[0]
        for line in text.splitlines()
        if line.startswith("cotenant_")
    }


def test_every_metric_the_dashboard_queries_is_exported(tmp_path: Path) -> None:
    # colossus-lease has a power cap, so every family is exported (its workload stays off)
    s = Settings(db=f"sqlite:///{tmp_path / 'g.db'}", demo=True, scenario="colossus-lease")
    store = Store(s.db)
    keys = key_map(bootstrap(store, s))
    store.close()
    with TestClient(create_app(s)) as c:
        r = c.get("/metrics", headers={"Authorization": f"Bearer {keys['auditor']}"})
        assert r.status_code == 200
    wanted = dashboard_metrics()
    missing = sorted(wanted - exported_metrics(r.text))
    assert not missing, f"the dashboard queries metrics /metrics does not export: {missing}"
    # and it covers each per-tenant family the server exports
    assert {"cotenant_allocated_gpus", "cotenant_entitled_gpus", "cotenant_borrowed_gpus"} <= wanted


def test_a_misspelt_metric_would_be_caught() -> None:
    assert exported_metrics("cotenant_free_gpus 3.0\n") == {"cotenant_free_gpus"}
    assert "cotenant_free_gpu" not in exported_metrics("cotenant_free_gpus 3.0\n")
