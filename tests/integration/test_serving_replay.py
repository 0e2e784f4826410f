"""The Alibaba 2025 serving trace replayed through the autoscaler (``cotenant simulate
alibaba-serving``); skipped where ../shared/data is absent."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from cotenant.serving.demand import ALIBABA_2025_DIR, ALIBABA_2025_FILE
from cotenant.twin.runtime import simulate
from cotenant.twin.scenario import load_scenario

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
TRACE = SHARED / ALIBABA_2025_DIR / ALIBABA_2025_FILE

pytestmark = [
    pytest.mark.shared,
    pytest.mark.skipif(
        not TRACE.is_file(),
        reason=f"the Alibaba 2025 serving trace is not at {TRACE} (see shared/data/README.md)",
    ),
]


def test_replay_reports_slo_attainment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COTENANT_DATA", str(SHARED))
    sc = load_scenario("alibaba-serving")
    _, report = simulate(replace(sc, duration_s=7 * 86_400))
    m = report.extra["services"]["services"]["dlrm-replay"]
    # 0.25 req/s for each of the ~3,100-3,400 GPU instances alive: ~770-850 req/s.
    assert 700 < m["peak_demand_rps"] < 900
    assert m["slo_attainment"] >= 0.999
    assert m["requests_served"] > 0 and m["requests_dropped"] / m["requests_served"] < 1e-3
    assert 30 <= m["peak_replicas_serving"] <= 48
    assert report.guarantee_violation_s() == 0


def test_cli_replays_it(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "cotenant.cli.main", "simulate", "alibaba-serving", "--days", "2",
         "--json", "--no-progress"],
        capture_output=True, text=True, check=True, env={"COTENANT_DATA": str(SHARED),
         "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    section = json.loads(out.stdout)["services"]
    assert section["services"]["dlrm-replay"]["slo_attainment"] >= 0.999
    assert section["series"]["serving_gpus"]["serving-lab"]
