"""The snapshot a policy decides over: cluster state, queues, contracts, at one instant.

Policies must not mutate it; they copy the state into a ``Workspace`` to try
placements. The job views are frozen and cached by the engine, so building a
snapshot costs a tuple of references, not a copy of every job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from cotenant.cluster.state import ClusterState, Placement
from cotenant.model.checkpoints import lost_at
from cotenant.model.contracts import Contract, IsolationLevel
from cotenant.model.jobs import JobKind, JobSpec

# A tenant's rivals: every one, and those of them it is kept a rack apart from (the rest
# a node apart).
Rivals = tuple[frozenset[str], frozenset[str]]


@dataclass(frozen=True, slots=True)
class PendingJob:
    spec: JobSpec
    queued_since_s: int  # submit time, or the time it was last requeued
    attained_gpu_s: int = 0  # GPU-seconds of service received so far (for LAS)
    remaining_s: int = 0  # work left from its last checkpoint
    promise: Placement | None = None  # room being reclaimed for it; kept while still valid
    promised_since_s: int | None = None


@dataclass(frozen=True, slots=True)
class RunningJob:
    spec: JobSpec
    placement: Placement
    start_s: int
    expected_end_s: int  # from the runtime estimate, for backfill shadows
    borrowed: bool
    reclaiming: bool  # already told to checkpoint and stop
    work_at_start_s: int  # work already saved when this run began
    restart_s: int  # restart cost paid at the start of this run
    attained_gpu_s: int = 0
    reclaim_deadline_s: int | None = None  # when it stops, if it is being reclaimed
    write_s: int = 0  # time each periodic checkpoint of this run takes to write

    @property
    def tenant(self) -> str:
        return self.spec.tenant

    @property
    def gpus(self) -> int:
        return self.spec.gpus

    def gpus_on(self, nodes: np.ndarray) -> int:
        """Its GPUs on the nodes ``nodes`` (a mask over all nodes) marks."""
        p = self.placement
        if len(p.nodes) == 1:
            return p.gpus[0] if nodes[p.nodes[0]] else 0
        where, gpus = p.arrays()
        return int(gpus[nodes[where]].sum())

    def work_since_checkpoint_s(self, now: int) -> int:
        """Work that would be lost if this run stopped at ``now`` without a new checkpoint
        (the engine's own arithmetic: ``model.checkpoints``)."""
        spec = self.spec
        return lost_at(
            self.start_s,
            self.restart_s,
            self.work_at_start_s,
            spec.duration_s,
            spec.checkpoint_interval_s,
            self.write_s,
            now,
        )


@dataclass(frozen=True)
class Snapshot:
    now: int
    state: ClusterState
    pending: tuple[PendingJob, ...]  # in queue order: priority desc, then queued_since, then id
    running: tuple[RunningJob, ...]
    contracts: Mapping[str, Contract]
    entitlements: Mapping[str, int]  # GPUs owed now
    owned_gpus: Mapping[str, int]  # GPUs each tenant holds inside its entitlement
    borrowed_gpus: Mapping[str, int]
    # GPUs each tenant owns, by job priority: a more important job may take the room of
    # less important owned work (the engine demotes that work to borrowed).
    owned_by_priority: Mapping[str, Mapping[int, int]] = field(default_factory=dict)
    rivals: Mapping[str, Rivals] = field(default_factory=dict)
    # Extra capacity the policy must leave alone (e.g. power headroom), in GPUs; None: no cap.
    power_headroom_gpus: int | None = None
    # Ids of the pending jobs no empty cluster could hold (decided once per job shape, at
    # submit); None: not known, the policy checks each job it looks at.
    never_fit: frozenset[str] | None = None
    # The tenants with a job pending; None: not known (read from ``pending``).
    pending_tenants: frozenset[str] | None = None
    # Each waiting tenant's own queue, in queue order; None: not known (group ``pending``).
    pending_by_tenant: Mapping[str, tuple[PendingJob, ...]] | None = None
    # The running jobs being reclaimed, in ``running`` order; None: not known (filter it).
    reclaiming: tuple[RunningJob, ...] | None = None

    def reclaiming_runs(self) -> tuple[RunningJob, ...]:
        if self.reclaiming is not None:
            return self.reclaiming
        return tuple(r for r in self.running if r.reclaiming)

    @property
    def topo(self):  # type: ignore[no-untyped-def]
        return self.state.topo


def rival_map(contracts: Mapping[str, Contract]) -> dict[str, Rivals]:
    """Isolation is symmetric: if A names B, neither may share with the other. Each pair
    keeps the stricter level either side named (rack over node); a tenant's pairs may
    differ (a rack apart from one rival, a node apart from another)."""
    rivals: dict[str, set[str]] = {}
    rack_pairs: set[frozenset[str]] = set()
    for c in contracts.values():
        for r in c.isolation.rivals:
            rivals.setdefault(c.tenant, set()).add(r)
            rivals.setdefault(r, set()).add(c.tenant)
            if c.isolation.level is IsolationLevel.RACK:
                rack_pairs.add(frozenset((c.tenant, r)))
    return {
        t: (frozenset(rs), frozenset(r for r in rs if frozenset((t, r)) in rack_pairs))
        for t, rs in rivals.items()
    }


def blocked_nodes(
    state: ClusterState, tenant: str, rivals: Mapping[str, Rivals]
) -> np.ndarray | None:
    """Nodes the tenant may not use because a rival holds GPUs there (or, for a rival
    kept a rack apart, in the rack)."""
    entry = rivals.get(tenant)
    if not entry:
        return None
    names, rack_apart = entry
    blocked: np.ndarray | None = None
    node_level = sorted(names - rack_apart)
    if node_level:
        idx = [state.tenant_index(r) for r in node_level]  # (adds a row on first sight)
        blocked = _held_by_any(state.tenant_gpus, idx)
    if rack_apart:
        idx = [state.tenant_index(r) for r in sorted(rack_apart)]
        racks = _held_by_any(state.rack_tenant, idx)
        in_racks = np.asarray(racks[state.topo.node_rack], dtype=bool)
        blocked = in_racks if blocked is None else blocked | in_racks
    return blocked


def _held_by_any(held: np.ndarray, rows: list[int]) -> np.ndarray:
    """Columns where any of ``rows`` holds GPUs (one rival, the usual case: one compare,
    no copy of its row)."""
    if len(rows) == 1:
        return np.asarray(held[rows[0]] > 0, dtype=bool)
    return np.asarray((held[rows] > 0).any(axis=0), dtype=bool)


def is_service(job: JobSpec) -> bool:
    return job.kind is JobKind.SERVICE
