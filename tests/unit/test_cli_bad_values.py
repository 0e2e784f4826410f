"""Every command with bad values: a missing file, a directory, an unreadable file, a
file of the wrong format, negative and huge numbers, unknown names. Each exits with 2
and one line on stderr, never a traceback.

The commands that talk to a server are given a URL nothing listens on: their bad values
must be caught before any request."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cotenant.cli.main import run

HUGE = "1" + "0" * 400
FILES = {
    "missing": None,
    "dir": "DIR",
    "binary": b"\x89PNG\r\n\x1a\n\x00\xff\xfe garbage",
    "json": b'{"not": "toml"}',
    "bad.toml": b"[scenario\nname = 3\n",
    "empty": b"",
}


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COTENANT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("COTENANT_API_KEY", "ctk_not-a-key")
    monkeypatch.setenv("COTENANT_CLIENT_CONFIG", str(tmp_path / "none.toml"))
    for name, content in FILES.items():
        if content == "DIR":
            (tmp_path / name).mkdir()
        elif isinstance(content, bytes):
            (tmp_path / name).write_bytes(content)
    noread = tmp_path / "noread.toml"
    noread.write_text("[scenario]\n")
    noread.chmod(0)
    return tmp_path


CASES = [
    # simulate
    ("simulate", "missing"),
    ("simulate", "dir"),
    ("simulate", "binary"),
    ("simulate", "json"),
    ("simulate", "bad.toml"),
    ("simulate", "empty"),
    ("simulate", "no-such-scenario"),
    ("simulate", "small-lease", "--policy", "no-such-policy"),
    ("simulate", "small-lease", "--days", "-1"),
    ("simulate", "small-lease", "--days", HUGE),
    ("simulate", "small-lease", "--days", "nan"),
    ("simulate", "small-lease", "--failure-scale", "-1"),
    ("simulate", "small-lease", "--failure-scale", HUGE),
    ("simulate", "small-lease", "--html", "dir"),
    ("simulate", "small-lease", "--html", "missing/x.html"),
    ("simulate", "small-lease", "--out", "dir"),
    ("simulate", "small-lease", "--days", "abc"),
    # replay
    ("replay", "missing"),
    ("replay", "dir"),
    ("replay", "binary"),
    ("replay", "empty"),
    ("replay", "json"),
    ("replay", "TRACE", "--limit", "-5"),
    ("replay", "TRACE", "--limit", HUGE),
    ("replay", "TRACE", "--cluster", "16xq"),
    ("replay", "TRACE", "--cluster", "-16x8"),
    ("replay", "TRACE", "--cluster", f"{HUGE}x8"),
    ("replay", "TRACE", "--policy", "no-such-policy"),
    ("replay", "TRACE", "--format", "no-such-format"),
    ("replay", "TRACE", "--html", "dir"),
    # invoice
    ("invoice", "--tenant", "x", "--month", "2026-13"),
    ("invoice", "--tenant", "x", "--month", "2026-10", "--report", "missing"),
    ("invoice", "--tenant", "x", "--month", "2026-10", "--report", "dir"),
    ("invoice", "--tenant", "x", "--month", "2026-10", "--report", "binary"),
    ("invoice", "--tenant", "x", "--month", "2026-10", "--report", "json"),
    ("invoice", "--tenant", "x", "--month", "2026-10", "--scenario", "dir"),
    ("invoice", "--tenant", "x", "--month", "2026-10", "--scenario", "no-such-scenario"),
    ("invoice", "--tenant", "x", "--month", "2026-10", "--days", "-1"),
    ("invoice", "--tenant", "x", "--month", "2026-10", "--days", HUGE),
    # the HTTP client
    ("jobs", "submit", "--gpus", "1", "--duration", "-1h"),
    ("jobs", "submit", "--gpus", "1", "--duration", HUGE),
    ("jobs", "submit", "--gpus", "1", "--duration", "soon"),
    ("jobs", "submit", "--gpus", "1", "--duration", "1h", "--estimate", "-5"),
    ("jobs", "submit", "--gpus", HUGE, "--duration", "1h"),
    ("jobs", "list", "--since", "yesterday"),
    ("jobs", "list", "--until", "-5"),
    ("jobs", "logs", "job-x", "--attempt", "0"),
    ("jobs", "no-such-command"),
    ("audit", "verify", "--file", "missing"),
    ("audit", "verify", "--file", "dir"),
    ("audit", "verify", "--file", "binary"),
    ("audit", "verify", "--file", "json"),
    ("audit", "verify", "--db", "sqlite:///missing.db"),
    ("audit", "verify", "--db", "nonsense://x"),
    ("audit", "verify", "--head", "not-a-head", "--file", "empty"),
    ("audit", "export", "--out", "dir"),
    ("audit", "export", "--out", "missing/x.jsonl"),
    ("audit", "export", "--after-seq", "-1"),
    ("keys", "issue", "--role", "no-such-role"),
    ("keys", "issue", "--role", "operator", "--db", "sqlite:///missing/x.db"),
    ("no-such-command",),
]
if os.geteuid() != 0:  # root reads any file
    CASES += [("simulate", "noread.toml"), ("audit", "verify", "--file", "noread.toml")]


@pytest.mark.parametrize("argv", CASES, ids=lambda a: " ".join(a)[:60])
def test_bad_values_are_one_line_and_exit_2(
    argv: tuple[str, ...], files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = Path(__file__).parents[1] / "fixtures" / "philly_excerpt.csv"
    args = [str(trace) if a == "TRACE" else a for a in argv]
    code = run(args)
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert code == 2, (code, out.out[-500:], out.err[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), out.err
    assert "Traceback" not in out.err + out.out


SERVE_CASES = [
    ("--config", "missing"),
    ("--config", "dir"),
    ("--config", "binary"),
    ("--config", "json"),
    ("--scenario", "dir"),
    ("--scenario", "missing"),
    ("--scenario", "no-such-scenario"),
    ("--port", "-1"),
    ("--port", "99999"),
    ("--speed", "-1"),
    ("--speed", HUGE),
    ("--backend", "no-such-backend"),
    ("--backend", "local", "--state-dir", "empty"),  # a file, not a directory
    ("--start", "yesterday"),
]


@pytest.mark.parametrize("argv", SERVE_CASES, ids=lambda a: " ".join(a)[:60])
def test_serve_bad_values_are_one_line_and_exit_2(argv: tuple[str, ...], files: Path) -> None:
    """In a subprocess: a value wrongly accepted would start a server (the timeout ends it)."""
    r = subprocess.run(
        [sys.executable, "-m", "cotenant.cli.main", "serve", "--db", "sqlite:///s.db", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, (r.returncode, r.stdout[-500:], r.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
