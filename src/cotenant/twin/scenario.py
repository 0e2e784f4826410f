"""Scenario files: a cluster, tenants with contracts, and workload generators.

Every value is checked when the file is read; a bad one fails with a SpecError
naming its dotted field (``tenants[1].contract.commitment.gpus``), never later
with a traceback.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from cotenant.cluster.presets import PRESETS, preset
from cotenant.cluster.topology import ClusterSpec, NodeGroup
from cotenant.contracts.schema import no_unknown, parse_contract, validate_contracts
from cotenant.model.contracts import (
    Contract,
    Tenant,
)
from cotenant.model.errors import SpecError
from cotenant.model.time import DAY, parse_duration, parse_time
from cotenant.scheduler.policies import policy_names
from cotenant.workload.synthetic import FrontierLabWorkload, parse_workload


@dataclass(frozen=True)
class Scenario:
    name: str
    start_s: int
    duration_s: int
    seed: int
    policy: str
    cluster: ClusterSpec
    tenants: tuple[Tenant, ...]
    workloads: tuple[FrontierLabWorkload, ...] = ()
    restart_cost_s: int = 600
    checkpoint_write_s: int = 60
    sections: Mapping[str, Any] = field(default_factory=dict)  # failures, energy, services...
    base_dir: Path | None = None  # the scenario file's directory: relative paths start here

    @property
    def end_s(self) -> int:
        return self.start_s + self.duration_s

    def contracts(self) -> list[Contract]:
        return [t.contract for t in self.tenants if t.contract is not None]


BUILTIN = ("colossus-lease", "small-lease", "alibaba-serving")
_TOP = {
    "name",
    "start",
    "duration",
    "seed",
    "policy",
    "cluster",
    "tenants",
    "engine",
    "failures",
    "energy",
    "services",
    "description",
}
_TENANT = {"name", "display_name", "contract", "workload"}


def builtin_names() -> list[str]:
    return list(BUILTIN)


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A built-in scenario by name, or a TOML file by path."""
    text: str
    source: str
    base_dir: Path | None = None
    if str(name_or_path) in BUILTIN:
        source = f"scenario {name_or_path}"
        text = (
            resources.files("cotenant.twin.scenarios").joinpath(f"{name_or_path}.toml").read_text()
        )
    else:
        path = Path(name_or_path)
        if not path.exists():
            raise SpecError(
                "scenario",
                f"no built-in scenario or file named {str(name_or_path)!r}; "
                f"built-in: {', '.join(BUILTIN)}",
            )
        source = str(path)
        text = path.read_text()
        base_dir = path.resolve().parent
    raw = parse_toml(text, source)
    try:
        return parse_scenario(raw, base_dir)
    except SpecError as e:
        raise SpecError(e.field, e.problem, source) from None


def parse_toml(text: str, source: str) -> dict[str, Any]:
    """TOML text to a table; a syntax error names the source and the line."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError("toml", str(e), source) from None


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file (UTF-8) to a table; errors name the file."""
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise SpecError("toml", "not a UTF-8 text file", str(path)) from None
    return parse_toml(text, str(path))


def parse_scenario(raw: Mapping[str, Any], base_dir: Path | None = None) -> Scenario:
    no_unknown(raw, _TOP, "")
    start = parse_time(raw.get("start", "2026-10-01T00:00:00Z"), "start")
    duration = parse_duration(raw.get("duration", "30d"), "duration")
    if duration <= 0:
        raise SpecError("duration", "must be > 0")
    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise SpecError("seed", f"must be an integer, got {seed!r}")
    policy = raw.get("policy", "contract")
    if policy not in policy_names():
        raise SpecError("policy", f"unknown policy {policy!r}; valid: {', '.join(policy_names())}")
    cluster = parse_cluster(raw.get("cluster", {}), "cluster")
    raw_tenants = raw.get("tenants", [])
    if not isinstance(raw_tenants, list):
        raise SpecError("tenants", "must be an array of tables ([[tenants]])")
    tenants: list[Tenant] = []
    workloads: list[FrontierLabWorkload] = []
    for i, rt in enumerate(raw_tenants):
        f = f"tenants[{i}]"
        if not isinstance(rt, Mapping):
            raise SpecError(f, "must be a table")
        no_unknown(rt, _TENANT, f)
        name = rt.get("name")
        if not isinstance(name, str) or not name.strip():
            raise SpecError(f"{f}.name", "a tenant needs a non-empty name")
        if any(t.name == name for t in tenants):
            raise SpecError(f"{f}.name", f"tenant {name!r} appears twice")
        contract = None
        if "contract" in rt:
            contract = parse_contract(name, rt["contract"], f"{f}.contract", start, cluster)
        tenants.append(Tenant(name, str(rt.get("display_name", name)), contract))
        wl = rt.get("workload")
        if wl is not None:
            items = wl if isinstance(wl, list) else [wl]
            for j, w in enumerate(items):
                if not isinstance(w, Mapping):
                    raise SpecError(f"{f}.workload", "must be a table")
                workloads.append(parse_workload(name, w, f"{f}.workload[{j}]"))
    validate_contracts(tenants, cluster)
    engine = raw.get("engine", {})
    no_unknown(engine, {"restart_cost", "checkpoint_write"}, "engine")
    restart = parse_duration(engine.get("restart_cost", "10m"), "engine.restart_cost")
    write = parse_duration(engine.get("checkpoint_write", "60s"), "engine.checkpoint_write")
    if "failures" in raw:
        from cotenant.faults.injector import parse_failure_settings

        parse_failure_settings(raw["failures"])  # fail early, naming the field
    if "services" in raw:
        from cotenant.serving.services import parse_services

        parse_services(raw["services"], [t.name for t in tenants], seed, base_dir)
    sections = {k: raw[k] for k in ("failures", "energy", "services") if k in raw}
    return Scenario(
        name=str(raw.get("name", "scenario")),
        start_s=start,
        duration_s=duration,
        seed=seed,
        policy=policy,
        cluster=cluster,
        tenants=tuple(tenants),
        workloads=tuple(workloads),
        restart_cost_s=restart,
        checkpoint_write_s=write,
        sections=sections,
        base_dir=base_dir,
    )


def parse_cluster(raw: Any, f: str) -> ClusterSpec:
    if not isinstance(raw, Mapping):
        raise SpecError(f, "must be a table")
    no_unknown(raw, {"preset", "name", "groups"}, f)
    if "preset" in raw:
        if raw["preset"] not in PRESETS:
            raise SpecError(
                f"{f}.preset",
                f"unknown preset {raw['preset']!r}; valid: {', '.join(sorted(PRESETS))}",
            )
        return preset(raw["preset"], f"{f}.preset")
    groups = raw.get("groups")
    if not isinstance(groups, list) or not groups:
        raise SpecError(f, "give a preset or at least one [[cluster.groups]]")
    out = []
    for i, g in enumerate(groups):
        gf = f"{f}.groups[{i}]"
        no_unknown(
            g, {"accelerator", "nodes", "nodes_per_rack", "racks_per_block", "gpus_per_node"}, gf
        )
        for key in ("nodes", "nodes_per_rack", "racks_per_block", "gpus_per_node"):
            v = g.get(key)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise SpecError(f"{gf}.{key}", f"must be a whole number >= 1, got {v!r}")
        if "accelerator" not in g or "nodes" not in g:
            raise SpecError(gf, "needs accelerator and nodes")
        out.append(
            NodeGroup(
                g["accelerator"],
                g["nodes"],
                g.get("nodes_per_rack", 8),
                g.get("racks_per_block", 8),
                g.get("gpus_per_node"),
            )
        )
    spec = ClusterSpec(str(raw.get("name", "custom")), tuple(out))
    spec.validate()
    return spec


__all__ = ["DAY", "Scenario", "builtin_names", "load_scenario", "parse_scenario"]
