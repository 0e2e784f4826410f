"""Domain objects <-> stored values, in one place (the boundary of rule 5)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cotenant.audit.chain import canonical_json
from cotenant.cluster.state import Placement
from cotenant.cluster.topology import ClusterSpec, NodeGroup
from cotenant.metering.ledger import UsageRecord
from cotenant.model.contracts import (
    Commitment,
    Contract,
    CreditCapBase,
    IsolationLevel,
    IsolationTerms,
    LendingTerms,
    NoticeTerms,
    PriceKind,
    PriceTerms,
    Ramp,
)
from cotenant.model.dependencies import Dependency, DependencyKind
from cotenant.model.jobs import Constraint, JobKind, JobSpec


# -- cluster ---------------------------------------------------------------------------------
def cluster_to_json(spec: ClusterSpec) -> str:
    return canonical_json(
        {
            "name": spec.name,
            "groups": [
                {
                    "accelerator": g.accelerator,
                    "nodes": g.nodes,
                    "nodes_per_rack": g.nodes_per_rack,
                    "racks_per_block": g.racks_per_block,
                    "gpus_per_node": g.gpus_per_node,
                    **({"provider": g.provider} if g.provider is not None else {}),
                }
                for g in spec.groups
            ],
            "node_names": list(spec.node_names),
        }
    )


def cluster_from_json(text: str) -> ClusterSpec:
    raw = json.loads(text)
    groups = tuple(
        NodeGroup(
            g["accelerator"],
            g["nodes"],
            g["nodes_per_rack"],
            g["racks_per_block"],
            g["gpus_per_node"],
            provider=g.get("provider"),
        )
        for g in raw["groups"]
    )
    return ClusterSpec(raw["name"], groups, tuple(raw.get("node_names", ())))


# -- contracts -------------------------------------------------------------------------------
def contract_to_dict(c: Contract) -> dict[str, Any]:
    return {
        "tenant": c.tenant,
        "start_s": c.start_s,
        "end_s": c.end_s,
        "commitment": {
            "gpus": c.commitment.gpus,
            "all_available": c.commitment.all_available,
            "reserve_gpus": c.commitment.reserve_gpus,
            "accelerator": c.commitment.accelerator,
        },
        "price": {
            "kind": c.price.kind.value,
            "currency": c.price.currency,
            "flat_fee_cents_per_month": c.price.flat_fee_cents_per_month,
            "committed_rate_micro_per_gpu_hour": c.price.committed_rate_micro_per_gpu_hour,
            "overage_rate_micro_per_gpu_hour": c.price.overage_rate_micro_per_gpu_hour,
            "sla_credit_micro_per_gpu_hour": c.price.sla_credit_micro_per_gpu_hour,
            "sla_credit_cap_percent": c.price.sla_credit_cap_percent,
            "sla_credit_cap_base": c.price.sla_credit_cap_base.value,
        },
        "notice": {
            "period_s": c.notice.period_s,
            "ramp": c.notice.ramp.value,
            "given_at": c.notice.given_at,
        },
        "lending": {
            "lend_idle": c.lending.lend_idle,
            "limit_gpus": c.lending.limit_gpus,
            "reclaim_grace_s": c.lending.reclaim_grace_s,
        },
        "isolation": {"rivals": list(c.isolation.rivals), "level": c.isolation.level.value},
        "priority": c.priority,
        "spares_backed": c.spares_backed,
    }


def contract_from_dict(raw: Mapping[str, Any]) -> Contract:
    cm, pr, nt, ln, iso = (
        raw["commitment"],
        raw["price"],
        raw["notice"],
        raw["lending"],
        raw["isolation"],
    )
    return Contract(
        tenant=raw["tenant"],
        start_s=raw["start_s"],
        end_s=raw["end_s"],
        commitment=Commitment(
            cm["gpus"], cm["all_available"], cm["reserve_gpus"], cm["accelerator"]
        ),
        price=PriceTerms(
            PriceKind(pr["kind"]),
            pr["currency"],
            pr["flat_fee_cents_per_month"],
            pr["committed_rate_micro_per_gpu_hour"],
            pr["overage_rate_micro_per_gpu_hour"],
            pr["sla_credit_micro_per_gpu_hour"],
            pr["sla_credit_cap_percent"],
            # contracts stored before the cap base existed capped the subtotal
            CreditCapBase(pr.get("sla_credit_cap_base", CreditCapBase.SUBTOTAL.value)),
        ),
        notice=NoticeTerms(nt["period_s"], Ramp(nt["ramp"]), nt["given_at"]),
        lending=LendingTerms(ln["lend_idle"], ln["limit_gpus"], ln["reclaim_grace_s"]),
        isolation=IsolationTerms(tuple(iso["rivals"]), IsolationLevel(iso["level"])),
        priority=raw["priority"],
        spares_backed=raw["spares_backed"],
    )


def contract_to_json(c: Contract) -> str:
    return canonical_json(contract_to_dict(c))


def contract_from_json(text: str) -> Contract:
    return contract_from_dict(json.loads(text))


# -- jobs ------------------------------------------------------------------------------------
def spec_columns(spec: JobSpec) -> dict[str, Any]:
    """The columns of a job row that hold its spec."""
    return {
        "id": spec.id,
        "tenant": spec.tenant,
        "name": spec.name,
        "gpus": spec.gpus,
        "duration_s": spec.duration_s,
        "submit_s": spec.submit_s,
        "kind": spec.kind.value,
        "constraint": spec.constraint.value,
        "checkpoint_interval_s": spec.checkpoint_interval_s,
        "priority": spec.priority,
        "estimate_s": spec.estimate_s,
        "accelerator": spec.accelerator,
        "command": canonical_json(list(spec.command)),
        "after": after_to_json(spec.after),
        "pipeline": spec.pipeline or None,
        "providers": canonical_json(list(spec.providers)),
    }


def after_to_json(after: tuple[Dependency, ...]) -> str:
    """(``take_nodes`` is written only when set, so rows without it read as before.)"""
    return canonical_json(
        [
            {"kind": d.kind.value, "jobs": list(d.jobs)}
            | ({"take_nodes": True} if d.take_nodes else {})
            for d in after
        ]
    )


def after_from_json(text: str | None) -> tuple[Dependency, ...]:
    raw = json.loads(text) if text else []
    return tuple(
        Dependency(DependencyKind(d["kind"]), tuple(d["jobs"]), bool(d.get("take_nodes")))
        for d in raw
    )


def pending_job_row(
    spec: JobSpec,
    idempotency_key: str | None,
    fingerprint: str,
    submitted_by: str,
    now: int,
    reason: str = "queued",
) -> dict[str, Any]:
    """A whole job row for a submission not yet run."""
    return {
        **spec_columns(spec),
        "idempotency_key": idempotency_key,
        "fingerprint": fingerprint,
        "submitted_by": submitted_by,
        "state": "pending",
        "reason": reason,
        "reason_detail": "",
        "nodes": None,
        "node_gpus": None,
        "borrowed": False,
        "start_s": None,
        "first_start_s": None,
        "usage_since_s": None,
        "end_s": None,
        "attempt": 0,
        "work_saved_s": 0,
        "preemptions": 0,
        "updated_s": now,
        "route": None,
    }


def spec_from_row(row: Mapping[str, Any]) -> JobSpec:
    return JobSpec(
        id=row["id"],
        tenant=row["tenant"],
        gpus=row["gpus"],
        duration_s=row["duration_s"],
        submit_s=row["submit_s"],
        kind=JobKind(row["kind"]),
        constraint=Constraint(row["constraint"]),
        checkpoint_interval_s=row["checkpoint_interval_s"],
        priority=row["priority"],
        estimate_s=row["estimate_s"],
        accelerator=row["accelerator"],
        name=row["name"],
        command=tuple(json.loads(row["command"])),
        after=after_from_json(row.get("after")),
        pipeline=row.get("pipeline") or "",
        providers=tuple(json.loads(row.get("providers") or "[]")),
    )


def placement_columns(p: Placement | None) -> dict[str, Any]:
    if p is None:
        return {"nodes": None, "node_gpus": None}
    return {"nodes": canonical_json(list(p.nodes)), "node_gpus": canonical_json(list(p.gpus))}


def placement_from_row(row: Mapping[str, Any]) -> Placement | None:
    if row["nodes"] is None or row["node_gpus"] is None:
        return None
    return Placement(tuple(json.loads(row["nodes"])), tuple(json.loads(row["node_gpus"])))


# -- ledger ----------------------------------------------------------------------------------
def record_columns(r: UsageRecord) -> dict[str, Any]:
    return {
        "job_id": r.job_id,
        "tenant": r.tenant,
        "gpus": r.gpus,
        "accelerator": r.accelerator,
        "nodes": canonical_json(list(r.nodes)),
        "start_s": r.start_s,
        "end_s": r.end_s,
        "borrowed": r.borrowed,
        "kind": r.kind,
    }


def record_from_row(row: Mapping[str, Any]) -> UsageRecord:
    """A usage record from a ledger row (a pool's ledger has no borrowing: never)."""
    return UsageRecord(
        row["job_id"],
        row["tenant"],
        row["gpus"],
        row["accelerator"],
        tuple(json.loads(row["nodes"])),
        row["start_s"],
        row["end_s"],
        bool(row.get("borrowed", False)),
        row["kind"],
    )


# -- tenants, contract versions, keys: the records the server hands the API -----------------
@dataclass(frozen=True, slots=True)
class TenantRecord:
    name: str
    display_name: str
    created_s: int


@dataclass(frozen=True, slots=True)
class ContractVersionRecord:
    tenant: str
    version: int
    change: str  # create | amend | notice
    created_s: int
    contract: Contract


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """An API key as stored, without its token's hash."""

    key_id: str
    role: str
    tenant: str | None
    name: str
    created_s: int
    created_by: str
    revoked_s: int | None


def tenant_from_row(row: Mapping[str, Any]) -> TenantRecord:
    return TenantRecord(row["name"], row["display_name"], row["created_s"])


def contract_version_from_row(row: Mapping[str, Any]) -> ContractVersionRecord:
    return ContractVersionRecord(
        row["tenant"],
        row["version"],
        row["change"],
        row["created_s"],
        contract_from_json(row["body"]),
    )


def key_columns(k: KeyRecord, digest: str) -> dict[str, Any]:
    """The stored row of a key whose token hashes to ``digest``."""
    return {
        "id": k.key_id,
        "hash": digest,
        "role": k.role,
        "tenant": k.tenant,
        "name": k.name,
        "created_s": k.created_s,
        "created_by": k.created_by,
        "revoked_s": k.revoked_s,
    }


def key_from_row(row: Mapping[str, Any]) -> KeyRecord:
    return KeyRecord(
        row["id"],
        row["role"],
        row["tenant"],
        row["name"],
        row["created_s"],
        row["created_by"],
        row["revoked_s"],
    )
