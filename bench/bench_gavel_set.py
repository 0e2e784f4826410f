"""Benchmark: replays whose cost follows what changes (issue 15), against a baseline.

Three workloads, each run whole-process (``python -m cotenant.cli.main ...``, timed
from outside; the engine's own time is read from the report's ``engine.wall_s``):

1. gavel: the set Gavel's simulator was measured on: the first 10,000 Philly jobs
   submitted from 2017-10-01 with 1, 2, 4 or 8 GPUs, on 64 servers of 8 GPUs under
   strict FIFO. Target <= 1.5 s whole-process (median of ``--runs``).
2. philly: the full Philly trace (82,247 jobs) under ``contract`` with the trace's
   quotas as commitments. Targets <= 3 s in-process (engine), <= 4 s whole-process.
3. colossus: the 30-day colossus-lease scenario at ``--failure-scale`` 1 and 10.
   Targets <= 15 s, and the 10x run at most 2x the 1x run.

The baseline is the code of ``--baseline-ref`` (default: the commit before issue 15's
work), exported with ``git archive`` into a temporary directory and run the same way,
paired with each measured run (base, new, base, new, ...). Both must produce the same
results; the bench says so. Where ../shared/data/philly is absent the Philly parts are
skipped with the reason. Wall times include waiting for the CPU on a shared machine:
the CPU time of each child is printed beside it, and the load average at the start.

Each tree's bytecode is compiled ahead into a cache of its own (``--bytecode cached``,
as an installed package has it); ``--bytecode source`` leaves each run to compile what it
imports, which it does on every run where ``PYTHONDONTWRITEBYTECODE`` is set.

    python bench/bench_gavel_set.py [--only gavel,philly,colossus] [--runs 3]
        [--baseline-ref REF | --no-baseline] [--baseline-colossus] [--colossus-days 30]
        [--bytecode cached|source]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PHILLY = REPO.parent / "shared" / "data" / "philly" / "philly_jobs.csv"
if not PHILLY.exists():  # a worktree beside the main checkout: ../shared is one up more
    PHILLY = REPO.parents[1] / "shared" / "data" / "philly" / "philly_jobs.csv"
BASELINE_REF = "ebcf83f"  # main before issue 15's engine work
GAVEL_JOBS = 10_000
GAVEL_FROM = datetime(2017, 10, 1, tzinfo=UTC)
GAVEL_SIZES = {1, 2, 4, 8}


def gavel_set(out: Path) -> int:
    """Write the 10,000-job set as a cotenant CSV (id, tenant, submit_s, gpus,
    duration_s): Philly's rows from 2017-10-01 (timestamps read as UTC, as the trace
    loader does) with 1, 2, 4 or 8 GPUs, in submit order (file order among equals)."""
    rows: list[tuple[int, int, str, int, int]] = []
    with PHILLY.open(newline="") as f:
        for line, r in enumerate(csv.DictReader(f), start=2):
            try:
                ts = datetime.strptime(r["timestamp"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
                gpus = int(r["num_gpus"])
                dur = round(float(r["duration"]))
            except (ValueError, TypeError):
                continue
            if ts >= GAVEL_FROM and gpus in GAVEL_SIZES and dur > 0:
                rows.append((int(ts.timestamp()), line, r["cluster"], gpus, dur))
    rows.sort()
    with out.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "tenant", "submit_s", "gpus", "duration_s"])
        for submit, line, tenant, gpus, dur in rows[:GAVEL_JOBS]:
            w.writerow([f"philly-{line}", tenant, submit, gpus, dur])
    return min(len(rows), GAVEL_JOBS)


def export(ref: str, into: Path) -> Path:
    """The ``src`` tree of ``ref``, from git, under ``into``."""
    data = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", ref, "src"],
        check=True,
        capture_output=True,
    ).stdout
    tar = into / "src.tar"
    tar.write_bytes(data)
    with tarfile.open(tar) as t:
        t.extractall(into, filter="data")
    return into / "src"


PYCACHE: dict[Path, Path] = {}  # a source tree -> its bytecode cache (``--bytecode cached``)


def compile_ahead(src: Path, into: Path) -> None:
    """Compile ``src``'s modules into a bytecode cache of its own (``into``), as installing
    a package does; the runs read it through ``PYTHONPYCACHEPREFIX``. Without it, where
    ``PYTHONDONTWRITEBYTECODE`` is set (as on this machine), every run compiles every
    module it imports again (about 0.2 s of CPU for a replay)."""
    subprocess.run(
        [sys.executable, "-X", f"pycache_prefix={into}", "-m", "compileall", "-q", str(src)],
        check=True,
        capture_output=True,
    )
    PYCACHE[src] = into


def run_cli(src: Path, args: list[str]) -> tuple[float, float, dict[str, Any]]:
    """Run the CLI whole-process on ``src``: (wall s, CPU s of the child, JSON out)."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    if src in PYCACHE:
        env["PYTHONPYCACHEPREFIX"] = str(PYCACHE[src])
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-m", "cotenant.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
    )
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(args[:2])} failed ({src}):\n{p.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, json.loads(p.stdout)


def report_of(out: dict[str, Any]) -> dict[str, Any]:
    return out["reports"][0] if "reports" in out else out


def outcome(r: dict[str, Any]) -> tuple[Any, ...]:
    """What must not change between the baseline and the new code."""
    jobs = r.get("jobs") or r.get("extra", {}).get("jobs")
    jct = r.get("jct_s") or r.get("extra", {}).get("jct_s")
    return (json.dumps(jobs, sort_keys=True), json.dumps(jct, sort_keys=True), r["utilization"])


def measure(
    label: str, args: list[str], srcs: dict[str, Path], runs: int
) -> dict[str, list[tuple[float, float, float, float]]]:
    """Paired runs: for each round, every source once. Per source: (wall, CPU, engine, the
    engine's µs a job)."""
    got: dict[str, list[tuple[float, float, float, float]]] = {k: [] for k in srcs}
    results: dict[str, tuple[Any, ...]] = {}
    for _ in range(runs):
        for name, src in srcs.items():
            wall, cpu, out = run_cli(src, args)
            r = report_of(out)
            eng = float(r["engine"]["wall_s"])
            got[name].append((wall, cpu, eng, 1e6 * eng / max(1, int(r["engine"]["jobs"]))))
            results[name] = outcome(r)
    if len(set(results.values())) > 1:
        print(f"  {label}: RESULTS DIFFER between the codes: {results}")
    elif len(results) > 1:
        print(f"  {label}: same results from every code (jobs, JCT, utilisation)")
    return got


def line(name: str, runs: list[tuple[float, float, float, float]]) -> str:
    wall = statistics.median(r[0] for r in runs)
    cpu = statistics.median(r[1] for r in runs)
    eng = statistics.median(r[2] for r in runs)
    per_job = statistics.median(r[3] for r in runs)
    return (
        f"    {name:8s} whole-process {wall:6.2f} s (CPU {cpu:6.2f} s)  engine {eng:6.2f} s "
        f"({per_job:.0f} µs a job)  "
        f"[walls: {', '.join(f'{r[0]:.2f}' for r in runs)}]"
    )


def verdict(what: str, value: float, target: float) -> str:
    met = "met" if value <= target else "MISSED"
    return f"    target {what} <= {target:g} s: {met} ({value:.2f} s)"


def ratio(got: dict[str, list[tuple[float, float, float, float]]]) -> None:
    if "base" in got and "new" in got:
        b = statistics.median(r[0] for r in got["base"])
        n = statistics.median(r[0] for r in got["new"])
        bc = statistics.median(r[1] for r in got["base"])
        nc = statistics.median(r[1] for r in got["new"])
        print(f"    ratio base/new: wall {b / n:.1f}x, CPU {bc / nc:.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="gavel,philly,colossus")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--baseline-ref", default=BASELINE_REF)
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument(
        "--colossus-days",
        type=float,
        default=30.0,
        help="simulate this many days of colossus-lease (the target is for 30)",
    )
    ap.add_argument(
        "--baseline-colossus",
        action="store_true",
        help="also run the baseline on colossus-lease (slow: minutes at failure-scale 10)",
    )
    ap.add_argument(
        "--bytecode",
        choices=("cached", "source"),
        default="cached",
        help="cached: compile each tree's bytecode ahead, as an installed package has it "
        "(default); source: let each run compile what it imports (what a run costs here "
        "when PYTHONDONTWRITEBYTECODE is set)",
    )
    a = ap.parse_args()
    only = {x.strip() for x in a.only.split(",")}
    print(f"load average at start: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="bench-gavel-") as tmp:
        srcs = {"new": REPO / "src"}
        if not a.no_baseline:
            try:
                srcs = {"base": export(a.baseline_ref, Path(tmp)), **srcs}
                print(f"baseline: {a.baseline_ref} (git archive of src)")
            except (subprocess.CalledProcessError, OSError) as e:
                print(f"baseline skipped: cannot export {a.baseline_ref} from git ({e})")
        if a.bytecode == "cached":
            for name, src in srcs.items():
                compile_ahead(src, Path(tmp) / f"pycache-{name}")
            print("bytecode: compiled ahead for each tree (as installed)")
        else:
            dont = os.environ.get("PYTHONDONTWRITEBYTECODE")
            print(f"bytecode: from source in each run (PYTHONDONTWRITEBYTECODE={dont})")
        have_philly = PHILLY.exists()
        if not have_philly and only & {"gavel", "philly"}:
            print(f"gavel and philly skipped: shared data not found at {PHILLY}")
        if "gavel" in only and have_philly:
            path = Path(tmp) / "gavel_set.csv"
            n = gavel_set(path)
            print(f"gavel set: {n:,} Philly jobs from 2017-10-01 of 1/2/4/8 GPUs; 64x8; fifo")
            args = ["replay", str(path), "--format", "csv", "--cluster", "64x8"]
            got = measure("gavel", [*args, "--policy", "fifo", "--json"], srcs, a.runs)
            for name, runs in got.items():
                print(line(name, runs))
            ratio(got)
            print(verdict("whole-process", statistics.median(r[0] for r in got["new"]), 1.5))
        if "philly" in only and have_philly:
            print("philly: 82,247 jobs under contract, quotas as commitments")
            args = ["replay", str(PHILLY), "--tenants-from-trace", "--policy", "contract"]
            got = measure("philly", [*args, "--json"], srcs, a.runs)
            for name, runs in got.items():
                print(line(name, runs))
            ratio(got)
            new = got["new"]
            print(verdict("in-process (engine)", statistics.median(r[2] for r in new), 3.0))
            print(verdict("whole-process", statistics.median(r[0] for r in new), 4.0))
        if "colossus" in only:
            days = f"{a.colossus_days:g}"
            print(f"colossus-lease: {days} days, contract, failure-scale 1 and 10 (one run each)")
            csrcs = srcs if a.baseline_colossus else {"new": srcs["new"]}
            walls: dict[str, float] = {}
            for scale in ("1", "10"):
                args = ["simulate", "colossus-lease", "--days", days, "--json"]
                args += ["--failure-scale", scale]
                got = measure(f"colossus x{scale}", args, csrcs, 1)
                for name, runs in got.items():
                    print(line(f"{name} x{scale}", runs))
                ratio(got)
                walls[scale] = got["new"][0][0]
            if a.colossus_days == 30:
                print(verdict("x1 whole-process", walls["1"], 15.0))
            r = walls["10"] / walls["1"]
            met = "met" if r <= 2 else "MISSED"
            print(f"    failure-scale 10 / 1: {r:.2f} (target <= 2: {met})")


if __name__ == "__main__":
    main()
