"""Run one job's command and leave its exit status in a file: ``python -m
cotenant.backends.local_wrapper STEM -- COMMAND...``.

The local backend starts every job under this wrapper, in a new session (one process
group per job). The wrapper writes ``STEM.pid`` at once, runs the command in the same
group, and writes ``STEM.exit`` (``"<status> <unix time>"``, atomically) when it ends, so
the status survives the death of the server that started it. SIGTERM to the group is
the job's cue to checkpoint: the command gets it; the wrapper only notes it and keeps
waiting. The status is the command's exit code, or 128 + the signal that killed it.

Kept free of cotenant imports so it starts fast.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType


def _noted(signum: int, frame: FrameType | None) -> None:
    """A handler, not SIG_IGN: the command must not inherit an ignored SIGTERM."""


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def proc_start_ticks(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot (None where /proc is absent)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print(
            "usage: python -m cotenant.backends.local_wrapper STEM -- COMMAND...", file=sys.stderr
        )
        return 2
    stem, command = argv[0], argv[2:]
    signal.signal(signal.SIGTERM, _noted)
    signal.signal(signal.SIGINT, _noted)
    _write(Path(stem + ".pid"), f"{os.getpid()} {proc_start_ticks(os.getpid()) or 0}\n")
    try:
        child = subprocess.Popen(command)
    except OSError as e:
        print(f"cotenant: cannot run {command[0]!r}: {e}", file=sys.stderr, flush=True)
        status = 127
    else:
        code = child.wait()  # retried after a noted signal (PEP 475)
        status = 128 - code if code < 0 else code
    _write(Path(stem + ".exit"), f"{status} {time.time():.3f}\n")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
