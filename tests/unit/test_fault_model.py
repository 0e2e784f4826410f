"""The failure model against the published Llama 3 calibration and its own arithmetic."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from cotenant.faults.model import (
    DEFAULT_PLANNED_NOTICE_S,
    DEFAULT_PLANNED_PER_GPU_DAY,
    DEFAULT_UNEXPECTED_PER_GPU_DAY,
    LLAMA3_CAUSES,
    LLAMA3_DAYS,
    LLAMA3_GPUS,
    PLANNED_MAINTENANCE,
    Effect,
    FailureEvent,
    FailureModel,
    expected_goodput,
    job_mtbf_s,
    young_daly_interval,
)
from cotenant.model.errors import SpecError
from cotenant.model.time import DAY, HOUR, MINUTE

LLAMA3_NODES = LLAMA3_GPUS // 8
LLAMA3_SPAN_S = LLAMA3_DAYS * DAY


# --- builders -------------------------------------------------------------------------


def model(**overrides: Any) -> FailureModel:
    return FailureModel(**overrides)


def sample(
    m: FailureModel,
    seed: int,
    *,
    nodes: int = LLAMA3_NODES,
    gpus: int | np.ndarray = 8,
    span_s: int = LLAMA3_SPAN_S,
) -> list[FailureEvent]:
    return m.sample(np.random.default_rng(seed), nodes, gpus, 0, span_s)


def unexpected(events: list[FailureEvent]) -> list[FailureEvent]:
    return [e for e in events if e.effect is not Effect.PLANNED_DRAIN]


def planned(events: list[FailureEvent]) -> list[FailureEvent]:
    return [e for e in events if e.effect is Effect.PLANNED_DRAIN]


# --- the published table --------------------------------------------------------------


def test_unexpected_counts_sum_to_419() -> None:
    assert sum(c.count for c in LLAMA3_CAUSES) == 419
    assert len(LLAMA3_CAUSES) == 18
    assert PLANNED_MAINTENANCE.count == 47


def test_about_78_percent_of_the_unexpected_are_hardware() -> None:
    hardware = sum(c.count for c in LLAMA3_CAUSES if c.hardware)
    assert hardware == 324
    assert hardware / 419 == pytest.approx(0.78, abs=0.01)


@pytest.mark.parametrize(
    ("name", "count", "effect"),
    [
        ("faulty_gpu", 148, Effect.NODE_DOWN),
        ("gpu_hbm3", 72, Effect.NODE_DOWN),
        ("software_bug", 54, Effect.JOB_ONLY),
        ("network_switch_cable", 35, Effect.RACK_UPLINK),
        ("host_maintenance", 32, Effect.NODE_DOWN),
        ("nccl_watchdog", 7, Effect.JOB_ONLY),
        ("silent_data_corruption", 6, Effect.NODE_DOWN),
        ("dependency", 2, Effect.JOB_ONLY),
    ],
    ids=lambda v: str(v),
)
def test_cause_effects(name: str, count: int, effect: Effect) -> None:
    cause = {c.name: c for c in LLAMA3_CAUSES}[name]
    assert (cause.count, cause.effect) == (count, effect)


def test_repair_times_are_all_flagged_as_assumptions() -> None:
    assert all(c.assumed_repair for c in (*LLAMA3_CAUSES, PLANNED_MAINTENANCE))
    by_effect = {c.effect: c.repair_s for c in LLAMA3_CAUSES if c.name != "host_maintenance"}
    assert by_effect == {
        Effect.NODE_DOWN: 2 * DAY,
        Effect.JOB_ONLY: 0,
        Effect.RACK_UPLINK: 4 * HOUR,
    }
    assert PLANNED_MAINTENANCE.repair_s == 4 * HOUR
    assert DEFAULT_PLANNED_NOTICE_S == 24 * HOUR


@pytest.mark.parametrize(
    ("rate", "count"),
    [(DEFAULT_UNEXPECTED_PER_GPU_DAY, 419), (DEFAULT_PLANNED_PER_GPU_DAY, 47)],
    ids=["unexpected", "planned"],
)
def test_rates_derive_from_the_run(rate: float, count: int) -> None:
    derived = count / (LLAMA3_GPUS * LLAMA3_DAYS)
    assert rate == pytest.approx(derived, rel=0.01)  # published to two figures


# --- sampling -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "rate"),
    [(unexpected, DEFAULT_UNEXPECTED_PER_GPU_DAY), (planned, DEFAULT_PLANNED_PER_GPU_DAY)],
    ids=["unexpected", "planned"],
)
def test_sampled_counts_match_the_rate_within_poisson_noise(kind: Any, rate: float) -> None:
    lam = rate * LLAMA3_GPUS * LLAMA3_DAYS  # about 416 unexpected, 47 planned
    sigma = math.sqrt(lam)
    counts = [len(kind(sample(model(), seed))) for seed in range(20)]
    for n in counts:
        assert abs(n - lam) < 4 * sigma
    assert abs(np.mean(counts) - lam) < 2 * sigma / math.sqrt(len(counts))


def test_cause_mix_matches_published_shares() -> None:
    m = model()
    events = unexpected(sample(m, 7, nodes=12_500, span_s=365 * DAY))  # about 17,000
    seen = Counter(e.cause for e in events)
    expected = m.shares * len(events)
    observed = np.array([seen[c.name] for c in m.causes])
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert chi2 < 40.8  # 99.9th percentile of chi-square with 17 degrees of freedom


def test_same_seed_same_events_other_seed_other_events() -> None:
    m = model()
    assert sample(m, 3) == sample(m, 3)
    assert sample(m, 3) != sample(m, 4)


def test_events_carry_repair_and_notice() -> None:
    m = model(repair_overrides={"faulty_gpu": 3 * DAY}, planned_notice_s=12 * HOUR)
    events = sample(m, 1)
    repair = {c.name: c.repair_s for c in LLAMA3_CAUSES} | {"planned_maintenance": 4 * HOUR}
    repair["faulty_gpu"] = 3 * DAY
    for e in events:
        assert e.repair_s == repair[e.cause]
        assert e.notice_s == (12 * HOUR if e.effect is Effect.PLANNED_DRAIN else 0)
        assert e.down_at_s == e.time_s + e.notice_s


@pytest.mark.parametrize("scale", [0.0, 0.5, 2.0, 10.0], ids=lambda s: f"x{s}")
def test_scale_multiplies_the_rate(scale: float) -> None:
    base, scaled = model(), model().with_scale(scale)
    assert scaled.scale == scale
    lam = scale * base.interruptions_per_gpu_day() * LLAMA3_GPUS * LLAMA3_DAYS
    counts = [len(sample(scaled, seed)) for seed in range(10)]
    assert abs(np.mean(counts) - lam) <= 4 * math.sqrt(lam / 10)
    if scale == 0:
        assert counts == [0] * 10


def test_nodes_are_weighted_by_their_gpus() -> None:
    gpus = np.array([0, 4, 8] * 1000)
    events = sample(model(scale=20.0), 11, nodes=gpus.size, gpus=gpus)
    per_kind = Counter(int(gpus[e.node]) for e in events)
    assert per_kind[0] == 0
    assert per_kind[8] / per_kind[4] == pytest.approx(2.0, rel=0.1)


def test_empty_horizon_or_no_gpus_gives_no_events() -> None:
    assert model().sample(np.random.default_rng(0), 10, 8, 100, 100) == []
    assert model().sample(np.random.default_rng(0), 10, 0, 0, 30 * DAY) == []


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ((0, 8, 0, DAY), "n_nodes"),
        ((4, -1, 0, DAY), "gpus_per_node"),
        ((4, np.array([8, 8]), 0, DAY), "gpus_per_node"),
        ((2, np.array([8.0, 8.0]), 0, DAY), "gpus_per_node"),
        ((4, 8, DAY, 0), "end_s"),
    ],
    ids=["no-nodes", "negative-gpus", "wrong-shape", "float-gpus", "backwards"],
)
def test_sample_rejects_bad_arguments(args: tuple[Any, ...], field: str) -> None:
    with pytest.raises(SpecError) as err:
        model().sample(np.random.default_rng(0), *args)
    assert err.value.field == field


# --- validation and settings ----------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"rate_per_gpu_day": -1e-4}, "rate_per_gpu_day"),
        ({"rate_per_gpu_day": math.nan}, "rate_per_gpu_day"),
        ({"planned_rate_per_gpu_day": -1.0}, "planned_rate_per_gpu_day"),
        ({"scale": -0.5}, "scale"),
        ({"scale": math.inf}, "scale"),
        ({"planned_notice_s": -1}, "planned_notice_s"),
        ({"repair_overrides": {"gremlins": 60}}, "repair.gremlins"),
        ({"repair_overrides": {"faulty_gpu": -60}}, "repair.faulty_gpu"),
        ({"causes": ()}, "causes"),
        ({"planned": replace(PLANNED_MAINTENANCE, effect=Effect.NODE_DOWN)}, "planned.effect"),
        ({"planned": LLAMA3_CAUSES[0]}, "planned.name"),
    ],
    ids=[
        "negative-rate",
        "nan-rate",
        "negative-planned",
        "negative-scale",
        "infinite-scale",
        "negative-notice",
        "unknown-cause",
        "negative-repair",
        "no-causes",
        "planned-not-a-drain",
        "duplicate-name",
    ],
)
def test_validation_names_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as err:
        model(**overrides)
    assert err.value.field == field


def test_from_settings_reads_a_scenario_table() -> None:
    m = FailureModel.from_settings(
        {
            "rate_per_gpu_day": 1e-3,
            "planned_rate_per_gpu_day": 0,
            "scale": 2,
            "planned_notice": "12h",
            "repair": {"faulty_gpu": "3d", "software_bug": "30m"},
        }
    )
    assert (m.rate_per_gpu_day, m.planned_rate_per_gpu_day, m.scale) == (1e-3, 0.0, 2.0)
    assert m.planned_notice_s == 12 * HOUR
    assert dict(m.repair_overrides) == {"faulty_gpu": 3 * DAY, "software_bug": 30 * MINUTE}
    assert FailureModel.from_settings({}) == FailureModel()


@pytest.mark.parametrize(
    ("settings", "field", "mentions"),
    [
        ({"rate": 1e-3}, "failures.rate", "rate_per_gpu_day"),
        ({"repair": {"gremlins": "1h"}}, "failures.repair.gremlins", "faulty_gpu"),
        ({"repair": {"faulty_gpu": "soon"}}, "failures.repair.faulty_gpu", "duration"),
        ({"repair": "2d"}, "failures.repair", "table"),
        ({"scale": True}, "failures.scale", "number"),
        ({"scale": -1}, "failures.scale", ">= 0"),
        ({"planned_notice": [1]}, "failures.planned_notice", "duration"),
    ],
    ids=["unknown-key", "unknown-cause", "bad-duration", "not-a-table", "bool", "negative", "list"],
)
def test_from_settings_errors_name_the_field(
    settings: dict[str, object], field: str, mentions: str
) -> None:
    with pytest.raises(SpecError) as err:
        FailureModel.from_settings(settings)
    assert err.value.field == field
    assert mentions in err.value.problem


def test_overrides_are_copied_and_read_only() -> None:
    table = {"faulty_gpu": 60}
    m = model(repair_overrides=table)
    table["faulty_gpu"] = 120
    assert m.repair_overrides["faulty_gpu"] == 60
    with pytest.raises(TypeError):
        m.repair_overrides["faulty_gpu"] = 1  # type: ignore[index]


# --- checkpointing arithmetic ---------------------------------------------------------


def test_job_mtbf_of_a_16k_gpu_job_matches_the_published_figure() -> None:
    m = model()
    # The published "every 3.1 h" counts the unexpected interruptions only.
    assert job_mtbf_s(m, 16_384, include_planned=False) / HOUR == pytest.approx(3.1, abs=0.05)
    # With the planned ones: 54 days / 466 interruptions = 2.78 h.
    assert job_mtbf_s(m, 16_384) / HOUR == pytest.approx(54 * 24 / 466, rel=0.01)


def test_job_mtbf_scales_inversely_with_gpus_and_rate() -> None:
    m = model()
    assert job_mtbf_s(m, 8) == pytest.approx(2048 * job_mtbf_s(m, 16_384))
    assert job_mtbf_s(m.with_scale(2), 8) == pytest.approx(job_mtbf_s(m, 8) / 2)
    assert job_mtbf_s(m.with_scale(0), 8) == math.inf
    with pytest.raises(SpecError, match="gpus"):
        job_mtbf_s(m, 0)


@pytest.mark.parametrize(
    ("mtbf_s", "write_s", "interval_s"),
    [
        (10_000, 50, 1_000),  # sqrt(2 * 50 * 10,000) = 1,000
        (11_220, 60, 1_160),  # sqrt(1,346,400) = 1,160.3
        (3_600, 30, 465),  # sqrt(216,000) = 464.8
        (100, 200, 200),  # sqrt(40,000) = 200: the floor at the write time
        (1, 100, 100),  # sqrt(200) = 14: floored to the write time
    ],
    ids=["round", "llama3-unexpected", "hourly", "equal", "floored"],
)
def test_young_daly_by_hand(mtbf_s: float, write_s: float, interval_s: int) -> None:
    assert young_daly_interval(mtbf_s, write_s) == interval_s


@pytest.mark.parametrize(
    ("mtbf_s", "write_s", "field"),
    [(0, 60, "mtbf_s"), (math.inf, 60, "mtbf_s"), (3600, 0, "checkpoint_write_s")],
    ids=["zero-mtbf", "infinite-mtbf", "zero-write"],
)
def test_young_daly_rejects(mtbf_s: float, write_s: float, field: str) -> None:
    with pytest.raises(SpecError) as err:
        young_daly_interval(mtbf_s, write_s)
    assert err.value.field == field


def test_goodput_by_hand() -> None:
    # tau 900, delta 100, R 500, M 10,000: 0.9 * (1 - (500 + 500) / 10,000) = 0.81
    assert expected_goodput(900, 100, 500, 10_000) == pytest.approx(0.81)
    assert expected_goodput(900, 100, 500, math.inf) == pytest.approx(0.9)
    assert expected_goodput(900, 100, 5_000, 1_000) == 0.0


@pytest.mark.parametrize("mtbf_s", [3_600.0, 11_220.0, 86_400.0], ids=["1h", "3.1h", "1d"])
def test_young_daly_interval_about_maximises_goodput(mtbf_s: float) -> None:
    write_s, restart_s = 60.0, 600.0
    goodput = np.vectorize(lambda tau: expected_goodput(tau, write_s, restart_s, mtbf_s))
    grid = np.arange(write_s, 20 * HOUR, 1.0)
    best_tau = float(grid[np.argmax(goodput(grid))])
    # The formula's exact optimum: the segment tau + delta = sqrt(2 delta (M - R)).
    assert best_tau == pytest.approx(math.sqrt(2 * write_s * (mtbf_s - restart_s)) - write_s, abs=1)
    # Young's first-order interval is close to it, and far better than half or double.
    young = young_daly_interval(mtbf_s, write_s)
    at_young = float(goodput(young))
    assert at_young >= float(goodput(best_tau)) - 0.005
    assert at_young > max(float(goodput(young / 2)), float(goodput(young * 2)))


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ((0, 60, 600, 3600), "interval_s"),
        ((900, -1, 600, 3600), "write_s"),
        ((900, 60, math.nan, 3600), "restart_s"),
        ((900, 60, 600, 0), "mtbf_s"),
    ],
    ids=["zero-interval", "negative-write", "nan-restart", "zero-mtbf"],
)
def test_goodput_rejects(args: tuple[float, float, float, float], field: str) -> None:
    with pytest.raises(SpecError) as err:
        expected_goodput(*args)
    assert err.value.field == field
