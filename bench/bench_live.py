"""The live server at full scale, under load: does it keep the contract's promises?

Starts ``cotenant serve --demo`` (colossus-lease: 100,000 GPUs, owner 20,000, lessee all
available) on a fresh SQLite file on 127.0.0.1 and loads it through the API like a busy
cluster, reproducibly from ``--seed``:

- jobs (``--jobs``, default 5,000): 30 trainings of 1,024-8,192 GPUs for 3-10 h, the rest
  experiments of 1-64 GPUs with log-normal durations (median 1.5 h); a quarter for the
  owner, the rest for the lessee. Submitted at ``--rate`` (40/s) for 80% of them, then a
  burst of 15% at once, then a trickle of the last 5% spread over the rest of the run.
- readers: ``--readers`` (32) concurrent clients, each in a loop reading a 100-job
  page (walking the cursor), one job, and the cluster, pausing ``--think`` s between
  rounds (0: a closed loop, where latency is queueing); switched on and off
  every ``--window`` seconds (off first), so that cycles per second with and without
  readers are measured under the same submissions.
- a monitor scrapes ``/metrics`` twice a second (lag, cycles) and the server's RSS.

After the run it reads the audit log from the database file (not through the API, so
the analysis does not load the server) and prints: GPUs stranded (free while demand
that fits has waited beyond the grace period, with node isolation between the two rival
tenants), guarantee violations (the engine's own check), reclaims past their deadline,
engine lag p50/p99, cycles per second with and without readers, API latency per
endpoint, RSS and store size, each beside the issue's target.

    python3 bench/bench_live.py [--seconds 180] [--speed 60] [--readers 32] [--seed 1]
    python3 bench/bench_live.py --seconds 900            # the acceptance run (15 min)
    python3 bench/bench_live.py --speed 1 --seconds 60   # real time, short
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import random
import re
import signal
import sqlite3
import subprocess
import tempfile
import time
from bisect import bisect_left
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server import free_port, launch_demo

OWNER, LESSEE = "owner-lab", "lessee-lab"
GRACE_S = 300  # colossus-lease: reclaim grace 5 min for both tenants
GPUS_PER_NODE = 8  # colossus-1


# -- the load -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Planned:
    at_s: float  # wall seconds after the start of the load
    tenant: str
    body: bytes


def plan(seed: int, jobs: int, rate: float, seconds: float) -> list[Planned]:
    rng = random.Random(seed)
    specs: list[dict[str, Any]] = []
    for i in range(jobs):
        tenant = OWNER if rng.random() < 0.25 else LESSEE
        specs.append(
            {
                "name": f"exp-{i}",
                "gpus": rng.choice([1, 1, 2, 4, 8, 8, 8, 16, 16, 32, 64]),
                "duration_s": int(min(48 * 3600, max(60, rng.lognormvariate(math.log(5400), 1.0)))),
                "kind": "experiment",
                "_tenant": tenant,
            }
        )
    for k, i in enumerate(rng.sample(range(jobs), min(30, jobs))):
        specs[i] = {
            "name": f"train-{k}",
            "gpus": 1024 * rng.choice([1, 2, 4, 8]),
            "duration_s": rng.randrange(3 * 3600, 10 * 3600 + 1),
            "kind": "training",
            "checkpoint_interval_s": 1800,
            "_tenant": OWNER if k % 4 == 0 else LESSEE,
        }
    steady = int(jobs * 0.80)
    burst = int(jobs * 0.15)
    steady_end = steady / rate
    trickle = jobs - steady - burst
    tail = max(1.0, seconds * 0.9 - steady_end)
    out = []
    for i, s in enumerate(specs):
        if i < steady:
            at = i / rate
        elif i < steady + burst:
            at = steady_end
        else:
            at = steady_end + (i - steady - burst + 1) * tail / (trickle + 1)
        tenant = s.pop("_tenant")
        out.append(Planned(at, tenant, json.dumps(s, separators=(",", ":")).encode()))
    return out


# -- a minimal HTTP/1.1 client (the client's own cost must not hide the server's) ------------------
class Conn:
    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.token = token
        self.r: asyncio.StreamReader | None = None
        self.w: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        try:
            return await self._request(method, path, body)
        except (asyncio.IncompleteReadError, ConnectionError):
            # The server closes a keep-alive connection idle for 5 s: open a new one.
            self.close()
            self.w = None
            return await self._request(method, path, body)

    async def _request(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        if self.w is None:
            self.r, self.w = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.r is not None
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {self.token}\r\n"
        )
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.w.write(head.encode() + b"\r\n" + body)
        raw = await self.r.readuntil(b"\r\n\r\n")
        code = int(raw[9:12])
        length = 0
        for line in raw.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return code, await self.r.readexactly(length)

    def close(self) -> None:
        if self.w is not None:
            self.w.close()


@dataclass
class Record:
    lat: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    codes: dict[str, dict[int, int]] = field(default_factory=lambda: defaultdict(dict))
    job_ids: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    # (wall seconds since start, cycles, lag_s, readers_on)
    samples: list[tuple[float, float, float, bool]] = field(default_factory=list)
    step_times: set[int] = field(default_factory=set)  # engine times seen (each a step's)
    rss_kb: list[int] = field(default_factory=list)

    def note(self, what: str, t0: float, code: int) -> None:
        self.lat[what].append(time.perf_counter() - t0)
        c = self.codes[what]
        c[code] = c.get(code, 0) + 1


_ID = re.compile(rb'"id":"([^"]+)"')
_CURSOR = re.compile(rb'"next_cursor":"([0-9]+)"')


async def writer(
    port: int,
    tokens: dict[str, str],
    jobs: list[Planned],
    t0: float,
    rec: Record,
    on: asyncio.Event,
) -> None:
    """Submit each planned job at its time; up to 16 in flight (the burst)."""
    pools = {t: [Conn(port, tok) for _ in range(16)] for t, tok in tokens.items()}
    free = {t: list(p) for t, p in pools.items()}
    sem = asyncio.Semaphore(16)

    async def one(p: Planned) -> None:
        async with sem:
            conn = free[p.tenant].pop()
            try:
                s = time.perf_counter()
                readers = on.is_set()
                code, body = await conn.request("POST", "/v1/jobs", p.body)
                rec.note("POST /v1/jobs", s, code)
                rec.note(f"POST /v1/jobs, readers {'on' if readers else 'off'}", s, code)
                m = _ID.search(body)
                if m:
                    rec.job_ids[p.tenant].append(m.group(1).decode())
                    rec.job_ids["operator"].append(m.group(1).decode())
            finally:
                free[p.tenant].append(conn)

    tasks = []
    for p in jobs:
        delay = t0 + p.at_s - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(p)))
    await asyncio.gather(*tasks)
    for pool in pools.values():
        for c in pool:
            c.close()


async def reader(
    n: int,
    port: int,
    who: str,
    token: str,
    think_s: float,
    rec: Record,
    on: asyncio.Event,
    stop: asyncio.Event,
) -> None:
    conn = Conn(port, token)
    rng = random.Random(n)
    cursor: str | None = None
    try:
        while not stop.is_set():
            if not on.is_set():
                await asyncio.sleep(0.1)
                continue
            s = time.perf_counter()
            path = "/v1/jobs?limit=100" + (f"&cursor={cursor}" if cursor else "")
            code, body = await conn.request("GET", path)
            rec.note("GET /v1/jobs?limit=100", s, code)
            m = _CURSOR.search(body)
            cursor = m.group(1).decode() if m else None
            ids = rec.job_ids[who]
            if ids:
                s = time.perf_counter()
                code, _ = await conn.request("GET", f"/v1/jobs/{rng.choice(ids)}")
                rec.note("GET /v1/jobs/{id}", s, code)
            s = time.perf_counter()
            code, _ = await conn.request("GET", "/v1/cluster")
            rec.note("GET /v1/cluster", s, code)
            if think_s:
                await asyncio.sleep(think_s * (0.5 + rng.random()))
    finally:
        conn.close()


def _metric(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.M)
    return float(m.group(1)) if m else float("nan")


async def monitor(
    port: int, token: str, pid: int, t0: float, rec: Record, on: asyncio.Event, stop: asyncio.Event
) -> None:
    conn = Conn(port, token)
    try:
        while not stop.is_set():
            _code, body = await conn.request("GET", "/metrics")
            text = body.decode()
            engine_t = _metric(text, "cotenant_engine_time_seconds")
            if not math.isnan(engine_t):
                rec.step_times.add(int(engine_t))
            rec.samples.append(
                (
                    time.perf_counter() - t0,
                    _metric(text, "cotenant_scheduling_cycles_total"),
                    _metric(text, "cotenant_engine_lag_seconds"),
                    on.is_set(),
                )
            )
            rec.rss_kb.append(rss_kb(pid))
            await asyncio.sleep(0.5)
    finally:
        conn.close()


async def drive(args: argparse.Namespace, port: int, keys: dict[str, str], pid: int) -> Record:
    rec = Record()
    jobs = plan(args.seed, args.jobs, args.rate, args.seconds)
    on, stop = asyncio.Event(), asyncio.Event()
    t0 = time.perf_counter()
    who = [OWNER, LESSEE, "operator"]
    tasks = [
        asyncio.create_task(
            writer(port, {OWNER: keys[OWNER], LESSEE: keys[LESSEE]}, jobs, t0, rec, on)
        ),
        asyncio.create_task(monitor(port, keys["operator"], pid, t0, rec, on, stop)),
        *(
            asyncio.create_task(
                reader(n, port, who[n % 3], keys[who[n % 3]], args.think, rec, on, stop)
            )
            for n in range(args.readers)
        ),
    ]
    while time.perf_counter() - t0 < args.seconds:
        k = int((time.perf_counter() - t0) // args.window)
        if args.readers and k % 2 == 1:
            on.set()
        else:
            on.clear()
        await asyncio.sleep(0.2)
    stop.set()
    on.clear()
    await asyncio.gather(*tasks[1:])
    tasks[0].cancel()
    return rec


# -- the server -------------------------------------------------------------------------------
def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def start_server(
    workdir: Path, port: int, speed: float, read_concurrency: int | None = None
) -> tuple[subprocess.Popen[bytes], Any]:
    config = workdir / "serve.toml"
    config.write_text(
        "" if read_concurrency is None else f"read_concurrency = {read_concurrency}\n"
    )
    # --scenario named: the demo's own live workload stays off; this bench is the load
    extra = ["--scenario", "colossus-lease", "--speed", str(speed), "--config", str(config)]
    return launch_demo(workdir, port, extra)


# -- analysis of the audit log ------------------------------------------------------------------
def audit(db: Path) -> list[tuple[int, str, dict[str, Any]]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT time, kind, payload FROM audit_log ORDER BY seq").fetchall()
    return [(t, k, json.loads(p)) for t, k, p in rows]


STEP_KINDS = {"place", "reclaim", "preempt", "retag", "reject"}  # stamped with the step's time


def reclaims(
    entries: list[tuple[int, str, dict[str, Any]]], end_t: int, seen_steps: set[int]
) -> dict[str, Any]:
    """Each reclaim, and what became of it: preempted (how long after its deadline), ended
    or stopped otherwise before it, or still holding its GPUs at the end.

    A step handles every event due by its time, so a reclaim stopped after its deadline
    is late by no more than the engine's lag at that moment *unless* a step ran between
    the deadline and the stop: then the deadline was missed (the bug of issue 19: a
    late step dropped it). Steps seen are the times of audited decisions and the engine
    times scraped from /metrics."""
    # (Ends are stamped with their own time and cancels come between steps: not steps.)
    steps = sorted(seen_steps | {t for t, k, _ in entries if k in STEP_KINDS})
    open_: dict[str, int] = {}
    late: list[int] = []
    missed: list[tuple[str, int, int]] = []  # (job, deadline, stopped)
    ended_before = 0

    def passed_by_a_step(deadline: int, stopped: int) -> bool:
        i = bisect_left(steps, deadline)
        return i < len(steps) and steps[i] < stopped

    for t, kind, p in entries:
        job = p.get("job")
        if kind == "reclaim":
            open_[job] = int(p["deadline"])
        elif kind in ("preempt", "end", "cancel", "interrupt") and job in open_:
            deadline = open_.pop(job)
            if kind != "preempt" and t <= deadline:
                ended_before += 1
                continue
            late.append(t - deadline)
            if passed_by_a_step(deadline, t):
                missed.append((job, deadline, t))
    held_past = [end_t - d for d in open_.values() if d < end_t]
    return {
        "total": len(late) + ended_before + len(open_),
        "late_s": sorted(late),
        "missed": missed,
        "ended_before": ended_before,
        "still_reclaiming_past_deadline": sorted(held_past),
        "still_reclaiming": len(open_),
    }


def late_starts(
    entries: list[tuple[int, str, dict[str, Any]]], grace_s: int = GRACE_S
) -> list[dict[str, Any]]:
    """The jobs the engine's guarantee check can have counted, as the audit shows them: a
    job for which room was reclaimed that started more than the grace period after the
    first reclaim for it (it was owed by then at the latest). For each: when its room was
    first reclaimed, the deadline, when the last of its victims stopped and when it
    started, so that the cause reads off: a deadline step that ran late (victims stopped
    after the deadline), a start that did not follow the stops, or room reclaimed anew
    (a later deadline)."""
    first: dict[str, tuple[int, int]] = {}  # beneficiary -> (first reclaim, its deadline)
    victims: dict[str, list[str]] = defaultdict(list)
    stopped: dict[str, int] = {}
    last_deadline: dict[str, int] = {}
    out: list[dict[str, Any]] = []
    for t, kind, p in entries:
        job = p.get("job")
        if kind == "reclaim":
            b = p["beneficiary"]
            first.setdefault(b, (t, int(p["deadline"])))
            last_deadline[b] = int(p["deadline"])
            victims[b].append(job)
        elif kind in ("preempt", "end", "cancel", "interrupt"):
            stopped[job] = t
        elif kind == "place" and job in first:
            r0, d0 = first.pop(job)
            late = t - r0 - grace_s
            stops = [stopped[v] for v in victims.pop(job, []) if v in stopped]
            if late > 0:
                out.append(
                    {
                        "job": job,
                        "tenant": p.get("tenant"),
                        "gpus": p.get("gpus"),
                        "reclaimed": r0,
                        "deadline": d0,
                        "last_deadline": last_deadline.get(job, d0),
                        "last_stop": max(stops, default=None),
                        "started": t,
                        "late_s": late,
                    }
                )
    return out


def stranded(
    entries: list[tuple[int, str, dict[str, Any]]],
    n_nodes: int,
    entitled: dict[str, int],
    step_s: int,
    slack_s: int,
) -> dict[str, Any]:
    """GPUs free while demand that would fit on them has waited beyond the grace period
    (plus ``slack_s``, one cycle's worth of lag) and is still waiting ``slack_s`` later,
    sampled every ``step_s``. A job counts
    if its tenant may take the GPUs (within its entitlement, or borrowing what the other
    tenant leaves idle of its own) and they are free on nodes it may use: node isolation
    between the two rival tenants is honoured (a node holding one tenant's work is not
    free for the other); the topology beyond a node is not (an upper bound).

    GPUs held free for a promise are not stranded: while a job waits for the room being
    reclaimed for it (from its first reclaim to its start), the part of that room that
    is already free is kept for it (``Workspace.promise``), so that no other job takes
    it and leaves the promised job waiting past its grace period. The room is taken
    to be where the job then starts."""
    free = [GPUS_PER_NODE] * n_nodes
    holder: list[dict[str, int]] = [dict() for _ in range(n_nodes)]
    placed: dict[str, list[tuple[int, int]]] = {}
    pending: dict[str, tuple[int, str, int]] = {}  # job -> (waiting since, tenant, gpus)
    gpus: dict[str, int] = {}
    out: list[int] = []
    frees: list[int] = []
    worst: dict[str, Any] = {}
    i = 0
    if not entries:
        return {}
    t = entries[0][0]
    end = entries[-1][0]

    places: dict[str, list[int]] = defaultdict(list)
    place_nodes: dict[str, list[list[int]]] = defaultdict(list)
    for et, kind, p in entries:
        if kind == "place":
            places[p["job"]].append(et)
            place_nodes[p["job"]].append(list(p["nodes"]))
    promised: dict[str, int] = {}  # job waiting for room reclaimed for it -> since
    promise_kept: list[int] = []  # free GPUs held for promises, per sample
    reserve_kept: list[int] = []  # and for reservations

    def usable(tenant: str, n: int, avail: list[int]) -> bool:
        return avail[n] > 0 and all(k == tenant for k in holder[n])

    def reserve(avail: list[int], held: dict[str, int]) -> int:
        """The contract policy's reservation (EASY within a tenant): a tenant's first
        waiting job beyond its headroom that cannot start now keeps free GPUs for
        itself (its smaller jobs wait unless they end before it could start). Taken
        off ``avail``; returns how many."""
        kept = 0
        for tenant in (OWNER, LESSEE):
            room = entitled.get(tenant, 0) - held[tenant]
            queue = sorted((s, j, g) for j, (s, t, g) in pending.items() if t == tenant)
            head = next((g for _, _, g in queue if room < g <= entitled.get(tenant, 0)), None)
            if head is None:
                continue
            nodes = sorted(
                (n for n in range(n_nodes) if usable(tenant, n, avail)), key=lambda n: -avail[n]
            )
            if sum(avail[n] for n in nodes) >= head:
                continue  # it could start now: nothing is held for it
            for n in nodes:
                kept += avail[n]
                avail[n] = 0
        return kept

    def next_place(job: str, since: int) -> float:
        times = places.get(job, [])
        k = bisect_left(times, since)
        return times[k] if k < len(times) else math.inf

    def promised_room(job: str, since: int) -> list[int]:
        k = bisect_left(places.get(job, []), since)
        nodes = place_nodes.get(job, [])
        return nodes[k] if k < len(nodes) else []

    def release(job: str, tenant: str) -> None:
        for n, g in placed.pop(job, []):
            free[n] += g
            holder[n][tenant] -= g
            if holder[n][tenant] <= 0:
                del holder[n][tenant]

    while t <= end:
        while i < len(entries) and entries[i][0] <= t:
            et, kind, p = entries[i]
            i += 1
            job, tenant = p.get("job"), p.get("tenant")
            if kind == "job-submitted":
                gpus[job] = int(p["gpus"])
                pending[job] = (et, tenant, int(p["gpus"]))
            elif kind == "reclaim" and p.get("beneficiary") in pending:
                promised.setdefault(p["beneficiary"], et)
            elif kind == "place":
                pending.pop(job, None)
                promised.pop(job, None)
                g, nodes = int(p["gpus"]), list(p["nodes"])
                parts = []
                for n in nodes:
                    take = min(g, free[n])
                    g -= take
                    parts.append((n, take))
                    free[n] -= take
                    holder[n][tenant] = holder[n].get(tenant, 0) + take
                placed[job] = parts
            elif kind in ("end", "cancel", "reject"):
                release(job, tenant)
                pending.pop(job, None)
                promised.pop(job, None)
            elif kind in ("preempt", "interrupt"):
                release(job, tenant)
                pending[job] = (et, tenant, gpus.get(job, 0))
        # free GPUs per node, by who may use them, less those held for promises
        avail = list(free)
        kept = 0
        for job in promised:
            need = gpus.get(job, 0)
            for n in promised_room(job, t):
                take = min(avail[n], need)
                avail[n] -= take
                need -= take
                kept += take
        promise_kept.append(kept)
        held = defaultdict(int)
        for n in range(n_nodes):
            for k, v in holder[n].items():
                held[k] += v
        reserve_kept.append(reserve(avail, held))
        hist: dict[str, list[int]] = {}
        for tenant in (OWNER, LESSEE):
            h = [0] * (GPUS_PER_NODE + 1)
            for n in range(n_nodes):
                if avail[n] and all(k == tenant for k in holder[n]):
                    h[avail[n]] += 1
            hist[tenant] = h
        total_free = sum(free)
        # Waiting beyond the grace, and still waiting one cycle (slack_s) later: a job the
        # engine places within slack_s of GPUs coming free is being served, not stranded.
        waiting = sorted(
            (since, job, tenant, g)
            for job, (since, tenant, g) in pending.items()
            if t - since > GRACE_S + slack_s and next_place(job, since) > t + slack_s
        )
        idle = {k: max(0, e - held[k]) for k, e in entitled.items()}
        may = {
            k: entitled.get(k, 0) - held[k] + sum(v for o, v in idle.items() if o != k)
            for k in (OWNER, LESSEE)
        }
        s = 0
        fits: list[tuple[str, str, int, int]] = []
        for since, job, tenant, g in waiting:
            if g > may[tenant]:
                continue  # beyond what its contract lets it take now
            h = hist[tenant]
            if g <= GPUS_PER_NODE:
                f = next((f for f in range(g, GPUS_PER_NODE + 1) if h[f]), None)
                if f is None:
                    continue
                h[f] -= 1
                h[f - g] += 1
            else:
                if sum(f * c for f, c in enumerate(h)) < g:
                    continue
                need = g
                for f in range(GPUS_PER_NODE, 0, -1):
                    while h[f] and need > 0:
                        take = min(f, need)
                        h[f] -= 1
                        h[f - take] += 1
                        need -= take
            s += g
            may[tenant] -= g
            fits.append((job, tenant, g, t - since))
        if s > max(out, default=0):
            worst = {"t": t, "jobs": fits[:5], "held": dict(held), "free": total_free}
        out.append(s)
        frees.append(total_free)
        t += step_s
    return {
        "samples": len(out),
        "mean": sum(out) / len(out),
        "max": max(out),
        "share_nonzero": sum(1 for x in out if x) / len(out),
        "free_mean": sum(frees) / len(frees),
        "promised_mean": sum(promise_kept) / len(promise_kept),
        "promised_max": max(promise_kept),
        "reserved_mean": sum(reserve_kept) / len(reserve_kept),
        "reserved_max": max(reserve_kept),
        "worst": worst,
    }


# -- report --------------------------------------------------------------------------------------
def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * q))]


def cycle_rates(
    samples: list[tuple[float, float, float, bool]], window: float, until: float = math.inf
) -> dict[bool, float]:
    """Cycles per second with readers on and off, skipping the first 2 s of each window."""
    cyc: dict[bool, float] = {True: 0.0, False: 0.0}
    secs: dict[bool, float] = {True: 0.0, False: 0.0}
    for (t1, c1, _, on1), (t2, c2, _, on2) in itertools.pairwise(samples):
        if on1 != on2 or (t1 % window) < 2 or t2 > until or math.isnan(c1) or math.isnan(c2):
            continue
        cyc[on1] += c2 - c1
        secs[on1] += t2 - t1
    return {k: cyc[k] / secs[k] if secs[k] else float("nan") for k in cyc}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=180.0, help="wall seconds of load")
    ap.add_argument("--speed", type=float, default=60.0)
    ap.add_argument("--jobs", type=int, default=5000)
    ap.add_argument("--rate", type=float, default=40.0, help="steady submissions per second")
    ap.add_argument("--readers", type=int, default=32)
    ap.add_argument("--window", type=float, default=15.0, help="readers on/off period (s)")
    ap.add_argument(
        "--think",
        type=float,
        default=0.0,
        help="mean pause of a reader between its rounds (s); 0: a closed loop, the worst case",
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--read-concurrency", type=int, default=None, help="the server's read gate (default 2)"
    )
    ap.add_argument("--keep", type=Path, default=None, help="keep the database here")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="cotenant-live-") as d:
        workdir = args.keep or Path(d)
        workdir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        proc, keys = start_server(workdir, port, args.speed, args.read_concurrency)
        try:
            rec = asyncio.run(drive(args, port, keys, proc.pid))
            import httpx

            with httpx.Client(
                base_url=f"http://127.0.0.1:{port}",
                headers={"Authorization": f"Bearer {keys['operator']}"},
                timeout=60,
            ) as c:
                final = c.get("/metrics").text
                cluster = c.get("/v1/cluster").json()
            rss_final = rss_kb(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        db = workdir / "live.db"
        size = sum(p.stat().st_size for p in workdir.glob("live.db*"))
        entries = audit(db)
        report(args, rec, final, cluster, entries, rss_final, size)


def report(
    args: argparse.Namespace,
    rec: Record,
    final: str,
    cluster: dict[str, Any],
    entries: list[tuple[int, str, dict[str, Any]]],
    rss_final: int,
    size: int,
) -> None:
    lags = [lag for _, _, lag, _ in rec.samples if not math.isnan(lag)]
    lag_p50, lag_p99 = pct(lags, 0.5), pct(lags, 0.99)
    rates = cycle_rates(rec.samples, args.window)
    # One cycle: the engine's measured cycle period (or its lag p99, if longer), in
    # simulated seconds.
    period = 1 / rates[False] if rates[False] and not math.isnan(rates[False]) else 1.0
    slack = max(1, math.ceil(max(lag_p99, period) * args.speed))
    rc = reclaims(entries, int(cluster["time_s"]), rec.step_times)
    entitled = {t["tenant"]: int(t["entitled_gpus"]) for t in cluster["tenants"]}
    st = stranded(entries, cluster["nodes"], entitled, max(1, int(args.speed)), slack)
    viol = sum(
        float(v)
        for v in re.findall(r"^cotenant_guarantee_violations_total\{[^}]*\} (\S+)$", final, re.M)
    )
    viol_s = sum(
        float(v)
        for v in re.findall(
            r"^cotenant_guarantee_violation_seconds_total\{[^}]*\} (\S+)$", final, re.M
        )
    )
    submitted = sum(1 for _, k, _ in entries if k == "job-submitted")
    print(
        f"bench_live: {args.seconds:g} s wall at speed {args.speed:g} (seed {args.seed}), "
        f"{submitted:,} jobs submitted of {args.jobs:,} planned, readers {args.readers} "
        f"(on/off every {args.window:g} s, think {args.think:g} s), read gate "
        f"{args.read_concurrency or 'default'}, {os.cpu_count()} CPUs, SQLite"
    )
    print(
        f"engine time {cluster['time_s']}, free GPUs {cluster['free_gpus']:,}, "
        f"queue {cluster['queue_depth']:,}, audit entries {len(entries):,}"
    )
    print(
        f"GPUs stranded (free while fitting demand waited > grace + {slack} s): mean "
        f"{st.get('mean', 0):,.0f}, max {st.get('max', 0):,}, in "
        f"{st.get('share_nonzero', 0):.0%} of {st.get('samples', 0)} samples "
        f"(free GPUs mean {st.get('free_mean', 0):,.0f}; held free for promised jobs mean "
        f"{st.get('promised_mean', 0):,.0f}, max {st.get('promised_max', 0):,}, and for "
        f"reservations mean {st.get('reserved_mean', 0):,.0f}, max "
        f"{st.get('reserved_max', 0):,}: not stranded)"
        f"  target: none beyond one cycle"
    )
    if st.get("worst"):
        w = st["worst"]
        print(
            f"  worst sample at {w['t']}: {w['free']:,} free, held {w['held']}, waiting that "
            f"fit (job, tenant, GPUs, waited s): {w['jobs']}"
        )
    print(f"guarantee violations: {viol:.0f} jobs, {viol_s:.0f} s  target 0")
    lates = late_starts(entries)
    print(
        f"  started later than the grace after their first reclaim (audit): {len(lates)} jobs, "
        f"{sum(x['late_s'] for x in lates)} s"
    )
    for x in lates[:12]:
        print(
            f"    {x['job']} {x['tenant']} {x['gpus']} GPUs: reclaimed {x['reclaimed']}, "
            f"deadline {x['deadline']} (last {x['last_deadline']}), victims stopped by "
            f"{x['last_stop']}, started {x['started']}: late {x['late_s']} s"
        )
    print(
        f"reclaims: {rc['total']:,}; preempted or stopped {len(rc['late_s']):,} (late p50 "
        f"{pct(rc['late_s'], 0.5)} s, max {max(rc['late_s'], default=0)} s), ended before "
        f"{rc['ended_before']:,}, still reclaiming {rc['still_reclaiming']:,} "
        f"({len(rc['still_reclaiming_past_deadline'])} past deadline)"
    )
    late = rc["late_s"]
    print(
        f"  late by (simulated s; each stop is in the first step after its deadline unless "
        f"missed): p50 {pct(late, 0.5)}, p99 {pct(late, 0.99)}, max {max(late, default=0)} "
        f"(= {max(late, default=0) / args.speed * 1000:.0f} ms of wall time)"
    )
    print(
        f"reclaims past deadline beyond the lag (a step ran after the deadline and did not "
        f"stop it): {len(rc['missed'])} stopped late, "
        f"{len(rc['still_reclaiming_past_deadline'])} still held  target 0"
    )
    for job, deadline, stopped in rc["missed"][:5]:
        print(f"  missed: {job} deadline {deadline}, stopped {stopped}")
    print(f"engine lag (scraped): p50 {lag_p50:.3f} s, p99 {lag_p99:.3f} s  target p99 < 1 s")
    step = _hist_quantiles(final, "cotenant_engine_step_lag_seconds")
    dur = _hist_quantiles(final, "cotenant_engine_step_duration_seconds")
    print(f"step lag at start (histogram): p50 <= {step[0]} s, p99 <= {step[1]} s")
    print(
        f"step duration (histogram): p50 <= {dur[0]} s, p99 <= {dur[1]} s; steps over "
        f"0.25 s: {_hist_over(final, 'cotenant_engine_step_duration_seconds', 0.25):.0f}"
    )
    gcp = _hist_quantiles(final, "cotenant_gc_pause_seconds")
    print(
        f"garbage collection pauses (histogram): p50 <= {gcp[0]} s, p99 <= {gcp[1]} s; over "
        f"0.1 s: {_hist_over(final, 'cotenant_gc_pause_seconds', 0.1):.0f}, over 0.5 s: "
        f"{_hist_over(final, 'cotenant_gc_pause_seconds', 0.5):.0f}; longest by generation "
        + ", ".join(f"{g}: {_gc_max(final, g):.3f} s" for g in range(3))
    )
    steady_end = int(args.jobs * 0.8) / args.rate
    for label, r in (
        (
            f"steady submissions (first {steady_end:.0f} s)",
            cycle_rates(rec.samples, args.window, steady_end),
        ),
        ("whole run", rates),
    ):
        ratio = r[True] / r[False] if r[False] else float("nan")
        print(
            f"cycles/s, {label}: without readers {r[False]:.2f}, with {args.readers} readers "
            f"{r[True]:.2f}  (ratio {ratio:.2f}; target >= 0.80)"
        )
    targets = {
        "POST /v1/jobs": 100,
        "POST /v1/jobs, readers off": 100,
        "POST /v1/jobs, readers on": 100,
        "GET /v1/jobs/{id}": 100,
        "GET /v1/cluster": 100,
        "GET /v1/jobs?limit=100": 250,
    }
    for what, target in targets.items():
        lat = rec.lat.get(what, [])
        codes = dict(sorted(rec.codes.get(what, {}).items()))
        print(
            f"  {what:<28} n {len(lat):>7,}  p50 {pct(lat, 0.5) * 1000:7.1f} ms  p99 "
            f"{pct(lat, 0.99) * 1000:7.1f} ms  (target p99 < {target} ms)  {codes}"
        )
    print(
        f"RSS: max {max(rec.rss_kb, default=0) / 1024:,.0f} MiB, final {rss_final / 1024:,.0f} "
        f"MiB; store {size / 2**20:,.1f} MiB"
    )


def _gc_max(text: str, generation: int) -> float:
    name = 'cotenant_gc_pause_max_seconds{generation="' + str(generation) + '"}'
    return _metric(text, name)


def _hist_over(text: str, name: str, bound: float) -> float:
    """How many observations of a histogram were above ``bound`` (one of its bounds)."""
    rows = re.findall(rf'^{name}_bucket\{{le="([^"]+)"\}} (\S+)$', text, re.M)
    if not rows:
        return float("nan")
    at = next((float(c) for le, c in rows if le != "+Inf" and float(le) == bound), float("nan"))
    return float(rows[-1][1]) - at


def _hist_quantiles(text: str, name: str) -> tuple[str, str]:
    rows = re.findall(rf'^{name}_bucket\{{le="([^"]+)"\}} (\S+)$', text, re.M)
    if not rows:
        return "?", "?"
    total = float(rows[-1][1])
    out = []
    for q in (0.5, 0.99):
        out.append(next((le for le, c in rows if float(c) >= q * total), "+Inf"))
    return out[0], out[1]


if __name__ == "__main__":
    main()
