"""Benchmark: the full Philly trace with its virtual-cluster quotas as contracts, the
quotas scaled so the cluster is loaded (issue 14's acceptance).

Philly's 11 quotas add up to 352 nodes. Scaling them by 96/352 (whole nodes, rounded)
gives a 94-node cluster at about 50% utilisation; 137/352 and 69/352 give about 35%
and 70%. Each scale is replayed under ``contract``, ``las`` and ``fifo-backfill`` in
one run (the same jobs, the same cluster), printing per policy: utilisation, guarantee
violations (seconds and jobs), average JCT, and contract's JCT against las.

The targets: 0 s of violations under ``contract`` at every scale and its average JCT
within 5% of ``las``; fifo-backfill shows the violations a contract-blind policy makes.

    python bench/bench_loaded_quotas.py [--scales 96/352,137/352,69/352] [--policies ...]
Needs ../shared/data/philly (skips with the reason otherwise). Takes minutes (las is
the slowest: it preempts).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from cotenant.traces import load_trace
from cotenant.twin.replay import default_cluster, parse_quota_scale, replay, scale_quotas

PHILLY = Path(__file__).resolve().parents[2] / "shared" / "data" / "philly" / "philly_jobs.csv"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", default="137/352,96/352,69/352")
    ap.add_argument("--policies", default="contract,las,fifo-backfill")
    args = ap.parse_args()
    if not PHILLY.exists():
        print(f"skipped: {PHILLY} is absent (the public Philly trace lives in ../shared/data)")
        return 0
    trace = load_trace("philly", PHILLY)
    policies = [p for p in args.policies.split(",") if p]
    ok = True
    for text in args.scales.split(","):
        scaled = scale_quotas(trace, parse_quota_scale(text), None)
        cluster = default_cluster(scaled)
        t0 = time.perf_counter()
        reports = replay(scaled, cluster, policies, tenants_from_trace=True)
        wall = time.perf_counter() - t0
        print(
            f"\nquotas x {text}: {cluster.total_gpus:,} GPUs ({cluster.name}), "
            f"{len(scaled.jobs):,} jobs, {wall:.0f} s for {len(policies)} policies"
        )
        by = {r.policy: r for r in reports}
        for r in reports:
            jct = r.extra["jct_s"]["avg"]
            jobs = sum(int(t["guarantee_violation_jobs"]) for t in r.tenants.values())
            print(
                f"  {r.policy:<14} utilisation {r.utilization:6.1%}  violations "
                f"{r.guarantee_violation_s():>12,} s on {jobs:>5,} jobs  "
                f"avg JCT {jct / 3600:7.2f} h"
            )
        if "contract" in by and "las" in by:
            c, las = by["contract"], by["las"]
            ratio = c.extra["jct_s"]["avg"] / las.extra["jct_s"]["avg"]
            good = c.guarantee_violation_s() == 0 and ratio <= 1.05
            ok &= good
            print(
                f"  contract/las avg JCT {ratio:.3f} (target <= 1.05); contract violations "
                f"{c.guarantee_violation_s():,} s (target 0): {'met' if good else 'NOT met'}"
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
