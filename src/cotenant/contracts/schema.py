"""The contract schema: a contract's table (as in a scenario file or a request body)
read into a :class:`~cotenant.model.contracts.Contract`, and the checks that a set of
contracts fits a cluster. The digital twin's scenario files and the live server's
contract requests both use it, so a contract means the same thing in both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cotenant.cluster.topology import ClusterSpec
from cotenant.contracts.terms import parse_price_terms
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
from cotenant.model.time import parse_duration, parse_time

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


def parse_contract(
    tenant: str, raw: Any, f: str, default_start: int, cluster: ClusterSpec
) -> Contract:
    if not isinstance(raw, Mapping):
        raise SpecError(f, "must be a table")
    no_unknown(raw, _CONTRACT, f)
    cm = raw.get("commitment", {})
    no_unknown(cm, {"gpus", "all_available", "reserve_gpus", "accelerator"}, f"{f}.commitment")
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
    no_unknown(term, {"start", "end", "length"}, f"{f}.term")
    start = parse_time(term["start"], f"{f}.term.start") if "start" in term else default_start
    if "end" in term:
        end = parse_time(term["end"], f"{f}.term.end")
    else:
        end = start + parse_duration(term.get("length", "365d"), f"{f}.term.length")
    if end <= start:
        raise SpecError(f"{f}.term.end", "the term must end after it starts")
    nt = raw.get("notice", {})
    no_unknown(nt, {"period", "ramp", "given_at"}, f"{f}.notice")
    ramp = nt.get("ramp", "linear")
    if ramp not in {r.value for r in Ramp}:
        raise SpecError(f"{f}.notice.ramp", f"must be 'linear' or 'step', got {ramp!r}")
    given = parse_time(nt["given_at"], f"{f}.notice.given_at") if "given_at" in nt else None
    notice = NoticeTerms(
        parse_duration(nt.get("period", "90d"), f"{f}.notice.period"), Ramp(ramp), given
    )
    ln = raw.get("lending", {})
    no_unknown(ln, {"lend_idle", "limit_gpus", "reclaim_grace"}, f"{f}.lending")
    limit = ln.get("limit_gpus")
    if limit is not None:
        limit = _whole(limit, f"{f}.lending.limit_gpus")
    lending = LendingTerms(
        _flag(ln.get("lend_idle", True), f"{f}.lending.lend_idle"),
        limit,
        parse_duration(ln.get("reclaim_grace", "5m"), f"{f}.lending.reclaim_grace"),
    )
    iso = raw.get("isolation", {})
    no_unknown(iso, {"rivals", "level"}, f"{f}.isolation")
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


def _whole(v: Any, f: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise SpecError(f, f"must be a whole number >= 0, got {v!r}")
    return v


def _flag(v: Any, f: str) -> bool:
    if not isinstance(v, bool):
        raise SpecError(f, f"must be true or false, got {v!r}")
    return v


def no_unknown(raw: Any, allowed: set[str], f: str) -> None:
    if not isinstance(raw, Mapping):
        raise SpecError(f or "scenario", "must be a table")
    unknown = sorted(set(raw) - allowed)
    if unknown:
        where = f"{f}.{unknown[0]}" if f else unknown[0]
        raise SpecError(where, f"unknown key; valid: {', '.join(sorted(allowed))}")
