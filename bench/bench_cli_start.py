"""Benchmark: how long ``cotenant --help`` takes, whole process, against a bare
interpreter (``python3 -c pass``) measured in the same run, runs interleaved so that a
change in the machine's load moves both. Target (issue 15): <= 0.3 s.

Prints the median wall seconds of each, the difference (what cotenant adds) and the
ratio, and the same for ``python3 -m cotenant.cli.main --help`` before lazy imports when
``--against`` names another source tree (e.g. an older checkout's ``src``).

Every command runs with its bytecode compiled ahead, as an install would (pip compiles
what it installs): into a temporary ``PYTHONPYCACHEPREFIX``, also where the machine sets
``PYTHONDONTWRITEBYTECODE`` (then every run would compile our sources again).

    python bench/bench_cli_start.py [--runs 15] [--against /path/to/old/src]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HELP = [sys.executable, "-m", "cotenant.cli.main", "--help"]
BARE = [sys.executable, "-c", "pass"]
SRC = Path(__file__).resolve().parents[1] / "src"


def wall_s(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--against", help="another src tree to time the same command from")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-pyc-") as pyc:
        run(args.runs, args.against, pyc)


def run(runs: int, against: str | None, pyc: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = pyc
    trees = {"cotenant --help": str(SRC)}
    if against:
        trees["cotenant --help (against)"] = against
    cases: dict[str, tuple[list[str], dict[str, str]]] = {"python3 -c pass": (BARE, env)}
    for name, tree in trees.items():
        cases[name] = (HELP, {**env, "PYTHONPATH": tree})
        compile_all = [sys.executable, "-m", "compileall", "-q", tree]
        subprocess.run(compile_all, env=env, stdout=subprocess.DEVNULL, check=True)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for argv, e in cases.values():
        wall_s(argv, e)  # warm the file cache; compiles the libraries' bytecode
    for _ in range(runs):
        for name, (argv, e) in cases.items():
            times[name].append(wall_s(argv, e))
    base = statistics.median(times["python3 -c pass"])
    print(f"{runs} runs each, interleaved; load average {os.getloadavg()[0]:.1f}")
    print(f"{'command':<28} {'median s':>9} {'min s':>7} {'- bare s':>9} {'/ bare':>7}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:<28} {med:9.3f} {min(ts):7.3f} {med - base:9.3f} {med / base:7.2f}")
    if against:
        new = statistics.median(times["cotenant --help"])
        old_s = statistics.median(times["cotenant --help (against)"])
        print(f"cotenant --help now / against: {new / old_s:.2f}")


if __name__ == "__main__":
    main()
