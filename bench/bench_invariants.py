"""Benchmark (issue 14): the invariant endpoint raises no false alarm under load and
across restarts.

Starts ``cotenant serve --demo`` (colossus-lease's live workload: jobs, failures and
services at 60x on 100,000 GPUs) and, while two submitters post jobs for both labs
without pause, polls ``GET /v1/admin/invariants`` until the target count is reached,
restarting the server every ``polls / restarts`` polls, alternately by SIGTERM and by
``kill -9``, on the same database. Every poll must answer 200 with ``ok: true``; the
invariant check compares the engine's running placements with the store's and looks
for a GPU given twice, so an alarm here is either a real fault or a false alarm, and
both are reported with their text.

    python bench/bench_invariants.py [--polls 1000] [--restarts 20]

Prints the polls, alarms (with their problems), errors by status, submissions accepted,
and the time each restart took; exits 1 on any alarm or error.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from server import free_port, launch_demo  # bench/server.py (run as python3 bench/...)

TENANTS = ("owner-lab", "lessee-lab")


def start(workdir: Path, port: int) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    return launch_demo(workdir, port)


class Submitter(threading.Thread):
    """Posts jobs for one tenant without pause; counts what the server said."""

    def __init__(self, base: str, tenant: str, token: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.base, self.tenant, self.stop = base, tenant, stop
        self.headers = {"Authorization": f"Bearer {token}"}
        self.codes: Counter[int] = Counter()
        self.n = 0

    def run(self) -> None:
        with httpx.Client(base_url=self.base, headers=self.headers, timeout=10) as c:
            while not self.stop.is_set():
                self.n += 1
                body = {
                    "tenant": self.tenant,
                    "name": f"inv-{self.n}",
                    "gpus": (8, 64, 512)[self.n % 3],
                    "duration_s": 600 + 300 * (self.n % 7),
                    "kind": "training" if self.n % 2 else "experiment",
                    "checkpoint_interval_s": 300,
                }
                try:
                    self.codes[c.post("/v1/jobs", json=body).status_code] += 1
                except httpx.TransportError:
                    self.codes[0] += 1  # the server is restarting
                    time.sleep(0.2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--polls", type=int, default=1000)
    ap.add_argument("--restarts", type=int, default=20)
    args = ap.parse_args()
    per_life = max(1, args.polls // (args.restarts + 1))
    alarms: list[str] = []
    errors: Counter[str] = Counter()
    submitted: Counter[int] = Counter()
    restart_s: list[float] = []
    polls = 0
    with tempfile.TemporaryDirectory(prefix="bench-invariants-") as tmp:
        workdir = Path(tmp)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc, tokens = start(workdir, port)
        t_all = time.perf_counter()
        for life in range(args.restarts + 1):
            stop = threading.Event()
            subs = [Submitter(base, t, tokens[t], stop) for t in TENANTS]
            for s in subs:
                s.start()
            with httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {tokens['operator']}"}
            ) as c:
                want = per_life if life < args.restarts else args.polls - polls
                for _ in range(want):
                    try:
                        r = c.get("/v1/admin/invariants", timeout=30)
                    except httpx.TransportError as e:
                        errors[type(e).__name__] += 1
                        continue
                    polls += 1
                    if r.status_code != 200:
                        errors[str(r.status_code)] += 1
                    elif not r.json()["ok"]:
                        alarms.append(f"life {life}: {r.json()['problems']}")
            stop.set()
            for s in subs:
                s.join()
                submitted.update(s.codes)
            if life == args.restarts:
                break
            how = "kill -9" if life % 2 else "SIGTERM"
            t0 = time.perf_counter()
            os.kill(proc.pid, signal.SIGKILL if life % 2 else signal.SIGTERM)
            proc.wait(60)
            proc, tokens = start(workdir, port)  # the same database; keys are stored
            restart_s.append(time.perf_counter() - t0)
            print(
                f"  restart {life + 1:2d}/{args.restarts} by {how:7s}: "
                f"{restart_s[-1]:5.1f} s; {polls:,} polls so far, {len(alarms)} alarms",
                flush=True,
            )
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        wall = time.perf_counter() - t_all
    print(
        f"\n{polls:,} invariant polls across {args.restarts} restarts in {wall:.0f} s "
        f"(restart median {sorted(restart_s)[len(restart_s) // 2] if restart_s else 0:.1f} s)"
    )
    print(f"  alarms: {len(alarms)}" + "".join(f"\n    {a}" for a in alarms[:20]))
    print(f"  errors: {dict(errors) or 0}")
    print(f"  submissions by status: {dict(sorted(submitted.items()))} (0 = server restarting)")
    return 1 if alarms or errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
