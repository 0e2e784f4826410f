"""Mutable cluster state: free GPUs and holders per node, kept in NumPy arrays.

Only the engine mutates the live state; policies work on copies (``copy()`` is a
few array copies, cheap even at 12,500 nodes), so a what-if is undone by
dropping the copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from cotenant.cluster.topology import Topology
from cotenant.model.errors import InvariantBroken


class Health(IntEnum):
    HEALTHY = 0
    DRAINING = 1  # finishes or checkpoints what runs; takes nothing new
    DOWN = 2


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a gang runs: node indices and GPUs taken on each (same length, nodes ascending)."""

    nodes: tuple[int, ...]
    gpus: tuple[int, ...]
    # The same as arrays (int64 nodes, int32 GPUs), made once on first use: a gang of
    # 262,144 GPUs holds 65,536 nodes, and every apply and release would convert them.
    _arrays: tuple[np.ndarray, np.ndarray] | None = field(default=None, compare=False, repr=False)

    @property
    def total_gpus(self) -> int:
        return sum(self.gpus)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Nodes and GPUs as read-only arrays."""
        got = self._arrays
        if got is None:
            nodes = np.asarray(self.nodes, dtype=np.int64)
            gpus = np.asarray(self.gpus, dtype=np.int32)
            nodes.setflags(write=False)
            gpus.setflags(write=False)
            got = (nodes, gpus)
            object.__setattr__(self, "_arrays", got)
        return got


class ClusterState:
    def __init__(self, topo: Topology, tenants: tuple[str, ...] = ()) -> None:
        self.topo = topo
        self.free = topo.node_gpus.astype(np.int16).copy()
        self.health = np.zeros(topo.n_nodes, dtype=np.int8)  # change it with set_health
        self._usable: np.ndarray | None = None  # health-derived, cleared by set_health
        self._down_gpus: int | None = None
        self.held = 0  # GPUs held by all tenants (the sum of tenant_gpus, kept as it changes)
        self.tenants: list[str] = []
        self._tenant_index: dict[str, int] = {}
        self.tenant_gpus = np.zeros((0, topo.n_nodes), dtype=np.int32)
        self.rack_tenant = np.zeros((0, topo.n_racks), dtype=np.int32)
        for t in tenants:
            self.tenant_index(t)

    # -- tenants -------------------------------------------------------------------------
    def tenant_index(self, tenant: str) -> int:
        """Index of a tenant's row, adding the tenant on first sight."""
        idx = self._tenant_index.get(tenant)
        if idx is None:
            idx = len(self.tenants)
            self.tenants.append(tenant)
            self._tenant_index[tenant] = idx
            self.tenant_gpus = np.vstack(
                [self.tenant_gpus, np.zeros((1, self.topo.n_nodes), np.int32)]
            )
            self.rack_tenant = np.vstack(
                [self.rack_tenant, np.zeros((1, self.topo.n_racks), np.int32)]
            )
        return idx

    def copy(self) -> ClusterState:
        new = ClusterState.__new__(ClusterState)
        new.topo = self.topo
        new.free = self.free.copy()
        new.health = self.health.copy()
        new._usable = self._usable
        new._down_gpus = self._down_gpus
        new.held = self.held
        new.tenants = list(self.tenants)
        new._tenant_index = dict(self._tenant_index)
        new.tenant_gpus = self.tenant_gpus.copy()
        new.rack_tenant = self.rack_tenant.copy()
        return new

    # -- allocation ----------------------------------------------------------------------
    def holds(self, p: Placement) -> bool:
        """Whether every GPU of the placement is free here (``free_part(p) == p``, without
        building the part)."""
        if len(p.nodes) == 1:
            return bool(self.free[p.nodes[0]] >= p.gpus[0])
        nodes, gpus = p.arrays()
        return bool((self.free[nodes] >= gpus).all())

    def free_part(self, p: Placement) -> Placement | None:
        """The part of a placement that is free here (None if nothing is; ``p`` itself
        when all of it is, with nothing built)."""
        if self.holds(p):
            return p
        nodes, gpus = p.arrays()
        take = np.minimum(gpus, self.free[nodes])
        keep = take > 0
        if not keep.any():
            return None
        part_nodes, part_gpus = nodes[keep], take[keep].astype(np.int32)
        part_nodes.setflags(write=False)
        part_gpus.setflags(write=False)
        arrays = (part_nodes, part_gpus)
        return Placement(tuple(part_nodes.tolist()), tuple(part_gpus.tolist()), arrays)

    def apply(self, tenant: str, p: Placement, check: bool = True) -> None:
        t = self.tenant_index(tenant)
        if len(p.nodes) == 1:  # most gangs: plain scalar updates, no array round trips
            n, g = p.nodes[0], p.gpus[0]
            free = self.free.item(n)
            if check and (free < g or g <= 0):
                raise InvariantBroken(f"placement of {tenant} over-commits nodes {[n]}")
            self.free[n] = free - g
            self.tenant_gpus[t, n] += g
            self.rack_tenant[t, self.topo.node_rack[n]] += g
            self.held += g
            return
        nodes, gpus = p.arrays()
        if check and ((self.free[nodes] < gpus).any() or (gpus <= 0).any()):
            bad = [int(n) for n, g in zip(nodes, gpus, strict=True) if self.free[n] < g]
            raise InvariantBroken(f"placement of {tenant} over-commits nodes {bad[:5]}")
        total = int(gpus.sum())
        self.free[nodes] -= gpus.astype(np.int16)
        self.tenant_gpus[t, nodes] += gpus
        self._add_to_racks(t, nodes, gpus, total)
        self.held += total

    def release(self, tenant: str, p: Placement) -> None:
        t = self.tenant_index(tenant)
        if len(p.nodes) == 1:
            n, g = p.nodes[0], p.gpus[0]
            if self.tenant_gpus[t, n] < g:
                raise InvariantBroken(f"release of GPUs {tenant} does not hold")
            self.free[n] += g
            self.tenant_gpus[t, n] -= g
            self.rack_tenant[t, self.topo.node_rack[n]] -= g
            self.held -= g
            return
        nodes, gpus = p.arrays()
        if (self.tenant_gpus[t, nodes] < gpus).any():
            raise InvariantBroken(f"release of GPUs {tenant} does not hold")
        total = int(gpus.sum())
        self.free[nodes] += gpus.astype(np.int16)
        self.tenant_gpus[t, nodes] -= gpus
        self._add_to_racks(t, nodes, -gpus, -total)
        self.held -= total

    def _add_to_racks(self, t: int, nodes: np.ndarray, gpus: np.ndarray, total: int) -> None:
        """Add ``gpus`` on ``nodes`` (ascending) to the tenant's per-rack counts: one add
        when the nodes share a rack (a rack-local gang), else a scatter-add."""
        node_rack = self.topo.node_rack
        first, last = node_rack[nodes[0]], node_rack[nodes[-1]]
        if first == last:
            self.rack_tenant[t, first] += total
        else:
            np.add.at(self.rack_tenant[t], node_rack[nodes], gpus)

    def release_many(self, held: list[tuple[str, Placement]]) -> None:
        """Release many placements at once (vectorised; for what-if victim searches)."""
        if not held:
            return
        t_idx = np.concatenate(
            [np.full(len(p.nodes), self.tenant_index(t), dtype=np.int64) for t, p in held]
        )
        nodes = np.concatenate([p.arrays()[0] for _, p in held])
        gpus = np.concatenate([p.arrays()[1] for _, p in held])
        np.add.at(self.free, nodes, gpus.astype(np.int16))
        np.subtract.at(self.tenant_gpus, (t_idx, nodes), gpus)
        np.subtract.at(self.rack_tenant, (t_idx, self.topo.node_rack[nodes]), gpus)
        self.held -= int(gpus.sum())
        if np.any(self.tenant_gpus[t_idx, nodes] < 0):
            raise InvariantBroken("release of GPUs a tenant does not hold")

    # -- views ---------------------------------------------------------------------------
    def set_health(self, node: int, health: Health) -> None:
        self.health[node] = int(health)
        self._usable = self._down_gpus = None

    def usable(self) -> np.ndarray:
        """Nodes that may take new work (read-only; cached until health changes)."""
        if self._usable is None:
            mask = np.asarray(self.health == Health.HEALTHY, dtype=bool)
            mask.setflags(write=False)
            self._usable = mask
        return self._usable

    def down_gpus(self) -> int:
        """GPUs on nodes out of service (down or draining); cached until health changes."""
        if self._down_gpus is None:
            self._down_gpus = int(self.topo.node_gpus[~self.usable()].sum())
        return self._down_gpus

    def allocated_gpus(self) -> int:
        return int(self.tenant_gpus.sum())

    def check_invariants(self) -> None:
        """Free plus held equals capacity on every node; nothing negative. For tests and audits."""
        held = self.tenant_gpus.sum(axis=0)
        if np.any(self.free < 0) or np.any(self.tenant_gpus < 0):
            raise InvariantBroken("negative free or held GPUs")
        if not np.array_equal(held + self.free, self.topo.node_gpus.astype(np.int64)):
            raise InvariantBroken("free + held != capacity")
        if int(held.sum()) != self.held:
            raise InvariantBroken("the held count drifted from the tenants' GPUs")
