"""Checkpoint intervals of generated workloads: fixed, or "auto" (Young/Daly per job size
under the failures in force)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from cotenant.faults.injector import parse_failure_settings
from cotenant.faults.model import FailureModel, job_mtbf_s
from cotenant.model.errors import SpecError
from cotenant.model.jobs import JobKind
from cotenant.twin.runtime import workload_of
from cotenant.twin.scenario import load_scenario
from cotenant.workload.synthetic import FIXED_INTERVAL_S, parse_workload


def test_auto_reads_as_none_and_a_duration_as_seconds() -> None:
    assert parse_workload("a", {"checkpoint_interval": "auto"}, "w").checkpoint_interval_s is None
    assert parse_workload("a", {"checkpoint_interval": "20m"}, "w").checkpoint_interval_s == 1200
    assert parse_workload("a", {}, "w").checkpoint_interval_s == FIXED_INTERVAL_S
    with pytest.raises(SpecError, match=r"w\.checkpoint_interval"):
        parse_workload("a", {"checkpoint_interval": "often"}, "w")


def test_colossus_lease_checkpoints_each_job_at_young_daly_for_its_size() -> None:
    sc = load_scenario("colossus-lease")
    jobs = workload_of(sc)
    model = FailureModel()
    write = sc.checkpoint_write_s
    pretrain = next(j for j in jobs if j.id.endswith("pretrain-0") and j.gpus == 16_384)
    # Llama 3's rates, planned drains included: 466 interruptions of a 16,384-GPU job in
    # 54 days, one every 54 * 86,400 / 466 = 10,012 s; with the scenario's 6 s
    # asynchronous checkpoint, sqrt(2 * 6 * 10,012) = 347 s.
    assert write == 6
    mtbf = job_mtbf_s(model, 16_384)
    assert mtbf == pytest.approx(54 * 86_400 / 466, rel=0.02)
    assert pretrain.checkpoint_interval_s == round(math.sqrt(2 * write * mtbf))
    assert 330 < pretrain.checkpoint_interval_s < 360  # about 6 min, not 30
    # Bigger jobs checkpoint more often; short experiments not at all.
    by_size = {}
    for j in jobs:
        if j.kind is JobKind.EXPERIMENT and j.checkpoint_interval_s:
            by_size[j.gpus] = j.checkpoint_interval_s
    sizes = sorted(by_size)
    assert [by_size[s] for s in sizes] == sorted(by_size.values(), reverse=True)
    assert all(j.checkpoint_interval_s == 0 for j in jobs if j.duration_s <= 3600)


def test_auto_follows_the_failure_scale_and_falls_back_without_failures() -> None:
    sc = load_scenario("colossus-lease")
    base = {j.id: j.checkpoint_interval_s for j in workload_of(sc)}
    tenfold = workload_of(sc, parse_failure_settings(sc.sections.get("failures"), 10.0))
    none = workload_of(sc, parse_failure_settings(sc.sections.get("failures"), 0.0))
    for j in tenfold:
        if base[j.id]:
            # ten times the rate: the interval shrinks by sqrt(10), give or take rounding
            assert j.checkpoint_interval_s == pytest.approx(base[j.id] / math.sqrt(10), abs=1)
    assert {j.checkpoint_interval_s for j in none} <= {0, FIXED_INTERVAL_S}


def test_a_fixed_interval_ignores_the_failure_model() -> None:
    sc = load_scenario("colossus-lease")
    fixed = replace(
        sc, workloads=tuple(replace(w, checkpoint_interval_s=900) for w in sc.workloads)
    )
    assert {j.checkpoint_interval_s for j in workload_of(fixed)} == {0, 900}
