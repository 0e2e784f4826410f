"""The layout's import rules (docs/design/0011-layout.md), read from the source with ``ast``.

Every ``import cotenant...`` in ``src/cotenant`` is an edge between two *units* (a
top-level package, or the package root); each unit may import only the
units its row in ``MAY_IMPORT`` names. Imports inside functions and under
``TYPE_CHECKING`` count too: a lazy import hides a dependency, it does not remove it.
Between units, imports that run (at import time or when a function is called) must form
no cycle, except the known ones listed in ``KNOWN_CYCLES`` with their owner (none today).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

import cotenant

SRC = Path(cotenant.__file__).parent

# Everything the live server stands on (the server is server/, with web/ and api/ over it).
BELOW_SERVER = {
    "model",
    "audit",
    "cluster",
    "contracts",
    "traces",
    "scheduler",
    "metering",
    "backends",
    "engine",
    "faults",
    "serving",
    "workload",
    "store",
    "twin",
    "federation",
    "root",
}

# unit -> the units it may import (besides itself). "root" is cotenant/__init__.py and
# cotenant/tablefit.py (the version and the table fitter for terminal output).
MAY_IMPORT: dict[str, set[str]] = {
    "model": set(),
    "root": set(),
    "audit": {"model"},
    "cluster": {"model"},
    "contracts": {"model", "cluster"},
    "traces": {"model"},
    "scheduler": {"model", "cluster", "contracts"},
    "metering": {"model", "cluster", "contracts", "scheduler"},
    "backends": {"model", "cluster"},
    "engine": {"model", "cluster", "contracts", "scheduler", "metering", "backends"},
    "faults": {"model", "engine"},
    "serving": {"model", "engine"},
    "workload": {"model", "faults", "serving"},
    "store": {"model", "cluster", "contracts", "metering", "audit"},
    # several providers on one clock: an engine per provider and the routing between them
    "federation": {"model", "cluster", "contracts", "scheduler", "metering", "backends", "engine"},
    "twin": BELOW_SERVER - {"audit", "store", "twin"},
    # what-if studies: many twin runs on Dask; nothing imports them but the CLI
    "whatif": {"model", "faults", "metering", "twin", "root"},
    # the live server, top down: api/ (routes, schemas, auth) over web/ (the console's
    # templates and live state) over server/ (the service and its parts). The server
    # knows no route and no page.
    "server": BELOW_SERVER,
    "web": BELOW_SERVER | {"server"},
    "api": BELOW_SERVER | {"server", "web"},
    "cli": BELOW_SERVER | {"server", "web", "api", "whatif"},
}

# Imports that break a row above, each with the reason it stays. Keep this short.
EXCEPTIONS: dict[tuple[str, str], str] = {
    # metering observes a run: UsageProbe and PowerHolds take the Engine (type only; the
    # engine imports metering's ledger and energy at run time).
    ("metering", "engine"): "type-only: metering.run and metering.power name Engine",
}

# Cycles between units among the imports that run, with who owns them. The test fails
# when a new cycle appears and when a known one is gone (then delete it here).
KNOWN_CYCLES: dict[frozenset[str], str] = {}


@dataclass(frozen=True)
class Edge:
    source: str  # the importing module, dotted
    target: str  # the imported module, dotted
    kind: str  # "runtime" (module level), "lazy" (inside a function) or "type"


def unit_of(module: str) -> str:
    """``cotenant.scheduler.snapshot`` -> ``scheduler``; loose root modules by name."""
    parts = module.split(".")[1:]
    if not parts or parts[0] in ("__init__", "tablefit"):
        return "root"
    return parts[0]


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    return ".".join(rel.parts).removesuffix(".__init__")


def _targets(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level or node.module is None:
        return []  # the package uses absolute imports only (ruff's isort keeps them so)
    if node.module == "cotenant":  # from cotenant import x: a submodule or the root
        return [
            f"cotenant.{a.name}"
            if (SRC / a.name).is_dir() or (SRC / f"{a.name}.py").exists()
            else "cotenant"
            for a in node.names
        ]
    return [node.module]


def _is_type_checking(test: ast.expr) -> bool:
    return "TYPE_CHECKING" in ast.unparse(test)


def edges_in(text: str, source: str) -> list[Edge]:
    """The cotenant imports of module ``source`` whose code is ``text``."""
    out: list[Edge] = []

    def walk(node: ast.AST, kind: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                out.extend(
                    Edge(source, t, kind) for t in _targets(child) if t.startswith("cotenant")
                )
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    walk(ast.Module(body=[stmt], type_ignores=[]), "type")
                for stmt in child.orelse:
                    walk(ast.Module(body=[stmt], type_ignores=[]), kind)
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                walk(child, "lazy" if kind == "runtime" else kind)
            else:
                walk(child, kind)

    walk(ast.parse(text, source), "runtime")
    return out


def edges_of(path: Path) -> list[Edge]:
    return edges_in(path.read_text(), module_name(path))


def all_edges() -> list[Edge]:
    files = sorted(p for p in SRC.rglob("*.py") if "migrations" not in p.parts)
    return [e for p in files for e in edges_of(p)]


def broken_rules(edges: list[Edge]) -> list[str]:
    out = []
    for e in edges:
        a, b = unit_of(e.source), unit_of(e.target)
        if a == b or b in MAY_IMPORT.get(a, set()) or (a, b) in EXCEPTIONS:
            continue
        out.append(f"{e.source} imports {e.target} ({e.kind}): {a} may not import {b}")
    return out


def unit_cycles(edges: list[Edge]) -> set[frozenset[str]]:
    """Strongly connected components of more than one unit, over imports that run."""
    graph: dict[str, set[str]] = defaultdict(set)
    for e in edges:
        a, b = unit_of(e.source), unit_of(e.target)
        if a != b and e.kind != "type":
            graph[a].add(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()

    def connect(v: str) -> None:  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.add(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


# -- the rules hold today -------------------------------------------------------------------


def test_every_unit_has_a_row() -> None:
    units = {unit_of(e.source) for e in all_edges()} | {unit_of(e.target) for e in all_edges()}
    assert units <= set(MAY_IMPORT), sorted(units - set(MAY_IMPORT))


def test_no_import_breaks_the_layout() -> None:
    assert broken_rules(all_edges()) == []


def test_the_exceptions_are_still_needed() -> None:
    used = {(unit_of(e.source), unit_of(e.target)) for e in all_edges()}
    assert set(EXCEPTIONS) <= used, "an exception no import needs: delete it"


def test_no_import_cycle_between_units_but_the_known_ones() -> None:
    assert unit_cycles(all_edges()) == set(KNOWN_CYCLES)


# -- the checks catch what they should ------------------------------------------------------


def _edge(source: str, target: str, kind: str = "runtime") -> Edge:
    return Edge(f"cotenant.{source}", f"cotenant.{target}", kind)


@pytest.mark.parametrize(
    ("source", "target"),
    [
        pytest.param("scheduler.cycle", "store.repo", id="scheduler-imports-store"),
        pytest.param("engine.core", "server.service", id="engine-imports-the-server"),
        pytest.param("store.repo", "server.keys", id="store-imports-the-server"),
        pytest.param("server.service", "api.keys", id="server-imports-the-api"),
        pytest.param("server.demo", "web.live", id="server-imports-the-console"),
        pytest.param("web.live", "api.app", id="console-imports-the-api"),
        pytest.param("engine.core", "twin.report", id="engine-imports-the-twin"),
        pytest.param("store.repo", "tablefit", id="store-imports-the-root"),
        pytest.param("twin.runtime", "store.db", id="twin-imports-store"),
        pytest.param("model.jobs", "cluster.topology", id="model-imports-anything"),
        pytest.param("api.app", "cli.main", id="server-imports-cli"),
    ],
)
def test_a_forbidden_import_is_reported(source: str, target: str) -> None:
    for kind in ("runtime", "lazy", "type"):
        assert len(broken_rules([_edge(source, target, kind)])) == 1


def test_a_cycle_is_found_and_a_type_only_one_is_not() -> None:
    edges = [_edge("engine.core", "metering.ledger"), _edge("metering.run", "engine.core")]
    assert unit_cycles(edges) == {frozenset({"engine", "metering"})}
    edges[1] = _edge("metering.run", "engine.core", "type")
    assert unit_cycles(edges) == set()


def test_imports_are_read_by_kind() -> None:
    text = (
        "from typing import TYPE_CHECKING\n"
        "from cotenant.model.jobs import JobSpec\n"
        "import cotenant.cluster.topology\n"
        "if TYPE_CHECKING:\n"
        "    from cotenant.engine.core import Engine\n"
        "def f() -> None:\n"
        "    from cotenant.store import repo\n"
    )
    kinds = {(e.target, e.kind) for e in edges_in(text, "cotenant.model.probe")}
    assert kinds == {
        ("cotenant.model.jobs", "runtime"),
        ("cotenant.cluster.topology", "runtime"),
        ("cotenant.engine.core", "type"),
        ("cotenant.store", "lazy"),
    }
