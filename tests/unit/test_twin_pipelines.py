"""Pipelines in the twin: the frontier-lab workload draws them (pretrain -> SFT -> RL ->
eval, each after_ok the one before) without changing what it drew before, and the report
gives each pipeline's makespan and its waits for dependencies and for capacity."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

import numpy as np

from builders import HOUR, T0
from cotenant.model.dependencies import DependencyKind
from cotenant.twin.htmlreport import render_html
from cotenant.twin.runtime import simulate
from cotenant.twin.scenario import load_scenario, parse_scenario, parse_toml
from cotenant.workload.synthetic import PIPELINE_STAGES, FrontierLabWorkload

SCENARIO = """
name = "small-pipelines"
start = "2026-10-01T00:00:00Z"
duration = "4d"
seed = 3
policy = "contract"
[cluster]
preset = "small-16"
[[tenants]]
name = "owner-lab"
[tenants.contract]
commitment = { gpus = 64 }
isolation = { rivals = ["lessee-lab"] }
priority = 10
[tenants.workload]
pretraining_runs = 0
rl_runs = 1
rl_gpus = [16, 32]
rl_days = [0.5, 1]
experiments = 40
experiment_gpus = [1, 16]
experiment_median_hours = 2.0
pipelines = 3
pipeline_gpus_scale = 0.015625  # 1/64: a 32-64 GPU pretraining on 128 GPUs
pipeline_time_scale = 0.125
[[tenants]]
name = "lessee-lab"
[tenants.contract]
commitment = { all_available = true }
isolation = { rivals = ["owner-lab"] }
[tenants.workload]
pretraining_runs = 1
pretraining_gpus = [32, 32]
pretraining_days = [1, 2]
experiments = 80
experiment_gpus = [1, 16]
experiment_median_hours = 2.0
pipelines = 2
pipeline_gpus_scale = 0.015625
pipeline_time_scale = 0.125
"""


def test_pipelines_are_drawn_after_everything_else() -> None:
    base = FrontierLabWorkload("lab", pretraining_runs=1, rl_runs=2, experiments=50)
    without = base.generate(np.random.default_rng(5), T0, 30 * 24 * HOUR)
    withp = replace(base, pipelines=2).generate(np.random.default_rng(5), T0, 30 * 24 * HOUR)
    assert withp[: len(without)] == without
    stages = withp[len(without) :]
    assert [s.id for s in stages[:4]] == [
        "lab-pipe-0-0-pretrain",
        "lab-pipe-0-1-sft",
        "lab-pipe-0-2-rl",
        "lab-pipe-0-3-eval",
    ]
    for prev, s in itertools.pairwise(stages[:4]):
        assert s.after[0].kind is DependencyKind.AFTER_OK and s.after[0].jobs == (prev.id,)
        assert s.pipeline == "lab-pipe-0" and s.submit_s == prev.submit_s
    for s, shape in zip(stages[:4], PIPELINE_STAGES, strict=True):
        assert shape.gpus[0] <= s.gpus <= shape.gpus[1]
        assert shape.hours[0] * HOUR <= s.duration_s <= shape.hours[1] * HOUR


def test_the_report_gives_each_pipeline_its_makespan_and_waits() -> None:
    scenario = parse_scenario(parse_toml(SCENARIO, "test"))
    engine, report = simulate(scenario)
    section = report.extra["pipelines"]
    assert section["summary"]["pipelines"] == 5
    done = [p for p in section["pipelines"] if p["state"] == "completed"]
    assert done, section
    for p in done:
        runs = [engine.jobs[s["job"]] for s in p["stages"]]
        assert p["makespan_s"] == max(r.end_s or 0 for r in runs) - p["submit_s"]
        for prev, r in itertools.pairwise(runs):
            assert prev.end_s is not None and r.first_start_s is not None
            assert r.first_start_s >= prev.end_s  # never before what it waits for
        first = p["stages"][0]
        assert first["dependency_wait_s"] == 0
        assert p["stages"][1]["dependency_wait_s"] == runs[0].end_s - p["submit_s"]
        caps = [r.first_start_s - engine.deps.eligible_s(r) for r in runs]  # type: ignore[operator]
        assert p["capacity_wait_s"] == sum(caps)
    assert report.guarantee_violation_s() == 0
    json.dumps(report.to_json_dict())
    html = render_html([report], "t")
    assert "Pipelines under contract" in html and done[0]["id"] in html


def test_a_scenario_without_pipelines_reports_none() -> None:
    scenario = replace(load_scenario("small-lease"), duration_s=6 * HOUR)
    _, report = simulate(scenario)
    assert "pipelines" not in report.extra
