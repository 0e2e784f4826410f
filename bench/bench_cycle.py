"""Benchmark (a): one scheduling cycle on colossus-1 (100,000 GPUs, 12,500 nodes) with
10,000 pending jobs of mixed sizes. Target (issue 15): >= 50,000 decisions per second.

Prints decisions/s for each policy on the same snapshot (the CPU time of ``decide``,
best of ``--repeat`` decides of that one snapshot, so a busy machine's waiting is not
counted; the garbage collector is paused while one runs, as ``timeit`` does; the wall
time beside it), the number of placements, and the ratio to the same
policy on a baseline tree (``--baseline-ref``, default the commit before this bench's
incremental placement work; exported with ``git archive`` and run in a child process)
measured in the same run.

    python bench/bench_cycle.py [--pending 10000] [--repeat 3] [--baseline-ref REF | --no-baseline]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

from cotenant.backends.sim import SimBackend
from cotenant.cluster.presets import preset
from cotenant.cluster.topology import Topology
from cotenant.engine.clock import SimClock
from cotenant.engine.core import Engine
from cotenant.model.contracts import Commitment, Contract, IsolationTerms
from cotenant.model.jobs import JobKind, JobSpec
from cotenant.scheduler.decisions import Decisions
from cotenant.scheduler.policies import get_policy

T0 = 1_790_812_800
REPO = Path(__file__).resolve().parents[1]
BASELINE_REF = "b358cba"  # main before the incremental placement work (session 9)
TARGET = 50_000
POLICIES = ("fifo-backfill", "contract")


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


def digest(d: Decisions) -> str:
    """A fingerprint of a cycle's decisions (what, where, why), to tell two trees agree."""
    text = repr(
        (
            [(p.job_id, p.placement.nodes, p.placement.gpus, p.reason) for p in d.places],
            [(r.victim_id, r.beneficiary_id, r.deadline_s) for r in d.reclaims],
            [(w.job_id, w.reason, w.detail) for w in d.waits],
            [(r.job_id, r.detail) for r in d.rejects],
            sorted((t, w.reason) for t, w in d.tenant_waits.items()),
        )
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def measure(policy: str, pending: int, repeat: int) -> tuple[float, float, int, int, str]:
    """(best CPU s, its wall s, decisions, placements, fingerprint) of ``decide`` on one
    snapshot (seed 0), timed ``repeat`` times: a policy's ``decide`` only reads the
    snapshot, so each run decides the same cycle."""
    from cotenant.contracts.entitlement import entitlements

    eng = build(policy, pending, seed=0)
    eng.entitled = entitlements(eng.contracts.values(), T0 + 1, eng.topo.capacity_by_kind())
    snap = eng.snapshot(T0 + 1)
    best, best_wall = float("inf"), 0.0
    first = ""
    n_dec = n_place = 0
    for _ in range(repeat):
        gc.collect()  # as timeit does: no collection of earlier garbage inside the timing
        gc.disable()
        t, c = time.perf_counter(), time.process_time()
        d = eng.policy.decide(snap)
        cpu, wall = time.process_time() - c, time.perf_counter() - t
        gc.enable()
        if cpu < best:
            best, best_wall = cpu, wall
        fp = digest(d)
        if first and fp != first:
            raise SystemExit(f"{policy}: two decides of one snapshot differ")
        first, n_dec, n_place = fp, len(d), len(d.places)
    return best, best_wall, n_dec, n_place, first


def baseline(ref: str, pending: int, repeat: int) -> dict[str, list[float]]:
    """This bench's figures on the ``src`` tree of ``ref`` (run in a child process)."""
    with tempfile.TemporaryDirectory() as tmp:
        data = subprocess.run(
            ["git", "-C", str(REPO), "archive", "--format=tar", ref, "src"],
            check=True,
            capture_output=True,
        ).stdout
        (Path(tmp) / "src.tar").write_bytes(data)
        with tarfile.open(Path(tmp) / "src.tar") as t:
            t.extractall(tmp, filter="data")
        env = {**os.environ, "PYTHONPATH": str(Path(tmp) / "src")}
        args = [sys.executable, __file__, "--child", f"--pending={pending}", f"--repeat={repeat}"]
        out = subprocess.run(args, env=env, check=True, capture_output=True, text=True).stdout
    return dict(json.loads(out))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pending", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--baseline-ref", default=BASELINE_REF)
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:  # a baseline tree's figures, as JSON for the parent
        print(json.dumps({p: list(measure(p, a.pending, a.repeat)) for p in POLICIES}))
        return
    print(
        f"colossus-1 (100,000 GPUs, 12,500 nodes), {a.pending:,} pending jobs, best of "
        f"{a.repeat} decides of one snapshot (CPU time)"
    )
    base = None if a.no_baseline else baseline(a.baseline_ref, a.pending, a.repeat)
    for policy in POLICIES:
        cpu, wall, n_dec, n_place, fp = measure(policy, a.pending, a.repeat)
        rate = n_dec / cpu
        print(
            f"  {policy:14s} {cpu * 1e3:8.1f} ms CPU ({wall * 1e3:.1f} ms wall)  {n_dec:6,} "
            f"decisions ({n_place:,} placements)  {rate:10,.0f} decisions/s  "
            f"target >= {TARGET:,}/s: {'met' if rate >= TARGET else 'MISSED'}"
        )
        if base is not None:
            b_cpu, _, b_dec, _, b_fp = base[policy]
            same = "the same decisions" if b_fp == fp else "DIFFERENT decisions"
            print(
                f"  {'':14s} baseline {a.baseline_ref}: {b_cpu * 1e3:8.1f} ms CPU, "
                f"{b_dec / b_cpu:,.0f} decisions/s; ratio new/baseline {rate * b_cpu / b_dec:.2f}"
                f" ({same})"
            )


if __name__ == "__main__":
    main()
