"""M/M/c: Erlang C against hand-computed values, response-time quantiles against closed forms,
and the replica search against its own definition (smallest count meeting the target)."""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import replace
from typing import Any

import pytest

from cotenant.model.errors import SpecError
from cotenant.serving.queueing import (
    ServiceSpec,
    erlang_b,
    erlang_c,
    p99_latency_s,
    replicas_needed,
)

# --- builders -------------------------------------------------------------------------


def spec(**overrides: Any) -> ServiceSpec:
    base = ServiceSpec(
        name="chat",
        tenant="lab-a",
        throughput_rps_per_replica=40.0,
        latency_target_s=2.0,
        servers_per_replica=8,
        min_replicas=1,
        max_replicas=64,
        startup_s=300,
    )
    return replace(base, **overrides)


def erlang_c_log_space(c: int, a: float) -> float:
    """The textbook formula, sum_{k<c} a^k/k! against a^c/c! * c/(c-a), in log space."""
    logs = [k * math.log(a) - math.lgamma(k + 1) for k in range(c)]
    top = c * math.log(a) - math.lgamma(c + 1) + math.log(c / (c - a))
    m = max([*logs, top])
    below = sum(math.exp(x - m) for x in logs)
    return math.exp(top - m) / (below + math.exp(top - m))


def hypo_survival(t: float, wait_prob: float, theta: float, mu: float) -> float:
    """P(T > t) in its plain form (theta != mu)."""
    sum_tail = (theta * math.exp(-mu * t) - mu * math.exp(-theta * t)) / (theta - mu)
    return (1 - wait_prob) * math.exp(-mu * t) + wait_prob * sum_tail


# --- Erlang B and C ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("c", "a", "expected"),
    [
        pytest.param(1, 0.3, 0.3, id="c1-rho0.3"),
        pytest.param(1, 0.9, 0.9, id="c1-rho0.9"),
        # c=2, a=1: sum_{k<2} a^k/k! = 1 + 1; tail a^2/2! * 2/(2-1) = 1 -> 1/3
        pytest.param(2, 1.0, 1.0 / (1.0 + 1.0 + 1.0), id="c2-a1"),
        # c=3, a=2: 1 + 2 + 4/2 = 5; tail 8/6 * 3/(3-2) = 4 -> 4/9
        pytest.param(3, 2.0, 4.0 / (5.0 + 4.0), id="c3-a2"),
        # c=3, a=1.5: 1 + 1.5 + 2.25/2 = 3.625; tail 3.375/6 * 3/1.5 = 1.125
        pytest.param(3, 1.5, 1.125 / (3.625 + 1.125), id="c3-a1.5"),
        pytest.param(4, 0.0, 0.0, id="no-load"),
    ],
)
def test_erlang_c_against_hand_values(c: int, a: float, expected: float) -> None:
    assert erlang_c(c, a) == pytest.approx(expected, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize(("c", "a"), [(1, 1.0), (1, 2.5), (8, 8.0), (8, 100.0)])
def test_erlang_c_is_one_when_unstable(c: int, a: float) -> None:
    assert erlang_c(c, a) == 1.0


def test_erlang_b_small_values() -> None:
    # B(1) = a / (1 + a); B(2) = (a^2/2) / (1 + a + a^2/2)
    assert erlang_b(1, 0.5) == pytest.approx(0.5 / 1.5)
    assert erlang_b(2, 2.0) == pytest.approx(2.0 / (1.0 + 2.0 + 2.0))


@pytest.mark.parametrize(("c", "a"), [(50, 45.0), (1000, 980.0), (5000, 4900.0), (5000, 4999.0)])
def test_erlang_c_large_c_matches_log_space_formula(c: int, a: float) -> None:
    got = erlang_c(c, a)
    assert 0.0 < got < 1.0
    assert got == pytest.approx(erlang_c_log_space(c, a), rel=1e-9)


@pytest.mark.parametrize(
    ("call", "field"),
    [
        pytest.param(lambda: erlang_c(0, 0.5), "c", id="zero-servers"),
        pytest.param(lambda: erlang_c(2, -1.0), "offered_load", id="negative-load"),
        pytest.param(lambda: p99_latency_s(2, -1.0, 1.0), "arrival_rate", id="negative-rate"),
        pytest.param(lambda: p99_latency_s(2, 1.0, 0.0), "service_rate_per_server", id="mu0"),
        pytest.param(lambda: p99_latency_s(2, 1.0, 1.0, 1.0), "quantile", id="q1"),
        pytest.param(lambda: replicas_needed(1.0, 0.0, 1.0), "service_rate_per_replica", id="r"),
        pytest.param(lambda: replicas_needed(1.0, 1.0, 1.0, min_replicas=-1), "min_replicas"),
        pytest.param(
            lambda: replicas_needed(1.0, 1.0, 9.0, min_replicas=3, max_replicas=2), "max_replicas"
        ),
        pytest.param(
            lambda: replicas_needed(1.0, 1.0, 9.0, servers_per_replica=0), "servers_per_replica"
        ),
    ],
)
def test_bad_arguments_name_the_field(call: Any, field: str) -> None:
    with pytest.raises(SpecError) as err:
        call()
    assert err.value.field == field


# --- response-time quantile ----------------------------------------------------------


@pytest.mark.parametrize(
    ("lam", "mu"), [(0.5, 1.0), (9.0, 10.0), (0.01, 3.0), (99.9, 100.0)], ids=str
)
@pytest.mark.parametrize("q", [0.5, 0.9, 0.99, 0.999])
def test_mm1_quantile_is_exponential(lam: float, mu: float, q: float) -> None:
    # M/M/1 response time is Exp(mu - lambda): the q-quantile is -ln(1-q) / (mu - lambda)
    expected = -math.log(1.0 - q) / (mu - lam)
    assert p99_latency_s(1, lam, mu, q) == pytest.approx(expected, rel=1e-9)


def test_mm1_p99_is_ln100_over_gap() -> None:
    assert p99_latency_s(1, 3.0, 5.0) == pytest.approx(math.log(100) / 2.0, rel=1e-9)


@pytest.mark.parametrize(
    ("c", "lam", "mu"), [(4, 2.5, 1.0), (3, 0.5, 2.0), (16, 14.0, 1.0), (2, 1.9, 1.0)]
)
def test_quantile_solves_the_mixture_survival(c: int, lam: float, mu: float) -> None:
    t = p99_latency_s(c, lam, mu)
    theta = c * mu - lam
    assert hypo_survival(t, erlang_c(c, lam / mu), theta, mu) == pytest.approx(0.01, rel=1e-9)


def test_quantile_when_wait_rate_equals_service_rate() -> None:
    # c=2, lambda=1, mu=1: theta = 2 - 1 = mu, so W+S is Erlang-2: P(>t) = e^-t (1 + t)
    t = p99_latency_s(2, 1.0, 1.0)
    wait_prob = 1.0 / 3.0
    survival = (1 - wait_prob) * math.exp(-t) + wait_prob * math.exp(-t) * (1 + t)
    assert survival == pytest.approx(0.01, rel=1e-9)
    assert p99_latency_s(2, 1.0 + 1e-9, 1.0) == pytest.approx(t, rel=1e-6)


def test_no_load_gives_the_service_time_quantile() -> None:
    assert p99_latency_s(7, 0.0, 4.0) == pytest.approx(math.log(100) / 4.0, rel=1e-9)


@pytest.mark.parametrize(("c", "lam"), [(1, 1.0), (4, 4.0), (4, 10.0)])
def test_unstable_is_infinite(c: int, lam: float) -> None:
    assert p99_latency_s(c, lam, 1.0) == math.inf


def test_quantile_falls_with_more_servers() -> None:
    lat = [p99_latency_s(c, 20.0, 1.0) for c in range(21, 36)]
    assert all(a > b for a, b in itertools.pairwise(lat))
    # with many servers nobody waits: the service time's own p99, ln(100) / mu
    assert p99_latency_s(80, 20.0, 1.0) == pytest.approx(math.log(100), rel=1e-9)


# --- replicas_needed ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lam", "rate", "target", "per"),
    [
        pytest.param(5.0, 10.0, 0.6, 1, id="small"),
        pytest.param(95.0, 1.0, 5.0, 1, id="near-one-per-request"),
        pytest.param(300.0, 40.0, 2.0, 8, id="batch-slots"),
        pytest.param(1234.5, 12.0, 2.0, 4, id="fractional-rate"),
    ],
)
def test_replicas_needed_is_the_smallest_count(
    lam: float, rate: float, target: float, per: int
) -> None:
    r = replicas_needed(lam, rate, target, servers_per_replica=per)
    mu = rate / per
    assert p99_latency_s(r * per, lam, mu) <= target
    if r > 1:
        assert p99_latency_s((r - 1) * per, lam, mu) > target


def test_replicas_needed_monotone_in_arrival_rate() -> None:
    counts = [replicas_needed(lam, 10.0, 0.6) for lam in [0.5 * k for k in range(0, 400)]]
    assert all(a <= b for a, b in itertools.pairwise(counts))
    assert counts[0] == 1 and counts[-1] > 20


def test_replicas_needed_large_scale_is_fast_and_finite() -> None:
    t0 = time.perf_counter()
    r = replicas_needed(4900.0, 1.0, 5.0)
    r_big = replicas_needed(200_000.0, 1.0, 4.7)
    elapsed = time.perf_counter() - t0
    assert 4900 < r < 5100
    assert 200_000 < r_big < 202_000
    assert p99_latency_s(r, 4900.0, 1.0) <= 5.0 < p99_latency_s(r - 1, 4900.0, 1.0)
    assert elapsed < 2.0


def test_min_and_max_replicas() -> None:
    assert replicas_needed(0.0, 10.0, 1.0, min_replicas=3) == 3
    assert replicas_needed(0.0, 10.0, 1.0, min_replicas=0) == 0
    assert replicas_needed(1.0, 10.0, 1.0, min_replicas=5) == 5
    # 1000 rps at 10 rps per replica needs > 100 replicas; the cap is returned
    assert replicas_needed(1000.0, 10.0, 0.6, max_replicas=50) == 50
    uncapped = replicas_needed(1000.0, 10.0, 0.6)
    assert replicas_needed(1000.0, 10.0, 0.6, max_replicas=uncapped - 1) == uncapped - 1
    assert replicas_needed(1000.0, 10.0, 0.6, max_replicas=uncapped + 7) == uncapped


@pytest.mark.parametrize(
    ("lam", "target"),
    [
        pytest.param(1.0, math.log(100) / 10.0 * 0.9, id="below-service-p99"),
        pytest.param(1.0, -math.log(1.0 - 0.99) / 10.0, id="equal-with-load"),
        pytest.param(0.0, math.log(100) / 10.0 * 0.5, id="below-without-load"),
    ],
)
def test_impossible_target_names_the_field(lam: float, target: float) -> None:
    with pytest.raises(SpecError) as err:
        replicas_needed(lam, 10.0, target)
    assert err.value.field == "latency_target_s"


# --- ServiceSpec ----------------------------------------------------------------------


def test_service_spec_rates_and_sizing() -> None:
    s = spec().validate()
    assert s.service_rate_per_server == 5.0
    assert s.gpus_per_replica == 8
    r = s.replicas_for(300.0)
    assert r == replicas_needed(
        300.0, 40.0, 2.0, min_replicas=1, max_replicas=64, servers_per_replica=8
    )
    assert s.latency_s(r, 300.0) <= 2.0 < s.latency_s(r - 1, 300.0)
    assert s.latency_s(0, 1.0) == math.inf


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"name": ""}, "name"),
        ({"tenant": ""}, "tenant"),
        ({"gpus_per_replica": 0}, "gpus_per_replica"),
        ({"throughput_rps_per_replica": 0.0}, "throughput_rps_per_replica"),
        ({"throughput_rps_per_replica": -3.0}, "throughput_rps_per_replica"),
        ({"servers_per_replica": 0}, "servers_per_replica"),
        ({"latency_target_s": -1.0}, "latency_target_s"),
        ({"latency_target_s": 0.5 * math.log(100) / 5.0}, "latency_target_s"),
        ({"latency_quantile": 1.0}, "latency_quantile"),
        ({"min_replicas": -1}, "min_replicas"),
        ({"min_replicas": 10, "max_replicas": 5}, "max_replicas"),
        ({"startup_s": -60}, "startup_s"),
    ],
    ids=lambda v: v if isinstance(v, str) else ",".join(v),
)
def test_service_spec_validate_names_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as err:
        spec(**overrides).validate()
    assert err.value.field.endswith(f".{field}")
    assert field in str(err.value)
