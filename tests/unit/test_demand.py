"""Demand curves: the step function, the synthetic diurnal shape, CSV I/O, and the Alibaba
2025 serving loader on its checked-in excerpt (checked against a brute-force count)."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cotenant.model.errors import SpecError
from cotenant.model.time import DAY, HOUR
from cotenant.serving.demand import (
    DemandCurve,
    alibaba_apps,
    alibaba_serving,
    diurnal,
    from_csv,
    read_alibaba_serving,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "alibaba2025_serving_excerpt.csv"
MONDAY_2024_01_01 = 1_704_067_200  # 2024-01-01 00:00 UTC was a Monday

# --- builders -------------------------------------------------------------------------


def curve(*points: tuple[int, float]) -> DemandCurve:
    return DemandCurve(
        np.array([t for t, _ in points], dtype=np.int64),
        np.array([v for _, v in points], dtype=np.float64),
    )


def quiet(**overrides: Any) -> DemandCurve:
    """One week from a Monday 00:00 UTC in 10-minute steps; no noise or bursts unless asked."""
    args: dict[str, Any] = {
        "start_s": MONDAY_2024_01_01,
        "days": 7,
        "step_s": 600,
        "peak_rps": 1000.0,
        "noise": 0.0,
    }
    args.update(overrides)
    return diurnal(**args)


def write(tmp_path: Path, text: str, name: str = "demand.csv") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


# --- the step function ------------------------------------------------------------------

HAND = curve((100, 1.0), (200, 5.0), (400, 2.0))


@pytest.mark.parametrize(
    ("t", "expected"),
    [(0, 0.0), (99, 0.0), (100, 1.0), (199, 1.0), (200, 5.0), (399, 5.0), (400, 2.0), (10**9, 2.0)],
)
def test_at_holds_each_value_until_the_next_point(t: int, expected: float) -> None:
    assert HAND.at(t) == expected
    assert HAND.values_at(np.array([t], dtype=np.int64))[0] == expected


@pytest.mark.parametrize(
    ("t0", "t1", "expected"),
    [
        pytest.param(0, 50, 0.0, id="before-start"),
        pytest.param(0, 100, 1.0, id="touches-first"),
        pytest.param(100, 199, 1.0, id="first-step"),
        pytest.param(150, 200, 5.0, id="closed-right-end"),
        pytest.param(201, 399, 5.0, id="inside-step"),
        pytest.param(250, 450, 5.0, id="spans-a-fall"),
        pytest.param(401, 10**6, 2.0, id="after-last"),
        pytest.param(300, 300, 5.0, id="instant"),
    ],
)
def test_max_over_a_closed_window(t0: int, t1: int, expected: float) -> None:
    assert HAND.max_over(t0, t1) == expected


def test_max_over_rejects_a_reversed_window() -> None:
    with pytest.raises(SpecError) as err:
        HAND.max_over(300, 200)
    assert err.value.field == "t1"


def test_scaled_and_read_only() -> None:
    doubled = HAND.scaled(2.0)
    np.testing.assert_array_equal(doubled.rps, [2.0, 10.0, 4.0])
    np.testing.assert_array_equal(doubled.times_s, HAND.times_s)
    assert doubled.times_s.dtype == np.int64
    with pytest.raises(ValueError):
        HAND.rps[0] = 3.0
    with pytest.raises(SpecError):
        HAND.scaled(-1.0)


@pytest.mark.parametrize(
    ("times", "rps", "field"),
    [
        pytest.param([0, 10, 10], [1.0, 2.0, 3.0], "times_s[2]", id="repeated-time"),
        pytest.param([0, 20, 10], [1.0, 2.0, 3.0], "times_s[2]", id="unsorted"),
        pytest.param([0, 10], [1.0, -2.0], "rps[1]", id="negative"),
        pytest.param([0, 10], [math.nan, 2.0], "rps[0]", id="nan"),
        pytest.param([0, 10], [1.0], "rps", id="lengths"),
        pytest.param([], [], "times_s", id="empty"),
    ],
)
def test_curve_rejects_bad_arrays(times: list[int], rps: list[float], field: str) -> None:
    with pytest.raises(SpecError) as err:
        DemandCurve(np.array(times, dtype=np.int64), np.array(rps, dtype=np.float64))
    assert err.value.field == field


# --- CSV ------------------------------------------------------------------------------


def test_csv_round_trip_is_exact(tmp_path: Path) -> None:
    original = diurnal(MONDAY_2024_01_01, 3, 300, 123.456, noise=0.1, bursts_per_day=2, seed=7)
    path = tmp_path / "d.csv"
    original.to_csv(path)
    assert path.read_text(encoding="utf-8").splitlines()[0] == "time_s,rps"
    back = from_csv(path)
    np.testing.assert_array_equal(back.times_s, original.times_s)
    np.testing.assert_array_equal(back.rps, original.rps)


def test_csv_reader_takes_other_column_orders_and_blank_lines(tmp_path: Path) -> None:
    c = from_csv(write(tmp_path, "rps,note,time_s\n1.5,a,0\n\n2.5,b,60\n"))
    np.testing.assert_array_equal(c.times_s, [0, 60])
    np.testing.assert_array_equal(c.rps, [1.5, 2.5])


@pytest.mark.parametrize(
    ("text", "line", "field"),
    [
        pytest.param("0,1\n60,2\n", 1, "header", id="no-header"),
        pytest.param("time_s,rps\n0,1\n60,abc\n", 3, "rps", id="bad-rps"),
        pytest.param("time_s,rps\n0,1\n60,-2\n", 3, "rps", id="negative-rps"),
        pytest.param("time_s,rps\n0,1\n60,inf\n", 3, "rps", id="infinite-rps"),
        pytest.param("time_s,rps\n0,1\n1.5,2\n", 3, "time_s", id="fractional-time"),
        pytest.param("time_s,rps\n0,1\nnoon,2\n", 3, "time_s", id="bad-time"),
        pytest.param("time_s,rps\n0,1\n60,2\n60,3\n", 4, "time_s", id="repeated-time"),
        pytest.param("time_s,rps\n0,1\n\n30\n", 4, "rps", id="short-row"),
    ],
)
def test_bad_csv_lines_name_line_and_field(
    tmp_path: Path, text: str, line: int, field: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as err:
        from_csv(path)
    assert err.value.field == field
    assert err.value.source == f"{path}:{line}"
    assert f":{line}: {field}:" in str(err.value)


def test_csv_with_header_only_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as err:
        from_csv(write(tmp_path, "time_s,rps\n"))
    assert err.value.field == "rps"


# --- diurnal --------------------------------------------------------------------------


def hours_of(c: DemandCurve, utc_offset_h: float = 0.0) -> np.ndarray:
    return ((c.times_s + int(utc_offset_h * HOUR)) % DAY) / HOUR


@pytest.mark.parametrize(("peak_hour", "utc_offset_h"), [(14.0, 0.0), (9.5, 0.0), (20.0, -5.0)])
def test_diurnal_peaks_at_peak_hour(peak_hour: float, utc_offset_h: float) -> None:
    c = quiet(days=1, peak_hour=peak_hour, utc_offset_h=utc_offset_h, weekend_ratio=1.0)
    i = int(np.argmax(c.rps))
    assert hours_of(c, utc_offset_h)[i] == pytest.approx(peak_hour, abs=600 / HOUR)
    assert c.rps.max() == pytest.approx(1000.0, rel=1e-3)
    # the trough is trough_ratio * peak, twelve hours later
    assert c.rps.min() == pytest.approx(300.0, rel=1e-3)
    j = int(np.argmin(c.rps))
    assert (hours_of(c, utc_offset_h)[j] - peak_hour) % 24 == pytest.approx(12.0, abs=600 / HOUR)


def test_weekend_is_lower_by_the_weekend_ratio() -> None:
    c = quiet(weekend_ratio=0.6)
    day_index = (c.times_s - MONDAY_2024_01_01) // DAY
    monday, saturday, sunday = (c.rps[day_index == d] for d in (0, 5, 6))
    np.testing.assert_allclose(saturday, 0.6 * monday, rtol=1e-12)
    np.testing.assert_allclose(sunday, 0.6 * monday, rtol=1e-12)


def test_diurnal_is_deterministic_for_a_seed() -> None:
    kw: dict[str, Any] = {"noise": 0.2, "bursts_per_day": 3.0}
    a, b, other = quiet(seed=11, **kw), quiet(seed=11, **kw), quiet(seed=12, **kw)
    np.testing.assert_array_equal(a.rps, b.rps)
    assert not np.array_equal(a.rps, other.rps)


def test_growth_compounds_per_day() -> None:
    c = quiet(days=8, growth_per_day=0.01)
    week = 7 * DAY // 600
    np.testing.assert_allclose(c.rps[week : 2 * week], c.rps[: len(c) - week] * 1.01**7)


def test_noise_is_mean_preserving() -> None:
    flat = quiet(days=28, trough_ratio=1.0, weekend_ratio=1.0, noise=0.1, seed=3)
    assert flat.rps.mean() == pytest.approx(1000.0, rel=0.01)
    assert flat.rps.std() > 50.0


def test_bursts_multiply_demand_and_raise_the_max() -> None:
    calm = quiet(days=14, seed=5)
    bursty = quiet(days=14, seed=5, bursts_per_day=2.0, burst_factor=3.0, burst_minutes=30)
    ratio = bursty.rps / calm.rps
    assert set(np.round(ratio, 12).tolist()) == {1.0, 3.0}
    assert bursty.rps.max() > calm.rps.max()
    in_burst = int(np.sum(ratio > 1.0))
    # about 28 bursts of 3 ten-minute steps each (overlaps merge)
    assert 20 <= in_burst <= 180


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"step_s": 0}, "step_s"),
        ({"days": 0}, "days"),
        ({"peak_rps": -1.0}, "peak_rps"),
        ({"trough_ratio": 1.5}, "trough_ratio"),
        ({"peak_hour": 24.0}, "peak_hour"),
        ({"growth_per_day": -1.0}, "growth_per_day"),
        ({"noise": -0.1}, "noise"),
        ({"bursts_per_day": -1.0}, "bursts_per_day"),
    ],
    ids=lambda v: v if isinstance(v, str) else ",".join(v),
)
def test_diurnal_rejects_bad_parameters(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as err:
        quiet(**overrides)
    assert err.value.field == field


# --- Alibaba 2025 serving: the excerpt ----------------------------------------------


def brute_force_mean_alive(app: str | None, step_s: int, end_s: float) -> list[float]:
    """Mean instances alive per bin, one instance and one bin at a time."""
    intervals = []
    with FIXTURE.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if app is not None and row["app_name"] != app:
                continue
            start = float(row["scheduled_time"]) if row["scheduled_time"] else 0.0
            end = float(row["deletion_time"]) if row["deletion_time"] else end_s
            intervals.append((start, end))
    out = []
    for k in range(math.ceil(end_s / step_s)):
        lo, hi = k * step_s, min((k + 1) * step_s, end_s)
        alive_s = sum(max(0.0, min(e, hi) - max(s, lo)) for s, e in intervals)
        out.append(alive_s / (hi - lo))
    return out


def test_alibaba_apps_on_the_excerpt() -> None:
    assert alibaba_apps(FIXTURE) == [("app_89", 147), ("app_132", 108), ("app_138", 70)]
    trace = read_alibaba_serving(FIXTURE)
    assert trace.bad_rows == ()
    assert trace.app.size == 325
    assert sorted(set(trace.role)) == ["CN", "HN"]
    assert int(np.isnan(trace.start_s).sum()) == 19  # app_89 instances running at the start


@pytest.mark.parametrize("app", ["app_89", "app_132", "app_138"])
def test_alibaba_curve_matches_brute_force(app: str) -> None:
    trace = read_alibaba_serving(FIXTURE)
    got = alibaba_serving(FIXTURE, app=app, step_s=DAY)[app]
    expected = brute_force_mean_alive(app, DAY, trace.end_of_trace_s)
    np.testing.assert_allclose(got.rps, expected, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(got.times_s, np.arange(len(expected)) * DAY)
    assert got.rps.max() > got.rps.min()  # a real, moving curve


def test_alibaba_all_is_the_sum_and_options_apply() -> None:
    curves = alibaba_serving(FIXTURE, step_s=3600, top=2)
    assert list(curves) == ["app_89", "app_132", "all"]
    apps = alibaba_serving(FIXTURE, app="app_138", step_s=3600)["app_138"].rps
    np.testing.assert_allclose(
        curves["all"].rps, curves["app_89"].rps + curves["app_132"].rps + apps
    )

    shifted = alibaba_serving(
        FIXTURE, app="all", step_s=3600, epoch_s=MONDAY_2024_01_01, rps_per_instance=25.0
    )["all"]
    np.testing.assert_array_equal(shifted.times_s, curves["all"].times_s + MONDAY_2024_01_01)
    np.testing.assert_allclose(shifted.rps, 25.0 * curves["all"].rps)

    gpu = alibaba_serving(FIXTURE, app="all", step_s=3600, role="HN")["all"].rps
    cpu = alibaba_serving(FIXTURE, app="all", step_s=3600, role="CN")["all"].rps
    np.testing.assert_allclose(gpu + cpu, curves["all"].rps)


def test_alibaba_unknown_app_lists_what_exists() -> None:
    with pytest.raises(SpecError) as err:
        alibaba_serving(FIXTURE, app="app_0")
    assert err.value.field == "app"
    assert "app_89" in str(err.value)


def test_alibaba_bad_rows_are_counted_and_skipped(tmp_path: Path) -> None:
    lines = FIXTURE.read_text(encoding="utf-8").splitlines()
    header, good = lines[0], lines[1:4]
    cols = header.split(",")

    def row(**values: str) -> str:
        base = dict(zip(cols, good[0].split(","), strict=True))
        base.update(values)
        return ",".join(base[c] for c in cols)

    bad = [
        row(app_name=""),
        row(creation_time="10", scheduled_time="soon", deletion_time=""),
        row(creation_time="10", scheduled_time="20", deletion_time="15"),
        row(creation_time="-5", scheduled_time="20", deletion_time=""),
        row(creation_time="", scheduled_time="20", deletion_time=""),
    ]
    path = write(tmp_path, "\n".join([header, *good, *bad]) + "\n", "trace.csv")
    trace = read_alibaba_serving(path)
    assert trace.app.size == 3
    assert [(b.line, b.field) for b in trace.bad_rows] == [
        (5, "app_name"),
        (6, "scheduled_time"),
        (7, "deletion_time"),
        (8, "creation_time"),
        (9, "scheduled_time"),
    ]
    assert sum(c for _, c in alibaba_apps(path)) == 3


def test_alibaba_missing_column_fails_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "instance_sn,app_name\ninstance_0,app_0\n", "trace.csv")
    with pytest.raises(SpecError) as err:
        read_alibaba_serving(path)
    assert err.value.field == "header"
