"""The contract schema: a contract's table (as in a scenario file or a request body)
read into a :class:`~cotenant.model.contracts.Contract`, and the checks that a set of
contracts fits a cluster. The digital twin's scenario files and the live server's
contract requests both use it, so a contract means the same thing in both.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field, WithJsonSchema

from cotenant.cluster.topology import ClusterSpec
from cotenant.contracts.terms import PriceTable
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
from cotenant.model.spec import (
    Duration,
    Flag,
    Integer,
    SpecTable,
    Text,
    Time,
    Whole,
    problem,
)


def _either(valid: tuple[str, ...]) -> Any:
    def check(v: Any) -> str:
        if v not in valid:
            raise problem(f"must be {' or '.join(repr(x) for x in valid)}, got {v!r}")
        return str(v)

    return BeforeValidator(check)


def _names(v: Any) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(r, str) for r in v):
        raise problem("must be a list of tenant names")
    return v


_RAMPS = tuple(r.value for r in Ramp)
_LEVELS = tuple(x.value for x in IsolationLevel)


class CommitmentTable(SpecTable):
    gpus: Whole = 0
    all_available: Flag = False
    reserve_gpus: Whole = 0
    accelerator: Text | None = None


class TermTable(SpecTable):
    start: Time | None = Field(None, description="default: the scenario's start")
    end: Time | None = None
    length: Duration = Field("365d", validate_default=True, description="if end is absent")


class NoticeTable(SpecTable):
    period: Duration = Field("90d", validate_default=True)
    ramp: Annotated[str, _either(_RAMPS), WithJsonSchema({"enum": _RAMPS})] = "linear"
    given_at: Time | None = None


class LendingTable(SpecTable):
    lend_idle: Flag = True
    limit_gpus: Whole | None = None
    reclaim_grace: Duration = Field("5m", validate_default=True)


class IsolationTable(SpecTable):
    rivals: Annotated[
        list[str],
        BeforeValidator(_names),
        WithJsonSchema({"type": "array", "items": {"type": "string"}}),
    ] = Field(default_factory=list)
    level: Annotated[str, _either(_LEVELS), WithJsonSchema({"enum": _LEVELS})] = "node"


class ContractTable(SpecTable):
    """A tenant's contract as written (a scenario's ``[tenants.contract]`` table, or the
    body of a contract request). ``contract()`` checks it against the cluster."""

    commitment: CommitmentTable = Field(default_factory=CommitmentTable)
    term: TermTable = Field(default_factory=TermTable)
    price: PriceTable | None = None
    notice: NoticeTable = Field(default_factory=NoticeTable)
    lending: LendingTable = Field(default_factory=LendingTable)
    isolation: IsolationTable = Field(default_factory=IsolationTable)
    priority: Integer = 0
    spares_backed: Flag = False

    def contract(self, tenant: str, f: str, default_start: int, cluster: ClusterSpec) -> Contract:
        """The contract of ``tenant``; ``f`` names this table in errors."""
        term = self.term
        start = default_start if term.start is None else term.start
        end = start + term.length if term.end is None else term.end
        if end <= start:
            raise SpecError(f"{f}.term.end", "the term must end after it starts")
        nt, ln, iso = self.notice, self.lending, self.isolation
        kw: dict[str, Any] = {}
        if self.price is not None:
            kw["price"] = self.price.terms(f"{f}.price")
        return Contract(
            tenant,
            start,
            end,
            self._commitment(f"{f}.commitment", cluster),
            notice=NoticeTerms(nt.period, Ramp(nt.ramp), nt.given_at),
            lending=LendingTerms(ln.lend_idle, ln.limit_gpus, ln.reclaim_grace),
            isolation=IsolationTerms(tuple(iso.rivals), IsolationLevel(iso.level)),
            priority=self.priority,
            spares_backed=self.spares_backed,
            **kw,
        )

    def _commitment(self, f: str, cluster: ClusterSpec) -> Commitment:
        """The commitment, if the cluster has the kind and the GPUs it names."""
        cm = self.commitment
        kind = cm.accelerator
        if kind is not None:
            kinds = {g.accelerator for g in cluster.groups}
            if kind not in kinds:
                raise SpecError(
                    f"{f}.accelerator",
                    f"{kind!r} is not a kind this cluster has; it has: {', '.join(sorted(kinds))}",
                )
        capacity = sum(
            g.nodes * g.node_gpus for g in cluster.groups if kind is None or g.accelerator == kind
        )
        for key, gpus in (("gpus", cm.gpus), ("reserve_gpus", cm.reserve_gpus)):
            if gpus > capacity:
                raise SpecError(f"{f}.{key}", f"{gpus} GPUs is more than the cluster's {capacity}")
        if cm.all_available and cm.gpus:
            raise SpecError(f, "give either gpus or all_available, not both")
        return Commitment(cm.gpus, cm.all_available, cm.reserve_gpus, kind)


def parse_contract(
    tenant: str, raw: Any, f: str, default_start: int, cluster: ClusterSpec
) -> Contract:
    """A contract table read and checked against the cluster; errors name ``f.<key>``."""
    return ContractTable.read(raw, f).contract(tenant, f, default_start, cluster)


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
