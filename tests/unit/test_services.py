"""[[services]] tables: errors name the field; the vectorised replica search agrees with
the scalar one; demand sources build their curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cotenant.model.errors import SpecError
from cotenant.serving.queueing import replicas_needed, replicas_needed_many
from cotenant.serving.services import (
    AlibabaDemand,
    CsvDemand,
    DiurnalDemand,
    parse_services,
)
from cotenant.twin.scenario import load_scenario

GOOD: dict[str, Any] = {
    "name": "chat",
    "tenant": "lab",
    "throughput_rps_per_replica": 25.0,
    "servers_per_replica": 8,
    "latency_target_s": 2.0,
    "demand": {"kind": "diurnal", "peak_rps": 100.0},
}


def one(**changes: Any) -> dict[str, Any]:
    out = {**GOOD, **changes}
    return {k: v for k, v in out.items() if v is not None}


def test_a_good_table_and_its_defaults() -> None:
    (cfg,) = parse_services([GOOD], ["lab"], seed=3)
    assert cfg.spec.gpus_per_replica == 8 and cfg.spec.min_replicas == 1
    assert cfg.spec.startup_s == 600 and cfg.spec.priority == 1_000
    assert cfg.scaling.headroom == 1.1 and cfg.scaling.lookahead_s is None
    assert isinstance(cfg.demand, DiurnalDemand) and cfg.demand.seed == 3 + 101


def test_service_time_gives_the_servers() -> None:
    (cfg,) = parse_services([one(servers_per_replica=None, service_time_s=0.32)], ["lab"])
    assert cfg.spec.servers_per_replica == 8


S0 = "services[0]"
BAD = {
    "not-a-list": ({"name": "x"}, "services"),
    "unknown-key": ([one(replicas=3)], "services[0].replicas"),
    "no-name": ([one(name="")], "services[0].name"),
    "unknown-tenant": ([one(tenant="nobody")], "services[0].tenant"),
    "no-throughput": ([one(throughput_rps_per_replica=None)], f"{S0}.throughput_rps_per_replica"),
    "zero-throughput": ([one(throughput_rps_per_replica=0)], f"{S0}.throughput_rps_per_replica"),
    "bool-gpus": ([one(gpus_per_replica=True)], "services[0].gpus_per_replica"),
    "fractional-servers": (
        [one(servers_per_replica=None, service_time_s=0.33)], "services[0].service_time_s"
    ),
    "servers-disagree": ([one(service_time_s=0.2)], "services[0].servers_per_replica"),
    "target-below-service-time": ([one(latency_target_s=1.0)], "services[0].latency_target_s"),
    "max-below-min": ([one(min_replicas=5, max_replicas=2)], "services[0].max_replicas"),
    "bad-startup": ([one(startup="soon")], "services[0].startup"),
    "headroom-below-one": ([one(headroom=0.9)], "services[0].headroom"),
    "step-of-one": ([one(scale_step=1.0)], "services[0].scale_step"),
    "no-demand": ([one(demand=None)], "services[0].demand"),
    "unknown-demand-kind": ([one(demand={"kind": "poisson"})], "services[0].demand.kind"),
    "diurnal-without-peak": ([one(demand={"kind": "diurnal"})], "services[0].demand.peak_rps"),
    "diurnal-unknown-key": (
        [one(demand={"kind": "diurnal", "peak_rps": 1.0, "peak": 2})], "services[0].demand.peak"
    ),
    "trough-above-one": (
        [one(demand={"kind": "diurnal", "peak_rps": 1.0, "trough_ratio": 1.5})],
        "services[0].demand.trough_ratio",
    ),
    "csv-without-path": ([one(demand={"kind": "csv"})], "services[0].demand.path"),
    "alibaba-bad-role": ([one(demand={"kind": "alibaba", "role": "GPU"})], f"{S0}.demand.role"),
    "alibaba-zero-rate": (
        [one(demand={"kind": "alibaba", "rps_per_instance": 0})],
        "services[0].demand.rps_per_instance",
    ),
    "duplicate-name": ([GOOD, GOOD], "services[1].name"),
}  # fmt: skip


@pytest.mark.parametrize(("raw", "field"), list(BAD.values()), ids=list(BAD))
def test_errors_name_the_field(raw: Any, field: str) -> None:
    with pytest.raises(SpecError) as e:
        parse_services(raw, ["lab"])
    assert e.value.field == field


def test_a_scenario_file_checks_its_services_when_loaded(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        '[cluster]\npreset = "small-16"\n[[tenants]]\nname = "lab"\n'
        '[[services]]\nname = "chat"\ntenant = "lab"\nthroughput_rps_per_replica = 25.0\n'
        "latency_target_s = 2.0\nservers_per_replica = 8\n"
        'demand = { kind = "csv", path = "demand.csv", scale = -1 }\n'
    )
    with pytest.raises(SpecError) as e:
        load_scenario(path)
    assert e.value.field == "services[0].demand.scale" and e.value.source == str(path)


def test_csv_paths_are_relative_to_the_scenario_file(tmp_path: Path) -> None:
    (cfg,) = parse_services([one(demand={"kind": "csv", "path": "d.csv"})], ["lab"], 0, tmp_path)
    assert isinstance(cfg.demand, CsvDemand) and cfg.demand.path == tmp_path / "d.csv"
    (tmp_path / "d.csv").write_text("time_s,rps\n100,5.0\n200,7.5\n")
    curve = cfg.demand.curve(0, 1000)
    assert curve.at(150) == 5.0 and curve.at(999) == 7.5


def test_alibaba_source_reads_the_excerpt() -> None:
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "alibaba2025_serving_excerpt.csv"
    src = AlibabaDemand(path=fixture, rps_per_instance=2.0, step_s=3600)
    curve = src.curve(1_000_000, 2_000_000)
    assert curve.start_s == 1_000_000 and float(curve.rps.max()) > 0


@pytest.mark.parametrize(
    ("throughput", "target", "servers", "lo"),
    [(25.0, 2.0, 8, 1), (20.0, 1.0, 1, 0), (10.0, 3.0, 4, 3)],
    ids=["8-slots", "1-slot-min0", "4-slots-min3"],
)
def test_vectorised_search_matches_the_scalar_one(
    throughput: float, target: float, servers: int, lo: int
) -> None:
    rates = np.concatenate([[0.0], np.random.default_rng(5).uniform(0, 30_000, 300)])
    got = replicas_needed_many(rates, throughput, target, 0.99, lo, None, servers)
    want = [replicas_needed(float(x), throughput, target, 0.99, lo, None, servers) for x in rates]
    assert got.tolist() == want


def test_vectorised_search_reports_beyond_the_limit() -> None:
    rates = np.array([10.0, 100.0, 10_000.0])
    got = replicas_needed_many(rates, 25.0, 2.0, limit=8, servers_per_replica=8)
    assert got[0] == replicas_needed(10.0, 25.0, 2.0, servers_per_replica=8)
    assert got[2] == 9  # "more than the limit"
