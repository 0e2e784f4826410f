"""Benchmark: the 30-day colossus-2-lease scenario (1,000,000 GB200 GPUs in NVL72
racks, failures on) on the digital twin, with colossus-lease (100,000 H100) as the
baseline in the same run.

Target (issue 15): colossus-2, 30 days with failures, <= 5 min wall and <= 4 GB peak
RSS. Each scenario runs in its own process (spawned, one after the other), so each
peak RSS is its own; the wall time is the whole simulate() call (engine, failures,
services and reports), not the workload generation. The CPU time beside it is the
figure to read on a shared, loaded machine.

    python bench/bench_colossus2.py [--days 30] [--baseline-days 30] [--no-baseline]

``--days`` shortens the colossus-2 horizon (the workload is still the 30-day one, so
the first days are the same) for a quicker look, ``--baseline-days`` the baseline's;
the ratio is then also given per simulated day.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing as mp
import resource
import time
from typing import Any

TARGET_WALL_S = 300.0
TARGET_RSS_MB = 4096.0


def run(name: str, days: float | None) -> dict[str, Any]:
    """Simulate one built-in scenario (in a fresh process) and return its figures."""
    from cotenant.twin.runtime import simulate, workload_of
    from cotenant.twin.scenario import load_scenario

    sc = load_scenario(name)
    jobs = workload_of(sc)
    if days is not None:
        sc = dataclasses.replace(sc, duration_s=int(days * 86_400))
    t, cpu = time.perf_counter(), time.process_time()
    engine, report = simulate(sc, jobs=jobs)
    wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    faults = report.extra.get("faults", {})
    return {
        "name": name,
        "gpus": sc.cluster.total_gpus,
        "jobs": len(jobs),
        "days": sc.duration_s / 86_400,
        "wall_s": wall,
        "cpu_s": cpu,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cycles": engine.cycles,
        "utilization": report.utilization,
        "goodput": faults.get("cluster_goodput"),
        "violation_s": report.guarantee_violation_s(),
    }


def in_child(name: str, days: float | None) -> dict[str, Any]:
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(run, (name, days))


def show(r: dict[str, Any]) -> None:
    goodput = "-" if r["goodput"] is None else f"{r['goodput']:.1%}"
    print(
        f"  {r['name']:17s} {r['gpus']:>9,} GPUs {r['jobs']:>7,} jobs {r['days']:4g} days  "
        f"wall {r['wall_s']:6.1f} s (CPU {r['cpu_s']:6.1f} s)  peak RSS {r['rss_mb']:6.0f} MB  "
        f"cycles {r['cycles']:>7,}  utilisation {r['utilization']:.1%}  goodput {goodput}  "
        f"guarantee violations {r['violation_s']:,} s",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=float, default=None, help="colossus-2 horizon (default 30)")
    ap.add_argument("--baseline-days", type=float, default=None, help="default 30")
    ap.add_argument("--no-baseline", action="store_true")
    a = ap.parse_args()
    base = None if a.no_baseline else in_child("colossus-lease", a.baseline_days)
    if base is not None:
        show(base)
    big = in_child("colossus-2-lease", a.days)
    show(big)
    w, rss = big["wall_s"], big["rss_mb"]
    full = big["days"] >= 30
    print(
        f"  target <= {TARGET_WALL_S:.0f} s wall: "
        f"{('met' if w <= TARGET_WALL_S else 'MISSED') if full else 'n/a (short run)'} "
        f"({w:.1f} s); target <= 4 GB: {'met' if rss <= TARGET_RSS_MB else 'MISSED'} "
        f"({rss:.0f} MB)"
    )
    if base is not None:
        print(
            f"  ratio colossus-2 / colossus-lease wall time: {w / base['wall_s']:.2f} "
            f"(10x the GPUs; per simulated day "
            f"{(w / big['days']) / (base['wall_s'] / base['days']):.2f})"
        )


if __name__ == "__main__":
    main()
