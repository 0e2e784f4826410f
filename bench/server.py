"""A real ``cotenant serve`` for the benchmarks that load one: a free loopback port, the
process started with its output in ``workdir/server.log``, and a wait until /healthz."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(
    args: Sequence[str], port: int, workdir: Path, timeout_s: float = 120
) -> subprocess.Popen[bytes]:
    """Start ``cotenant serve ARGS`` (ARGS name the port) and wait until it answers."""
    argv = [sys.executable, "-m", "cotenant.cli.main", "serve", *args]
    log_path = workdir / "server.log"
    log = log_path.open("ab")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"server did not start:\n{log_path.read_text()[-4000:]}")
        time.sleep(0.1)


def launch_demo(
    workdir: Path, port: int, extra: Sequence[str] = ()
) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    """``serve --demo`` on ``workdir/live.db`` (kept across launches) and the keys it
    issued, by tenant (or role for the operator and auditor keys)."""
    keys = workdir / "keys.json"
    args = [
        "--demo",
        *extra,
        "--db",
        f"sqlite:///{workdir / 'live.db'}",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--keys-out",
        str(keys),
    ]
    proc = launch(args, port, workdir)
    return proc, {k["tenant"] or k["role"]: k["token"] for k in json.loads(keys.read_text())}
