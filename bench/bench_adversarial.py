"""Benchmark: the adversarial search's deep profile (issue 14).

Hypothesis generates whole scenarios (tests/property/adversarial.py: 2-6 tenants,
contracts with ramps and notice, rival pairs, gangs of 1 GPU to the whole cluster,
priorities, an inference service, bursts of node, rack, job-only and drain failures,
a power cap) on small clusters, runs each on the twin and checks the engine after
every step. Prints how many worlds, engine steps, jobs and faults it covered, and the
first failing world (shrunk by hypothesis) if any.

    python bench/bench_adversarial.py [--worlds 10000] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hseed

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "property"))
from adversarial import Coverage, World, run_world, worlds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worlds", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bursts", type=int, default=4, help="most fault bursts per world")
    args = ap.parse_args()
    total = Coverage()
    t0 = time.perf_counter()

    @hseed(args.seed)
    @settings(
        max_examples=args.worlds,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(worlds(args.bursts))
    def search(world: World) -> None:
        try:
            cov = run_world(world)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{world.describe()}") from None
        total.add(cov)
        if total.worlds % 500 == 0:
            rate = total.worlds / (time.perf_counter() - t0)
            print(f"  {total.worlds:,} worlds, {total.steps:,} steps ({rate:.0f} worlds/s)")

    failed = None
    try:
        search()
    except AssertionError as e:
        failed = str(e)
    wall = time.perf_counter() - t0
    ev = total.events
    print(
        f"adversarial search: {total.worlds:,} worlds (runs, shrinking included), "
        f"{total.steps:,} engine steps, {total.jobs:,} jobs, {total.faults:,} injected faults, "
        f"{ev['place']:,} placements, {ev['reclaim']:,} reclaims, {ev['preempt']:,} "
        f"preemptions, {ev['interrupt']:,} interruptions, {ev['scale']:,} service scalings; "
        f"{wall:.0f} s"
    )
    if failed is not None:
        print(f"FAILED: {failed}")
        return 1
    print("every check held after every step")
    return 0


if __name__ == "__main__":
    sys.exit(main())
