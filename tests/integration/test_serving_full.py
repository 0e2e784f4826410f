"""The Alibaba 2025 serving loader on the full trace in ../shared/data (skipped without it)."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from cotenant.model.time import DAY, HOUR
from cotenant.serving.demand import (
    ALIBABA_2025_DIR,
    ALIBABA_2025_FILE,
    AlibabaServingTrace,
    alibaba_serving,
    read_alibaba_serving,
)

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
TRACE = SHARED / ALIBABA_2025_DIR / ALIBABA_2025_FILE
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "alibaba2025_serving_excerpt.csv"

pytestmark = pytest.mark.shared


@pytest.fixture(scope="module")
def trace() -> AlibabaServingTrace:
    if not TRACE.is_file():
        pytest.skip(f"the Alibaba 2025 serving trace is not at {TRACE} (see shared/data/README.md)")
    return read_alibaba_serving(SHARED)


def test_published_counts(trace: AlibabaServingTrace) -> None:
    assert len(trace.app_names) == 156
    assert trace.app.size == 23_871
    assert trace.bad_rows == ()
    assert Counter(trace.role) == {"CN": 16_485, "HN": 7_386}
    # 7,280 instances were already running at the trace start; 8,878 outlive its end
    assert int(np.isnan(trace.start_s).sum()) == 7_280
    assert int(np.isnan(trace.end_s).sum()) == 8_878
    # offsets in seconds from the trace start; the last event is just under 31 days in
    assert 30 * DAY < trace.end_of_trace_s < 31 * DAY


def test_top_app_curve(trace: AlibabaServingTrace) -> None:
    counts = trace.instance_counts()
    assert counts[0] == ("app_0", 2_551)
    curves = alibaba_serving(trace, step_s=300, top=5)
    assert list(curves)[:2] == ["app_0", "app_87"] and "all" in curves
    top = curves["app_0"]
    assert len(top) == 8_926  # 300-s steps over 2,677,541 s
    # app_0 kept 1,173..1,332 instances alive; it grew over the month
    assert top.rps.min() >= 1_170 and top.rps.max() <= 1_335
    assert top.rps[-12:].mean() > top.rps[:12].mean() + 100
    # the sum over all apps is above the top app, and within the instance count
    assert bool(np.all(curves["all"].rps >= top.rps))
    assert curves["all"].rps.max() < 23_871


def test_hourly_means_bracket_point_counts(trace: AlibabaServingTrace) -> None:
    """The mean alive over each hour lies between the alive counts sampled in that hour."""
    hourly = alibaba_serving(trace, app="app_87", step_s=HOUR)["app_87"].rps
    rows = []
    with TRACE.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row["app_name"] == "app_87":
                s = float(row["scheduled_time"]) if row["scheduled_time"] else 0.0
                e = float(row["deletion_time"]) if row["deletion_time"] else np.inf
                rows.append((s, e))
    starts = np.array([s for s, _ in rows])
    ends = np.array([e for _, e in rows])
    for k in (0, 100, 400, 743):
        samples = [
            int(np.sum((starts <= t) & (t < ends))) for t in range(k * HOUR, (k + 1) * HOUR, 10)
        ]
        assert min(samples) - 1e-9 <= hourly[k] <= max(samples) + 1e-9


def test_excerpt_curves_equal_the_full_file(trace: AlibabaServingTrace) -> None:
    end = trace.end_of_trace_s
    for app in ("app_89", "app_132", "app_138"):
        full = alibaba_serving(trace, app=app, step_s=3600)[app]
        excerpt = alibaba_serving(FIXTURE, app=app, step_s=3600, end_s=end)[app]
        np.testing.assert_array_equal(excerpt.times_s, full.times_s)
        np.testing.assert_allclose(excerpt.rps, full.rps, rtol=1e-12)
