"""Benchmark (a): one scheduling cycle on colossus-1 (100,000 GPUs) with 10,000 pending
jobs of mixed sizes. Target: >= 20,000 placement decisions per second.

Prints decisions/s for each policy on the same snapshot, the number of placements,
and the ratio to the fifo-backfill baseline measured in the same run.

    python bench/bench_cycle.py [--pending 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from cotenant.backends.sim import SimBackend
from cotenant.cluster.presets import preset
from cotenant.cluster.topology import Topology
from cotenant.engine.clock import SimClock
from cotenant.engine.core import Engine
from cotenant.model.contracts import Commitment, Contract, IsolationTerms
from cotenant.model.jobs import JobKind, JobSpec
from cotenant.scheduler.policies import get_policy

T0 = 1_790_812_800


def build(policy: str, pending: int, seed: int) -> Engine:
    topo = Topology(preset("colossus-1"))
    contracts = [
        Contract(
            "owner-lab",
            T0,
            T0 + 365 * 86_400,
            Commitment(gpus=20_000),
            isolation=IsolationTerms(("lessee-lab",)),
            priority=10,
        ),
        Contract(
            "lessee-lab",
            T0,
            T0 + 365 * 86_400,
            Commitment(all_available=True),
            isolation=IsolationTerms(("owner-lab",)),
        ),
    ]
    eng = Engine(
        topo,
        contracts,
        get_policy(policy),
        SimBackend(),
        SimClock(T0),
        tenants=["owner-lab", "lessee-lab", "guest"],
    )
    rng = np.random.default_rng(seed)
    # Half the cluster busy with long jobs, placed by the engine itself.
    for i, (tenant, gpus) in enumerate([("owner-lab", 16_384), ("lessee-lab", 32_768)]):
        eng.submit(JobSpec(f"big-{i}", tenant, gpus, 30 * 86_400, T0, JobKind.TRAINING))
    eng.step(T0)
    # Philly-like mix: most jobs small, a few large (shares as in the public Philly trace,
    # rounded): 1 GPU 60%, 2-4 15%, 8 15%, 16-64 8%, 128-512 2%.
    sizes = np.array(
        [1] * 60 + [2] * 8 + [4] * 7 + [8] * 15 + [16] * 4 + [32] * 2 + [64] * 2 + [128, 512]
    )
    tenants = np.array(["owner-lab", "lessee-lab", "lessee-lab", "guest"])
    for i in range(pending):
        eng.submit(
            JobSpec(
                f"p-{i}",
                str(rng.choice(tenants)),
                int(rng.choice(sizes)),
                int(rng.integers(600, 86_400)),
                T0 + 1,
                priority=int(rng.integers(0, 3)),
            )
        )
    # Enqueue without running a cycle: take the submit events, not the decisions.
    eng.handle_due(T0 + 1)
    return eng


def measure(policy: str, pending: int, repeat: int) -> tuple[float, int, int]:
    best = float("inf")
    n_dec = n_place = 0
    for r in range(repeat):
        eng = build(policy, pending, seed=r)
        from cotenant.contracts.entitlement import entitlements

        eng.entitled = entitlements(eng.contracts.values(), T0 + 1, eng.topo.capacity_by_kind())
        snap = eng.snapshot(T0 + 1)
        t = time.perf_counter()
        d = eng.policy.decide(snap)
        best = min(best, time.perf_counter() - t)
        n_dec, n_place = len(d), len(d.places)
    return best, n_dec, n_place


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pending", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    print(
        f"colossus-1 (100,000 GPUs, 12,500 nodes), {a.pending:,} pending jobs, best of {a.repeat}"
    )
    base = None
    for policy in ("fifo-backfill", "contract"):
        secs, n_dec, n_place = measure(policy, a.pending, a.repeat)
        rate = n_dec / secs
        base = base or rate
        print(
            f"  {policy:14s} {secs * 1e3:8.1f} ms  {n_dec:6,} decisions ({n_place:,} placements)"
            f"  {rate:10,.0f} decisions/s  {n_place / secs:9,.0f} placements/s"
            f"  ratio to baseline {rate / base:.2f}  target >= 20,000/s: "
            f"{'met' if rate >= 20_000 else 'MISSED'}"
        )


if __name__ == "__main__":
    main()
