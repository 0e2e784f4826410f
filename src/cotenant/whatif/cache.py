"""Finished runs on disk, one small JSON file each, keyed by a hash of what decides the
run's numbers: the scenario file's text (and its directory, for the files it names), the
variant, the seed, the days and policy, and cotenant's code (its version and a digest of its
source). A rerun or a widened study runs only what is not here yet."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import cotenant
from cotenant import __version__


def default_dir() -> Path:
    """``$COTENANT_CACHE`` or ``$XDG_CACHE_HOME/cotenant/whatif`` (``~/.cache/...``)."""
    if os.environ.get("COTENANT_CACHE"):
        return Path(os.environ["COTENANT_CACHE"])
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "cotenant" / "whatif"


@functools.cache
def code_version() -> str:
    """cotenant's version and a digest of its source files, so that results of other code
    are never read back: an edited working copy or a patched install keeps its version
    string but not its numbers (about 10 ms, once per process)."""
    root = Path(cotenant.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return f"{__version__}+{digest.hexdigest()[:12]}"


def run_key(
    text: str,
    base_dir: str | None,
    variant: list[list[str]],
    seed: int,
    days: float | None,
    policy: str | None,
    version: str | None = None,
) -> str:
    blob = json.dumps(
        {
            "scenario": text,
            "base_dir": base_dir,
            "variant": variant,
            "seed": seed,
            "days": days,
            "policy": policy,
            "version": version or code_version(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


class RunCache:
    """Results by key under one directory (``None``: no cache, nothing kept)."""

    def __init__(self, root: Path | None) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        assert self.root is not None
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        if self.root is None:
            return None
        try:
            data: dict[str, Any] = json.loads(self._path(key).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None  # absent, or a torn file from a killed run: run it again
        return data

    def put(self, key: str, result: dict[str, Any]) -> None:
        """Write atomically (a temporary file renamed), so a kill never leaves half a file."""
        if self.root is None:
            return
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(result, f)
        os.replace(tmp, path)


__all__ = ["RunCache", "default_dir", "run_key"]
