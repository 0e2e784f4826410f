"""One install for everything the README shows: every library that cotenant's code
imports is a default dependency (or comes with one), so ``pip install -e .`` gives the
main job, the server and the HTTP client alike; no command fails with a missing module."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _imported_top_modules() -> set[str]:
    mods: set[str] = set()
    for path in (ROOT / "src" / "cotenant").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                mods |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods.add(node.module.split(".")[0])
    return {m for m in mods if m not in sys.stdlib_module_names and m != "cotenant"}


def _with_requirements(names: set[str]) -> set[str]:
    """The distributions and, transitively, what they require (without extras)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        try:
            reqs = metadata.requires(n) or []
        except metadata.PackageNotFoundError:
            continue
        todo += [_name(r) for r in reqs if "extra ==" not in r]
    return seen


def test_every_imported_library_is_a_default_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    installed = _with_requirements({_name(r) for r in project["dependencies"]})
    dists = metadata.packages_distributions()
    missing = []
    for mod in sorted(_imported_top_modules()):
        owners = {d.lower().replace("_", "-") for d in dists.get(mod, [mod])}
        if not owners & installed:
            missing.append(f"{mod} (from {', '.join(sorted(owners))})")
    assert not missing, "imported but not installed by `pip install -e .`: " + "; ".join(missing)
