"""The full public traces from ../shared/data against their published figures.

Sources are cited in ../shared/data/README.md and docs/traces.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cotenant.model.accelerators import CATALOGUE
from cotenant.traces import Trace, load_trace

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
PHILLY = DATA / "philly" / "philly_jobs.csv"
ALIBABA = DATA / "alibaba-gpu-2023"

pytestmark = pytest.mark.shared


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data not found at {path} (expected beside the repo checkout)")
    return path


@pytest.fixture(scope="module")
def philly() -> Trace:
    return load_trace("philly", need(PHILLY))


@pytest.fixture(scope="module")
def alibaba() -> Trace:
    return load_trace("alibaba-2023", need(ALIBABA))


def test_philly_published_facts(philly: Trace) -> None:
    assert len(philly.jobs) == 82_247
    assert philly.problems == ()
    assert len(philly.tenants) == 15
    assert round(philly.gpu_seconds / 3600) == 978_078  # "978k GPU-hours"
    assert {j.gpus for j in philly.jobs} == {1, 2, 4, 8, 12, 16, 24, 32, 64, 128}
    assert max(j.duration_s for j in philly.jobs) / 86_400 == pytest.approx(53.6, abs=0.05)


def test_philly_span_and_quotas(philly: Trace) -> None:
    # 2017-09-04 10:30:41 .. 2017-12-22 08:02:11, read as UTC
    assert (philly.jobs[0].submit_s, philly.jobs[-1].submit_s) == (1_504_521_041, 1_513_929_731)
    assert len(philly.quotas_gpus) == 11  # vc_quota_nodes.csv sits beside the jobs
    assert sum(philly.quotas_gpus.values()) == 352 * 8


def test_philly_eight_gpu_jobs_hold_about_half_the_gpu_time(philly: Trace) -> None:
    eight = sum(j.gpus * j.duration_s for j in philly.jobs if j.gpus == 8)
    assert eight / philly.gpu_seconds == pytest.approx(0.48, abs=0.01)
    ones = sum(j.gpus == 1 for j in philly.jobs)
    assert ones / len(philly.jobs) == pytest.approx(0.93, abs=0.01)


def test_alibaba_published_facts(alibaba: Trace) -> None:
    assert len(alibaba.nodes) == 1_213
    assert sum(n.gpus for n in alibaba.nodes) == 6_212
    assert alibaba.problems == ()
    # 8,152 pods: 7,064 ask for a GPU, 1,088 are CPU-only.
    assert len(alibaba.jobs) == 7_064
    assert "1088 CPU-only pods dropped" in alibaba.notes
    assert {n.accelerator for n in alibaba.nodes} == {
        f"ali-{m}" for m in ("A10", "G2", "G3", "P100", "T4", "V100M16", "V100M32")
    }
    assert CATALOGUE["ali-G2"].gpus_per_node == 8


def test_alibaba_span_is_149_days(alibaba: Trace) -> None:
    span = alibaba.jobs[-1].submit_s - alibaba.jobs[0].submit_s
    assert span / 86_400 == pytest.approx(149.3, abs=0.1)
