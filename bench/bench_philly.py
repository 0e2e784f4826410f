"""Benchmark: the full Philly trace (82,247 jobs, 15 tenants) replayed under `contract`.
Target: < 10 s wall and < 1 GB on this machine.

The cluster is the one the trace's quotas describe: the 11 quotas of
vc_quota_nodes.csv add up to 352 nodes, taken as 8-GPU nodes (the usual Philly
assumption), so 2,816 GPUs; each quota is that tenant's fixed commitment
(`--tenants-from-trace`); the 4 tenants without one only borrow. Also replays the
same jobs under `fifo-backfill` in the same process and prints the ratio of wall
times. CPU time is printed too: on a shared machine wall time includes waiting
for the CPU. `--profile` prints where the contract run spends its time (cProfile).

    python bench/bench_philly.py [--no-baseline] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import resource
import time
from pathlib import Path

from cotenant.traces import load_trace
from cotenant.twin.replay import default_cluster, replay
from cotenant.twin.report import Report

PHILLY = Path(__file__).resolve().parents[2] / "shared" / "data" / "philly" / "philly_jobs.csv"
TARGET_S = 10.0
TARGET_MB = 1024.0


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def line(r: Report, wall: float, cpu: float) -> str:
    e = r.extra
    return (
        f"  {r.policy:14s} wall {wall:5.1f} s  CPU {cpu:5.1f} s  peak RSS {rss_mb():5.0f} MB  "
        f"jobs {e['jobs']['completed']:,}/{e['jobs']['total']:,}  cycles {r.engine['cycles']:,}  "
        f"utilisation {r.utilization:.1%} (while jobs arrive {e['utilization_arrivals']:.1%})  "
        f"avg JCT {e['jct_s']['avg'] / 3600:.1f} h  avg queue {e['queue_delay_s']['avg']:.0f} s  "
        f"guarantee violations {e['guarantee_violation_s']:,} s"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--profile", action="store_true", help="cProfile the contract run")
    a = ap.parse_args()
    if not PHILLY.exists():
        raise SystemExit(f"shared data not found at {PHILLY}")
    t = time.perf_counter()
    trace = load_trace("philly", PHILLY)
    load_s = time.perf_counter() - t
    cluster = default_cluster(trace)
    print(
        f"philly: {len(trace.jobs):,} jobs, {len(trace.tenants)} tenants, "
        f"{len(trace.quotas_gpus)} quotas ({sum(trace.quotas_gpus.values()):,} GPUs) as "
        f"commitments, on {cluster.name} ({cluster.total_gpus:,} GPUs); loaded in {load_s:.1f} s"
    )
    walls: dict[str, float] = {}
    for policy in ("contract",) + (() if a.no_baseline else ("fifo-backfill",)):
        prof = cProfile.Profile() if a.profile and policy == "contract" else None
        t, c = time.perf_counter(), time.process_time()
        if prof is not None:
            prof.enable()
        (report,) = replay(trace, cluster, [policy], tenants_from_trace=True)
        if prof is not None:
            prof.disable()
        walls[policy] = time.perf_counter() - t
        print(line(report, walls[policy], time.process_time() - c))
        if prof is not None:
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(25)
            print(out.getvalue())
    w = walls["contract"]
    mb = rss_mb()
    print(
        f"  target < {TARGET_S:.0f} s wall: {'met' if w < TARGET_S else 'MISSED'} ({w:.1f} s); "
        f"target < 1 GB: {'met' if mb < TARGET_MB else 'MISSED'} ({mb:.0f} MB)"
    )
    if "fifo-backfill" in walls:
        print(f"  ratio contract/fifo-backfill wall time: {w / walls['fifo-backfill']:.2f}")


if __name__ == "__main__":
    main()
