"""Benchmark: how long ``cotenant --help`` takes, whole process, against a bare
interpreter (``python3 -c pass``) measured in the same run, runs interleaved so that a
change in the machine's load moves both. Target (issue 15): <= 0.3 s.

Prints the median wall seconds of each, the difference (what cotenant adds) and the
ratio, and the same for ``python3 -m cotenant.cli.main --help`` before lazy imports when
``--against`` names another source tree (e.g. an older checkout's ``src``).

    python bench/bench_cli_start.py [--runs 15] [--against /path/to/old/src]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

HELP = [sys.executable, "-m", "cotenant.cli.main", "--help"]
BARE = [sys.executable, "-c", "pass"]


def wall_s(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--against", help="another src tree to time the same command from")
    args = ap.parse_args()
    env = dict(os.environ)
    cases: dict[str, tuple[list[str], dict[str, str]]] = {
        "python3 -c pass": (BARE, env),
        "cotenant --help": (HELP, env),
    }
    if args.against:
        old = {**env, "PYTHONPATH": args.against}
        cases["cotenant --help (against)"] = (
            [sys.executable, "-m", "cotenant.cli.main", "--help"],
            old,
        )
    times: dict[str, list[float]] = {name: [] for name in cases}
    for argv, e in cases.values():
        wall_s(argv, e)  # warm the file cache
    for _ in range(args.runs):
        for name, (argv, e) in cases.items():
            times[name].append(wall_s(argv, e))
    base = statistics.median(times["python3 -c pass"])
    print(f"{'command':<28} {'median s':>9} {'min s':>7} {'- bare s':>9} {'/ bare':>7}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:<28} {med:9.3f} {min(ts):7.3f} {med - base:9.3f} {med / base:7.2f}")
    if args.against:
        new = statistics.median(times["cotenant --help"])
        old_s = statistics.median(times["cotenant --help (against)"])
        print(f"cotenant --help now / against: {new / old_s:.2f}")


if __name__ == "__main__":
    main()
