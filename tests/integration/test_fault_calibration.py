"""The failure model, run through the engine, against the published Llama 3 405B run.

Published (Meta, Llama 3 405B pretraining; ../shared/data/README.md): 16,384 H100 for 54
days saw 419 unexpected interruptions (and 47 planned), with an effective training time
(ETTR: useful training time / wall time) above 90%.

The twin: 2,152 nodes of 8 H100 (17,216 GPUs; 269 racks of 8), one tenant with a fixed
16,384-GPU commitment backed by spares, and 832 GPUs (104 nodes, 5.1%) that no contract
covers: the spare pool. One 16,384-GPU training job runs for 54 simulated days at the
default failure rates (4.7e-4 unexpected + 5.3e-5 planned interruptions per GPU-day), for
5 seeds. Unexpected and planned interruptions are told apart by cause in
``engine.fault_log`` (planned maintenance is ``PLANNED_MAINTENANCE.name``).

Expected count. A seed's expectation is the unexpected rate x the GPUs whose failure
interrupts the job x the time the job held them (the ledger: the job is exposed while it
holds GPUs, restart included). Node-scoped causes (all but the network switch/cable) hit it
on its own 16,384 GPUs; a rack uplink (35 of 419) hits it from any GPU of a rack it uses,
which adds the few spares sharing its racks (well under 1%). Tolerances (Poisson):
- each seed: |n - lambda| <= 4 sqrt(lambda);
- the mean of the 5 seeds: within 2 sigma of its expectation, sigma = sqrt(sum lambda) / 5;
- the mean against the published 419 (scaled to the same exposure): within 2 sigma, where
  sigma also counts 419's own Poisson noise: sqrt(419 / 5 + 419).

ETTR. Measured as the job's training progress at the end / 54 days. It depends on the
restart cost R and the blocking checkpoint write delta, not on the failure rate alone: a
failure every M = 3.1 h costs R / M of the time, and writing plus lost work cost at best
sqrt(2 delta / M) (Young/Daly). At the engine's defaults (R = 10 min, delta = 60 s) that is
5.3% + 10.3%: ETTR about 85%, below the published figure, whatever the interval (checked
below against the first-order model). Meta's figure implies a short blocking write; the
calibration run assumes R = 10 min (the engine default, the low end of the 10-30 min
planning range) and delta = 5 s (an assumption: asynchronous checkpointing pauses
training for seconds) with a 10-minute checkpoint interval, near the Young/Daly optimum of
5.6 min for that write.

Run time: about 1 s per seed.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from statistics import fmean

import numpy as np
import pytest

from cotenant.engine.core import Engine
from cotenant.faults.model import (
    LLAMA3_CAUSES,
    LLAMA3_DAYS,
    LLAMA3_GPUS,
    LLAMA3_UNEXPECTED,
    PLANNED_MAINTENANCE,
    Effect,
    FailureModel,
    expected_goodput,
    job_mtbf_s,
    young_daly_interval,
)
from cotenant.model.jobs import JobKind, JobSpec
from cotenant.model.time import DAY, MINUTE
from cotenant.twin.runtime import simulate
from cotenant.twin.scenario import Scenario, parse_scenario

SEEDS = (0, 1, 2, 3, 4)
NODES = 2_152  # 2,048 for the job + 104 spare (5.1%)
JOB = "llama3-405b"
UPLINK_SHARE = sum(c.count for c in LLAMA3_CAUSES if c.effect is Effect.RACK_UPLINK) / sum(
    c.count for c in LLAMA3_CAUSES
)


def scenario(seed: int, restart: str, write: str) -> Scenario:
    return parse_scenario(
        tomllib.loads(f"""
        name = "llama3-calibration"
        start = "2026-10-01T00:00:00Z"
        duration = "{LLAMA3_DAYS}d"
        seed = {seed}

        [cluster]
        name = "llama3-16k-plus-spares"
        [[cluster.groups]]
        accelerator = "H100-SXM-80GB"
        nodes = {NODES}
        nodes_per_rack = 8
        racks_per_block = 8

        [engine]
        restart_cost = "{restart}"
        checkpoint_write = "{write}"

        [[tenants]]
        name = "trainer"
        [tenants.contract]
        commitment = {{ gpus = {LLAMA3_GPUS} }}
        spares_backed = true

        [failures]
        enabled = true
    """)
    )


@dataclass(frozen=True)
class Run:
    seed: int
    unexpected: int
    planned: int
    held_s: int  # seconds the job held its GPUs
    expected: float  # unexpected interruptions expected over that exposure (rack-aware)
    expected_naive: float  # rate x job GPUs x held time
    ettr: float
    first_order: float  # expected_goodput at the realised interruption rate


def run_job(seed: int, restart: str, write: str, interval_s: int) -> Run:
    sc = scenario(seed, restart, write)
    spec = JobSpec(
        JOB,
        "trainer",
        LLAMA3_GPUS,
        2 * LLAMA3_DAYS * DAY,
        sc.start_s,
        kind=JobKind.TRAINING,
        checkpoint_interval_s=interval_s,
    )
    eng, _ = simulate(sc, jobs=[spec])
    causes = eng.fault_log.by_tenant_cause["trainer"]
    planned = causes.get(PLANNED_MAINTENANCE.name, 0)
    unexpected = sum(causes.values()) - planned
    run = eng.jobs[JOB]
    held_s, exposure = exposure_gpu_s(eng, sc.end_s)
    rate = FailureModel().rate_per_gpu_day / DAY
    n = unexpected + planned
    first_order = expected_goodput(
        interval_s, eng.checkpoint_write_s, eng.restart_cost_s, held_s / n if n else math.inf
    )
    # Work done by the end: the running attempt's progress, or what its checkpoint kept.
    useful = run.progress_s(sc.end_s) if run.placement is not None else run.work_saved_s
    return Run(
        seed,
        unexpected,
        planned,
        held_s,
        rate * exposure,
        rate * LLAMA3_GPUS * held_s,
        useful / sc.duration_s,
        first_order,
    )


def exposure_gpu_s(eng: Engine, end_s: int) -> tuple[int, float]:
    """Seconds the job held GPUs, and the GPU-seconds whose failure would interrupt it:
    its own GPUs for node-scoped causes, every GPU of its racks for rack uplinks."""
    topo = eng.topo
    spans = [(r.end_s - r.start_s, r.nodes) for r in eng.ledger.records() if r.job_id == JOB]
    run = eng.jobs[JOB]
    if run.placement is not None:
        spans.append((end_s - run.start_s, run.placement.nodes))
    held = sum(dt for dt, _ in spans)
    exposure = 0.0
    for dt, nodes in spans:
        own = int(topo.node_gpus[list(nodes)].sum())
        racks = np.isin(topo.node_rack, np.unique(topo.node_rack[list(nodes)]))
        in_racks = int(topo.node_gpus[racks].sum())
        exposure += dt * ((1 - UPLINK_SHARE) * own + UPLINK_SHARE * in_racks)
    return held, exposure


@pytest.fixture(scope="module")
def runs() -> list[Run]:
    out = [run_job(seed, "10m", "5s", 10 * MINUTE) for seed in SEEDS]
    print("\nseed  unexpected  expected  (naive)  planned  held(d)  ETTR    first-order")
    for r in out:
        print(
            f"{r.seed:4d}  {r.unexpected:10d}  {r.expected:8.1f}  ({r.expected_naive:5.1f})"
            f"  {r.planned:7d}  {r.held_s / DAY:7.2f}  {r.ettr:.2%}  {r.first_order:.2%}"
        )
    return out


def test_unexpected_interruptions_match_the_published_419_within_poisson_noise(
    runs: list[Run],
) -> None:
    for r in runs:
        assert r.held_s >= 0.99 * LLAMA3_DAYS * DAY, f"seed {r.seed}: the job waited too long"
        assert abs(r.unexpected - r.expected) <= 4 * math.sqrt(r.expected), r
        # The rack-aware exposure adds under 1% to rate x job GPUs x time.
        assert r.expected_naive <= r.expected <= 1.01 * r.expected_naive, r
        # Planned drains give 24 h notice, and an unexpected failure restarts the job
        # elsewhere every 3.1 h: it has almost always left the node before it goes down
        # (P(no failure in 24 h) = exp(-24 / 3.1) = 0.04%).
        assert r.planned <= 2, r
    k = len(runs)
    mean = fmean(r.unexpected for r in runs)
    expected = fmean(r.expected for r in runs)
    sigma = math.sqrt(sum(r.expected for r in runs)) / k
    assert abs(mean - expected) <= 2 * sigma, (mean, expected, sigma)
    published = LLAMA3_UNEXPECTED * fmean(r.held_s for r in runs) / (LLAMA3_DAYS * DAY)
    sigma_pub = math.sqrt(LLAMA3_UNEXPECTED / k + LLAMA3_UNEXPECTED)
    assert abs(mean - published) <= 2 * sigma_pub, (mean, published, sigma_pub)


def test_effective_training_time_is_above_90_percent(runs: list[Run]) -> None:
    for r in runs:
        assert r.ettr > 0.90, r
        # And it is what the first-order model predicts at the realised failure rate.
        assert abs(r.ettr - r.first_order) <= 0.005, r


def test_at_the_default_restart_and_write_the_ettr_follows_the_first_order_model() -> None:
    """Engine defaults (restart 10 min, write 60 s) and the Young/Daly interval for them:
    about 85% (R/M = 5.3% restarting, sqrt(2 delta/M) = 10.3% writing and lost work),
    as the first-order model says; 90% needs a shorter blocking write."""
    mtbf = job_mtbf_s(FailureModel(), LLAMA3_GPUS, include_planned=False)
    interval = young_daly_interval(mtbf, 60)
    r = run_job(SEEDS[0], "10m", "60s", interval)
    assert abs(r.ettr - r.first_order) <= 0.005, r
    assert 0.82 < r.ettr < 0.88, r
