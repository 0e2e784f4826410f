"""Harnesses that start real services on this host for integration tests.

Each harness runs its daemons on 127.0.0.1 only, records every process it
starts in a PID file inside its own work directory, and stops exactly those
processes (never by name), so several test runs in a row leave nothing behind.
The helpers here (free ports, log tails, polling, and a supervisor that runs a
daemon and reaps the orphans it leaves) are shared by the harness modules.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

__all__ = [
    "HarnessError",
    "SupervisedProcess",
    "find_binary",
    "free_ports",
    "log_tails",
    "pid_state",
    "poll",
    "tail",
    "wait_until",
]

# Daemons live in sbin, which a non-login shell's PATH may lack.
_EXTRA_PATH = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")


class HarnessError(RuntimeError):
    """A real service did not start or stop as expected; the message carries its logs."""


def find_binary(name: str) -> str | None:
    """Locate `name` on PATH or in the sbin directories where Debian puts daemons."""
    search = os.pathsep.join([os.environ.get("PATH", ""), *_EXTRA_PATH])
    return shutil.which(name, path=search)


def free_ports(count: int) -> list[int]:
    """Return `count` distinct TCP ports on 127.0.0.1 that were free a moment ago.

    All sockets are held open until every port is chosen, so the ports differ;
    the kernel does not hand out a just-released ephemeral port again at once.
    """
    ports: list[int] = []
    with ExitStack() as stack:
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
    return ports


def tail(path: Path, lines: int = 20) -> str:
    """The last `lines` lines of a log file, or a note that it is missing."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<{path}: {exc.strerror}>"
    return "\n".join(text.splitlines()[-lines:])


def log_tails(paths: list[Path], lines: int = 20) -> str:
    """Format the tails of several logs for an error message a human can act on."""
    return "\n".join(f"--- {p} (last {lines} lines) ---\n{tail(p, lines)}" for p in paths)


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    interval: float = 0.1,
) -> bool:
    """Poll `predicate` until it is true or `timeout` seconds pass; report which."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def poll(fn: Callable[[], T], timeout: float = 30.0, interval: float = 0.1) -> T:
    """Call ``fn`` until it returns something true or ``timeout`` seconds pass; return
    what it returned last (a log's text, a job's state), for the test to assert on."""
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(interval)


# The daemons run under this small supervisor, written to the work directory.
# Why: PID 1 on this machine kind reaps orphans only now and then (tens of
# seconds later), and slurmd double-forks slurmstepd, so without a subreaper
# every finished job leaves a `[slurmstepd] <defunct>` behind for a while and a
# check for leftovers right after stop() fails. The supervisor marks itself a child
# subreaper, runs the daemon, writes the daemon's PID to our PID file, reaps
# every orphan below it, and exits once the daemon and all its descendants are
# gone. If the test process dies without stopping the harness (even by
# SIGKILL), PR_SET_PDEATHSIG tells the supervisor, which stops the daemon and
# kills whatever is left below it, so no cluster outlives its test run.
_SUPERVISOR = r"""
import ctypes, os, signal, sys

libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
libc.prctl(1, signal.SIGUSR1, 0, 0, 0)  # PR_SET_PDEATHSIG
harness, pid_file, argv = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
main = os.fork()
if main == 0:
    os.execv(argv[0], argv)
main_alive = True
orphaned = False


def send(pid, signum):
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def forward(signum, frame):
    if main_alive:
        send(main, signum)


def harness_died(signum, frame):
    global orphaned
    orphaned = True
    forward(signal.SIGTERM, None)
    signal.alarm(10)  # then SIGKILL (below) if the daemon lingers


def kill_children():
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == os.getpid():
                send(int(entry), signal.SIGKILL)


for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(s, forward)
signal.signal(signal.SIGUSR1, harness_died)
signal.signal(signal.SIGALRM, lambda signum, frame: forward(signal.SIGKILL, None))
if os.getppid() != harness:
    harness_died(signal.SIGUSR1, None)
tmp = pid_file + ".tmp"
with open(tmp, "w") as f:
    f.write(f"{main}\n")
os.replace(tmp, pid_file)
code = 0
while True:
    try:
        pid, status = os.wait()
    except ChildProcessError:
        break
    if pid == main:
        main_alive = False
        code = os.waitstatus_to_exitcode(status)
    if orphaned and not main_alive:
        kill_children()
sys.exit(code if code >= 0 else 128 - code)
"""


def pid_state(pid: int) -> tuple[str, int] | None:
    """(state letter, parent PID) of a live process, None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


@dataclass
class SupervisedProcess:
    """One daemon we started: its command, PID file, log and supervisor.

    `pid` is the daemon's own PID (also in `pid_file`); `supervisor` is our
    direct child that runs it (see _SUPERVISOR).
    """

    name: str
    argv: list[str]
    pid_file: Path
    log_file: Path
    env: dict[str, str]
    pid: int | None = None
    supervisor: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        self.pid_file.unlink(missing_ok=True)
        script = self.pid_file.parent / "supervise.py"
        script.write_text(_SUPERVISOR)
        with self.log_file.open("ab") as log:
            self.supervisor = subprocess.Popen(
                [sys.executable, str(script), str(os.getpid()), str(self.pid_file), *self.argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,  # a Ctrl-C in pytest must not hit the daemons
            )
        if not wait_until(lambda: self.pid_file.exists() or not self._supervised(), 10.0, 0.01):
            raise HarnessError(f"{self.name}: supervisor wrote no PID file")
        self.pid = self._read_pid()

    def _supervised(self) -> bool:
        return self.supervisor is not None and self.supervisor.poll() is None

    def _read_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def alive(self) -> bool:
        """The daemon itself runs (its supervisor may outlive it while reaping)."""
        if self.pid is None or self.supervisor is None:
            return False
        state = pid_state(self.pid)
        return state is not None and state[0] != "Z" and state[1] == self.supervisor.pid

    def exit_code(self) -> int | None:
        return None if self.supervisor is None else self.supervisor.poll()

    def send(self, sig: int) -> None:
        """Signal the PID from our PID file, if it is still the daemon we started."""
        pid = self._read_pid() or self.pid
        if pid is not None and pid == self.pid and self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """Stop the daemon; escalate to SIGKILL if it ignores `sig`."""
        self.send(sig)
        if not wait_until(lambda: not self.alive(), timeout, 0.05):
            self.send(signal.SIGKILL)
            wait_until(lambda: not self.alive(), 5.0, 0.05)

    def reap(self, timeout: float = 10.0) -> None:
        """Wait for the supervisor (it leaves once every orphan below it is gone)."""
        sup, self.supervisor = self.supervisor, None
        if sup is not None:
            try:
                sup.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(sup.pid, signal.SIGKILL)
                sup.kill()
                sup.wait(5)
        self.pid_file.unlink(missing_ok=True)
