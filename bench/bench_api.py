"""Job submissions per second and latency through the real server, on SQLite.

Starts ``cotenant serve`` (a fresh SQLite file, the colossus-lease demo by default) and
drives ``POST /v1/jobs`` from 32 concurrent clients, each on its own keep-alive
connection, each submission with an Idempotency-Key. Every 2xx means the job was
committed to the database (WAL, synchronous=NORMAL) with its audit entry before the
answer. The load generator is a minimal asyncio HTTP/1.1 client, so that the client's
own cost does not hide the server's on a 2-core machine.

    python3 bench/bench_api.py [--clients 32] [--seconds 10] [--scenario small-lease]

Targets (docs/design/0006-service.md): >= 1,000 submissions/s and p99 < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from server import free_port, launch

TARGET_RATE = 1000.0
TARGET_P99_MS = 50.0


def start_server(
    workdir: Path, port: int, scenario: str | None
) -> tuple[subprocess.Popen[bytes], str]:
    keys = workdir / "keys.json"
    args = [
        "--demo",
        "--db",
        f"sqlite:///{workdir / 'bench.db'}",
        "--port",
        str(port),
        "--keys-out",
        str(keys),
        "--no-workload",  # an idle cluster, in real time, as before the live demo existed
        "--speed",
        "1",
    ]
    if scenario:
        args += ["--scenario", scenario]
    proc = launch(args, port, workdir)
    tenant_key = next(k for k in json.loads(keys.read_text()) if k["tenant"])
    return proc, tenant_key["token"]


async def client(
    n: int,
    port: int,
    token: str,
    t_start: float,
    t_end: float,
    lat: list[float],
    status: dict[int, int],
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = 0
    try:
        while True:
            now = time.perf_counter()
            if now >= t_end:
                return
            body = json.dumps(
                {"gpus": 1 + (i % 8), "duration_s": 3600 * (1 + i % 5), "name": f"bench-{n}-{i}"}
            ).encode()
            req = (
                f"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                f"Idempotency-Key: bench-{n}-{i}\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body
            t0 = time.perf_counter()
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            code = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            t1 = time.perf_counter()
            if t0 >= t_start:
                lat.append(t1 - t0)
                status[code] = status.get(code, 0) + 1
            i += 1
    finally:
        writer.close()


async def drive(
    port: int, token: str, clients: int, warmup: float, seconds: float
) -> tuple[list[float], dict[int, int], float]:
    lat: list[float] = []
    status: dict[int, int] = {}
    t_start = time.perf_counter() + warmup
    t_end = t_start + seconds
    await asyncio.gather(
        *(client(n, port, token, t_start, t_end, lat, status) for n in range(clients))
    )
    return lat, status, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--scenario", default=None, help="seed scenario (default: colossus-lease)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="cotenant-bench-") as d:
        workdir = Path(d)
        port = free_port()
        proc, token = start_server(workdir, port, args.scenario)
        try:
            lat, status, seconds = asyncio.run(
                drive(port, token, args.clients, args.warmup, args.seconds)
            )
            with httpx.Client(
                base_url=f"http://127.0.0.1:{port}",
                timeout=30,
                headers={"Authorization": f"Bearer {token}"},
            ) as c:
                stored = len(c.get("/v1/jobs", params={"limit": 1}).json()["items"])
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    ok = sum(n for code, n in status.items() if 200 <= code < 300)
    lat.sort()
    rate = ok / seconds
    p50 = lat[len(lat) // 2] * 1000 if lat else float("nan")
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else float("nan")
    print(
        f"clients {args.clients}, {seconds:g} s measured after {args.warmup:g} s warm-up, "
        f"SQLite (WAL), {os.cpu_count()} CPUs"
    )
    print(f"statuses: {dict(sorted(status.items()))}; stored jobs visible: {bool(stored)}")
    print(f"submissions/s: {rate:,.0f}  (target >= {TARGET_RATE:,.0f}; {rate / TARGET_RATE:.2f}x)")
    print(
        f"latency p50 {p50:.1f} ms, p99 {p99:.1f} ms  (target p99 < {TARGET_P99_MS:g} ms; "
        f"{p99 / TARGET_P99_MS:.2f}x)"
    )


if __name__ == "__main__":
    main()
