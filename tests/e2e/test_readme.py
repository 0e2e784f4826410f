"""README.md cannot drift: every command block runs, in order, in a clean copy of the
repository (its tracked files) with a fresh virtual environment for the install line.

- A block after ``<!-- readme-test: skip (REASON) -->`` is skipped, with the reason.
- A line that reads ``../shared`` is skipped where ``../shared/data`` is absent
  (``$COTENANT_README_SHARED`` names it for a checkout that is not beside it).
- ``cotenant serve`` lines start in the background on a free port (``COTENANT_URL``
  points the client at it) and are stopped at the next ``serve`` and at the end.
- Long runs are shortened only as the README says: ``COTENANT_DAYS``.

Slow: the fresh environment installs cotenant's dependencies (minutes on a cold cache).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import free_ports

ROOT = Path(__file__).resolve().parents[2]
# ../shared beside the repository (a worktree elsewhere may name it in the environment)
SHARED = Path(os.environ.get("COTENANT_README_SHARED", ROOT.parent / "shared"))
SKIP = re.compile(r"<!--\s*readme-test:\s*skip\s*\((.+?)\)\s*-->")
DAYS = "0.05"  # the README names this value


@dataclass
class Block:
    line: int
    commands: list[str]
    skip: str | None


def blocks(text: str) -> list[Block]:
    """Indented code blocks (4 spaces after a blank line), continuation lines joined."""
    out: list[Block] = []
    lines = text.splitlines()
    skip: str | None = None
    i = 0
    while i < len(lines):
        if m := SKIP.search(lines[i]):
            skip = m[1]
        if lines[i].startswith("    ") and (i == 0 or not lines[i - 1].strip()):
            start, cmds, cur = i + 1, [], ""
            while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
                body = lines[i][4:]
                if body.strip():
                    cur += body.strip() if cur else body
                    if cur.endswith("\\"):
                        cur = cur[:-1] + " "
                    else:
                        cmds.append(cur)
                        cur = ""
                i += 1
            out.append(Block(start, cmds, skip))
            skip = None
            continue
        i += 1
    return out


def test_blocks_are_found() -> None:
    bs = blocks((ROOT / "README.md").read_text())
    first = bs[0].commands[0]
    assert first == "python3 -m pip install -e . && cotenant simulate colossus-lease"
    assert any(b.skip and "Slurm" in b.skip for b in bs)
    assert all(not c.endswith("\\") for b in bs for c in b.commands)


PRELUDE = r"""
set -euo pipefail
SERVER=
stop_server() {
    if [ -n "$SERVER" ]; then kill -INT "$SERVER" 2>/dev/null || true; wait "$SERVER" || true; fi
    SERVER=
}
trap stop_server EXIT
start_server() {  # the serve command line, in the background; wait until it answers
    stop_server
    "$@" --port "$PORT" > "serve-$PORT.log" 2>&1 &
    SERVER=$!
    for _ in $(seq 1200); do
        if python3 -c "import httpx,sys; sys.exit(httpx.get(sys.argv[1]).status_code != 200)" \
            "$COTENANT_URL/healthz" 2>/dev/null; then return 0; fi
        if ! kill -0 "$SERVER" 2>/dev/null; then cat "serve-$PORT.log"; return 1; fi
        sleep 0.25
    done
    cat "serve-$PORT.log"; return 1
}
"""


def script(bs: list[Block]) -> tuple[str, list[str]]:
    """The bash script of the blocks, and what was skipped (with the reasons)."""
    have_shared = (SHARED / "data").is_dir()
    lines, skipped = [PRELUDE], []
    for b in bs:
        if b.skip:
            skipped.append(f"README line {b.line}: {b.skip}")
            continue
        for c in b.commands:
            if "../shared" in c and not have_shared:
                skipped.append(f"{c[:60]}: ../shared/data is absent")
                continue
            lines.append(f"echo '$ '{shell_quote(c)}")
            if re.match(r"^cotenant serve\b", c):
                code = c.split("  #")[0]
                lines.append(f"start_server {code}")
            else:
                lines.append(c)
    return "\n".join(lines) + "\n", skipped


def shell_quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


def clean_copy(dest: Path) -> None:
    """The repository's tracked (and new, unignored) files, as a clean clone has them."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for f in filter(None, files):
        src = ROOT / f.decode()
        if src.is_file():
            (dest / f.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f.decode())


@pytest.mark.readme
def test_every_readme_command_runs(tmp_path: Path) -> None:
    bs = blocks((ROOT / "README.md").read_text())
    text, skipped = script(bs)
    repo = tmp_path / "cotenant"
    repo.mkdir()
    clean_copy(repo)
    if (SHARED / "data").is_dir():
        (tmp_path / "shared").symlink_to(SHARED)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    port = free_ports(1)[0]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "COTENANT_API_KEY")}
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env['PATH']}",
        VIRTUAL_ENV=str(venv),
        COTENANT_DAYS=DAYS,
        COTENANT_URL=f"http://127.0.0.1:{port}",
        COTENANT_CLIENT_CONFIG=str(tmp_path / "no-client.toml"),
        PORT=str(port),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        COLUMNS="100",
    )
    (repo / "readme.sh").write_text(text)
    r = subprocess.run(
        ["bash", "readme.sh"], cwd=repo, env=env, capture_output=True, text=True, timeout=3000
    )
    log = r.stdout[-6000:] + "\n--- stderr ---\n" + r.stderr[-4000:]
    assert r.returncode == 0, log
    out = r.stdout
    assert "Per tenant" in out  # the main job's report
    assert "GPUs 0,1,2,3" in out  # the local backend's job output, through jobs logs
    assert "exit code 3" in out  # ...and how it ended, through jobs why
    assert (repo / "report.html").is_file() and (repo / "audit.jsonl").stat().st_size > 0
    print("skipped:", *skipped, sep="\n  ")
