"""Scenario files: a cluster, tenants with contracts, and workload generators.

Every value is checked when the file is read; a bad one fails with a SpecError
naming its dotted field (``tenants[1].contract.commitment.gpus``), never later
with a traceback.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from cotenant.cluster.presets import PRESETS, preset
from cotenant.cluster.topology import ClusterSpec, NodeGroup
from cotenant.metering.terms import parse_price_terms
from cotenant.model.contracts import (
    Commitment,
    Contract,
    IsolationLevel,
    IsolationTerms,
    LendingTerms,
    NoticeTerms,
    Ramp,
    Tenant,
)
from cotenant.model.errors import SpecError
from cotenant.model.time import DAY, parse_duration
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
_CONTRACT = {
    "commitment",
    "term",
    "price",
    "notice",
    "lending",
    "isolation",
    "priority",
    "spares_backed",
}


def builtin_names() -> list[str]:
    return list(BUILTIN)


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A built-in scenario by name, or a TOML file by path."""
    text: str
    source: str
    base_dir: Path | None = None
    if str(name_or_path) in BUILTIN:
        source = f"scenario {name_or_path}"
        text = resources.files("cotenant.scenarios").joinpath(f"{name_or_path}.toml").read_text()
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
    _no_unknown(raw, _TOP, "")
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
        _no_unknown(rt, _TENANT, f)
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
    _no_unknown(engine, {"restart_cost", "checkpoint_write"}, "engine")
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
    _no_unknown(raw, {"preset", "name", "groups"}, f)
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
        _no_unknown(
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


def parse_contract(
    tenant: str, raw: Any, f: str, default_start: int, cluster: ClusterSpec
) -> Contract:
    if not isinstance(raw, Mapping):
        raise SpecError(f, "must be a table")
    _no_unknown(raw, _CONTRACT, f)
    cm = raw.get("commitment", {})
    _no_unknown(cm, {"gpus", "all_available", "reserve_gpus", "accelerator"}, f"{f}.commitment")
    kind = cm.get("accelerator")
    if kind is not None:
        kinds = {g.accelerator for g in cluster.groups}
        if kind not in kinds:
            raise SpecError(
                f"{f}.commitment.accelerator",
                f"{kind!r} is not a kind this cluster has; it has: {', '.join(sorted(kinds))}",
            )
    capacity = sum(
        g.nodes * g.node_gpus for g in cluster.groups if kind is None or g.accelerator == kind
    )
    gpus = _whole(cm.get("gpus", 0), f"{f}.commitment.gpus")
    if gpus > capacity:
        raise SpecError(
            f"{f}.commitment.gpus", f"{gpus} GPUs is more than the cluster's {capacity}"
        )
    reserve = _whole(cm.get("reserve_gpus", 0), f"{f}.commitment.reserve_gpus")
    if reserve > capacity:
        raise SpecError(
            f"{f}.commitment.reserve_gpus", f"{reserve} GPUs is more than the cluster's {capacity}"
        )
    all_av = _flag(cm.get("all_available", False), f"{f}.commitment.all_available")
    if all_av and gpus:
        raise SpecError(f"{f}.commitment", "give either gpus or all_available, not both")
    commitment = Commitment(gpus, all_av, reserve, kind)
    term = raw.get("term", {})
    _no_unknown(term, {"start", "end", "length"}, f"{f}.term")
    start = parse_time(term["start"], f"{f}.term.start") if "start" in term else default_start
    if "end" in term:
        end = parse_time(term["end"], f"{f}.term.end")
    else:
        end = start + parse_duration(term.get("length", "365d"), f"{f}.term.length")
    if end <= start:
        raise SpecError(f"{f}.term.end", "the term must end after it starts")
    nt = raw.get("notice", {})
    _no_unknown(nt, {"period", "ramp", "given_at"}, f"{f}.notice")
    ramp = nt.get("ramp", "linear")
    if ramp not in {r.value for r in Ramp}:
        raise SpecError(f"{f}.notice.ramp", f"must be 'linear' or 'step', got {ramp!r}")
    given = parse_time(nt["given_at"], f"{f}.notice.given_at") if "given_at" in nt else None
    notice = NoticeTerms(
        parse_duration(nt.get("period", "90d"), f"{f}.notice.period"), Ramp(ramp), given
    )
    ln = raw.get("lending", {})
    _no_unknown(ln, {"lend_idle", "limit_gpus", "reclaim_grace"}, f"{f}.lending")
    limit = ln.get("limit_gpus")
    if limit is not None:
        limit = _whole(limit, f"{f}.lending.limit_gpus")
    lending = LendingTerms(
        _flag(ln.get("lend_idle", True), f"{f}.lending.lend_idle"),
        limit,
        parse_duration(ln.get("reclaim_grace", "5m"), f"{f}.lending.reclaim_grace"),
    )
    iso = raw.get("isolation", {})
    _no_unknown(iso, {"rivals", "level"}, f"{f}.isolation")
    level = iso.get("level", "node")
    if level not in {x.value for x in IsolationLevel}:
        raise SpecError(f"{f}.isolation.level", f"must be 'node' or 'rack', got {level!r}")
    rivals = iso.get("rivals", [])
    if not isinstance(rivals, list) or not all(isinstance(r, str) for r in rivals):
        raise SpecError(f"{f}.isolation.rivals", "must be a list of tenant names")
    price = parse_price_terms(raw.get("price", {}), f"{f}.price") if "price" in raw else None
    prio = raw.get("priority", 0)
    if not isinstance(prio, int) or isinstance(prio, bool):
        raise SpecError(f"{f}.priority", f"must be an integer, got {prio!r}")
    kw: dict[str, Any] = {}
    if price is not None:
        kw["price"] = price
    return Contract(
        tenant,
        start,
        end,
        commitment,
        notice=notice,
        lending=lending,
        isolation=IsolationTerms(tuple(rivals), IsolationLevel(level)),
        priority=prio,
        spares_backed=_flag(raw.get("spares_backed", False), f"{f}.spares_backed"),
        **kw,
    )


def validate_contracts(tenants: list[Tenant], cluster: ClusterSpec) -> None:
    """Commitments must fit the cluster together; rivals must be tenants; one all-available."""
    names = {t.name for t in tenants}
    capacity = cluster.total_gpus
    fixed = 0
    all_av = 0
    per_kind: dict[str, int] = {}
    for i, t in enumerate(tenants):
        c = t.contract
        if c is None or c.commitment.accelerator is None:
            continue
        k = c.commitment.accelerator
        per_kind[k] = per_kind.get(k, 0) + c.commitment.gpus + c.commitment.reserve_gpus
        have = sum(g.nodes * g.node_gpus for g in cluster.groups if g.accelerator == k)
        if per_kind[k] > have:
            raise SpecError(
                f"tenants[{i}].contract.commitment.gpus",
                f"commitments of {k} add up to {per_kind[k]} GPUs; the cluster has {have}",
            )
    for i, t in enumerate(tenants):
        c = t.contract
        if c is None:
            continue
        for r in c.isolation.rivals:
            if r not in names:
                raise SpecError(
                    f"tenants[{i}].contract.isolation.rivals",
                    f"{r!r} is not a tenant of this scenario",
                )
            if r == t.name:
                raise SpecError(
                    f"tenants[{i}].contract.isolation.rivals", "a tenant cannot be its own rival"
                )
        if c.commitment.all_available:
            all_av += 1
            if all_av > 1:
                raise SpecError(
                    f"tenants[{i}].contract.commitment.all_available",
                    "only one tenant may have all available capacity",
                )
            fixed += c.commitment.reserve_gpus
        else:
            fixed += c.commitment.gpus
        if fixed > capacity:
            raise SpecError(
                f"tenants[{i}].contract.commitment.gpus",
                f"commitments add up to {fixed} GPUs, more than the cluster's {capacity}",
            )


def parse_time(v: Any, f: str) -> int:
    """An ISO date or date-time (UTC unless it says otherwise), or Unix seconds."""
    if isinstance(v, bool):
        raise SpecError(f, f"expected a date, got {v!r}")
    if isinstance(v, int):
        return v
    if isinstance(v, datetime):
        dt = v if v.tzinfo else v.replace(tzinfo=UTC)
        return int(dt.timestamp())
    if isinstance(v, date):
        return int(datetime(v.year, v.month, v.day, tzinfo=UTC).timestamp())
    if isinstance(v, str):
        try:
            dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            raise SpecError(
                f, f"cannot read {v!r} as a date (use 2026-10-01 or 2026-10-01T00:00Z)"
            ) from None
        dt = dt if dt.tzinfo else dt.replace(tzinfo=UTC)
        return int(dt.timestamp())
    raise SpecError(f, f"expected a date, got {v!r}")


def _whole(v: Any, f: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise SpecError(f, f"must be a whole number >= 0, got {v!r}")
    return v


def _flag(v: Any, f: str) -> bool:
    if not isinstance(v, bool):
        raise SpecError(f, f"must be true or false, got {v!r}")
    return v


def _no_unknown(raw: Any, allowed: set[str], f: str) -> None:
    if not isinstance(raw, Mapping):
        raise SpecError(f or "scenario", "must be a table")
    unknown = sorted(set(raw) - allowed)
    if unknown:
        where = f"{f}.{unknown[0]}" if f else unknown[0]
        raise SpecError(where, f"unknown key; valid: {', '.join(sorted(allowed))}")


__all__ = ["DAY", "Scenario", "builtin_names", "load_scenario", "parse_scenario", "parse_time"]
