"""Benchmark (b): the 30-day colossus-lease scenario on the digital twin.
Target: < 60 s wall and < 2 GB on a 2-core machine.

Also runs the fifo-backfill baseline on the same workload, in the same run, and
prints the ratio of wall times.

    python bench/bench_colossus_lease.py [--baseline/--no-baseline]
"""

from __future__ import annotations

import argparse
import resource
import time

from cotenant.twin.runtime import simulate, workload_of
from cotenant.twin.scenario import load_scenario


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-baseline", action="store_true")
    a = ap.parse_args()
    sc = load_scenario("colossus-lease")
    jobs = workload_of(sc)
    print(
        f"colossus-lease: {sc.cluster.total_gpus:,} GPUs, {len(jobs):,} jobs, "
        f"{sc.duration_s / 86_400:g} simulated days"
    )
    walls = {}
    for policy in ("contract",) + (() if a.no_baseline else ("fifo-backfill",)):
        t = time.perf_counter()
        engine, report = simulate(sc, policy=policy, jobs=jobs)
        walls[policy] = time.perf_counter() - t
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"  {policy:14s} wall {walls[policy]:6.1f} s  peak RSS {rss_mb:6.0f} MB  "
            f"cycles {engine.cycles:,}  utilisation {report.utilization:.1%}  "
            f"guarantee violations {report.guarantee_violation_s():,} s  "
            f"speed-up over real time {report.engine['speedup']:,.0f}x"
        )
    w = walls["contract"]
    print(
        f"  target < 60 s wall: {'met' if w < 60 else 'MISSED'} ({w:.1f} s); "
        f"target < 2 GB: {'met' if rss_mb < 2048 else 'MISSED'} ({rss_mb:.0f} MB)"
    )
    if "fifo-backfill" in walls:
        print(f"  ratio contract/fifo-backfill wall time: {w / walls['fifo-backfill']:.2f}")


if __name__ == "__main__":
    main()
