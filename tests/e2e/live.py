"""The real server as a subprocess: ``python -m cotenant.cli.main serve`` on a free port.

Why: the end-to-end tests must drive what an operator runs, including the process
being killed. The server dies with the test process (PR_SET_PDEATHSIG), so a killed
pytest leaves no server behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from harness import HarnessError, free_ports, tail


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


class LiveServer:
    """One server process at a time on one database; ``restart`` keeps port and database."""

    def __init__(
        self,
        db_url: str,
        workdir: Path,
        *,
        scenario: str | None = "small-lease",
        demo: bool = True,
        speed: float = 60.0,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.db_url = db_url
        self.workdir = workdir
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        self.scenario = scenario
        self.demo = demo
        self.speed = speed
        self.extra = extra
        self.keys: dict[str, str] = {}  # by tenant name, or by role for operator and auditor
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.log = workdir / "server.log"
        self.keys_file = workdir / "keys.json"

    def argv(self) -> list[str]:
        argv = [
            sys.executable,
            "-m",
            "cotenant.cli.main",
            "serve",
            "--db",
            self.db_url,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--speed",
            str(self.speed),
            "--keys-out",
            str(self.keys_file),
            *self.extra,
        ]
        if self.demo:
            argv.append("--demo")
        if self.scenario:
            argv += ["--scenario", self.scenario]
        return argv

    def start(self, timeout: float = 60.0) -> LiveServer:
        assert self.proc is None or self.proc.poll() is not None
        self.starts += 1
        with self.log.open("ab") as log:
            log.write(f"\n=== start {self.starts} ===\n".encode())
            self.proc = subprocess.Popen(
                self.argv(),
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise HarnessError(f"server did not start:\n{tail(self.log, 40)}")
            time.sleep(0.05)
        if not self.keys and self.keys_file.exists():
            for k in json.loads(self.keys_file.read_text()):
                self.keys[k["tenant"] or k["role"]] = k["token"]
        return self

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200
        except httpx.TransportError:
            return False

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 30.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def restart(self, sig: int = signal.SIGTERM) -> LiveServer:
        self.kill(sig)
        return self.start()

    def client(self, who: str, **kw: Any) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.keys[who]}"},
            timeout=kw.pop("timeout", 10.0),
            **kw,
        )

    def cli(self, who: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``cotenant ARGS`` as a client with ``who``'s key."""
        env = {
            **os.environ,
            "COTENANT_URL": self.url,
            "COTENANT_API_KEY": self.keys[who],
            "COTENANT_CLIENT_CONFIG": str(self.workdir / "no-client.toml"),
        }
        r = subprocess.run(
            [sys.executable, "-m", "cotenant.cli.main", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and r.returncode != 0:
            raise AssertionError(
                f"cotenant {' '.join(args)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
            )
        return r

    def cli_in_process(self, who: str, *args: str) -> tuple[int, str, str]:
        """The same CLI client, run in this process (saves a second of start-up per call)."""
        from typer.testing import CliRunner

        from cotenant.cli.main import app

        env = {
            "COTENANT_URL": self.url,
            "COTENANT_API_KEY": self.keys[who],
            "COTENANT_CLIENT_CONFIG": str(self.workdir / "no-client.toml"),
        }
        r = CliRunner().invoke(app, list(args), env=env)
        return r.exit_code, r.stdout, r.stderr

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def kill_local_runs(pid_files: Iterable[Path]) -> None:
    """Kill the process groups of the local backend's runs left behind (their wrappers'
    ``attempt-N.pid`` files): a killed server's jobs would outlive the test."""
    for pid_file in pid_files:
        with contextlib.suppress(ValueError, OSError):
            pid = int(pid_file.read_text().split()[0])
            if b"local_wrapper" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.killpg(pid, signal.SIGKILL)


def all_jobs(c: httpx.Client) -> list[dict[str, Any]]:
    """Every job the client's key may see, page by page."""
    jobs: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 1000}
    while True:
        page = c.get("/v1/jobs", params=params).json()
        jobs += page["items"]
        if page["next_cursor"] is None:
            return jobs
        params["cursor"] = page["next_cursor"]
