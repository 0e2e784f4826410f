"""Benchmark (what-if): the overhead of running a study on Dask.

Target (issue 17): 200 runs of a 7-day colossus-lease on this 2-core machine lose under
10% to distribution: total wall x workers / the runs' own time summed < 1.10. The same
runs' serial baseline runs in the same process (``--serial-runs`` of them, one by one,
no Dask): its ratio (wall / run time) is the floor for building tasks and reading
reports, so the distribution's own cost is the difference.

Each run is one seed of the scenario as written (``--days`` long); the cache is off, so
every run is simulated. A run's own time is measured inside it (the twin's engine loop
and report); the wall time includes starting the local cluster and shutting it down.

    python bench/bench_whatif.py                       # the target: heavy (hours here)
    python bench/bench_whatif.py --runs 20 --days 1    # reduced, while others work
    python bench/bench_whatif.py --scenario small-lease --runs 40 --days 3  # tiny runs:
                                                       # the fixed costs weigh the most
"""

from __future__ import annotations

import argparse
import time
from statistics import fmean

from cotenant.whatif.cache import RunCache
from cotenant.whatif.runner import Plan, default_workers, execute
from cotenant.whatif.variants import Variant, read_base


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="colossus-lease")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--workers", type=int, default=default_workers())
    ap.add_argument("--serial-runs", type=int, default=None, help="default: min(runs, 10)")
    ap.add_argument("--scheduler", default=None, help="a Dask scheduler instead of a local one")
    args = ap.parse_args()
    base = read_base(args.scenario)
    seed0 = int(base.raw.get("seed", 0))
    plan = Plan(base, (Variant(),), tuple(range(seed0, seed0 + args.runs)), args.days)
    tasks = plan.tasks()
    n_serial = min(args.runs, args.serial_runs if args.serial_runs is not None else 10)
    print(
        f"{args.runs} runs of {args.scenario}, {args.days:g} days each; "
        f"{args.workers} workers; serial baseline {n_serial} runs"
    )

    t0 = time.perf_counter()
    serial = execute(tasks[:n_serial], RunCache(None), serial=True)
    serial_wall = time.perf_counter() - t0
    s_ratio = serial_wall / serial.run_s
    print(
        f"serial: {n_serial} runs in {serial_wall:.1f} s; run time {serial.run_s:.1f} s "
        f"(mean {serial.run_s / n_serial:.2f} s); wall / run time {s_ratio:.3f}"
    )

    dist = execute(tasks, RunCache(None), scheduler=args.scheduler, workers=args.workers)
    if dist.cancelled:
        raise SystemExit("cancelled")
    ratio = dist.overhead or float("nan")
    per_run = fmean(float(r["wall_s"]) for r in dist.results.values())
    print(
        f"dask:   {dist.ran} runs in {dist.wall_s:.1f} s on {dist.workers} workers; run time "
        f"{dist.run_s:.1f} s (mean {per_run:.2f} s); wall x workers / run time {ratio:.3f}"
    )
    steady = (dist.wall_s - dist.startup_s) * dist.workers / dist.run_s
    print(
        f"        of which starting the cluster {dist.startup_s:.1f} s; without it, "
        f"wall x workers / run time {steady:.3f}"
    )
    speedup = (serial.run_s / n_serial) * args.runs / dist.wall_s
    print(
        f"overhead of distribution: {100 * (ratio - 1):.1f}% (target < 10%); over the "
        f"serial baseline's {100 * (s_ratio - 1):.1f}%: {100 * (ratio - s_ratio):.1f} points; "
        f"speed-up against running the same runs serially: {speedup:.2f}x "
        f"on {dist.workers} workers"
    )
    print(
        f"mean run time, dask / serial: {per_run / (serial.run_s / n_serial):.3f} "
        "(above 1: the workers slowed each other or were slowed by other load)"
    )


if __name__ == "__main__":
    main()
