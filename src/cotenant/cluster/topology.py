"""The topology tree: site > fabric block > rack > NVLink domain > node > GPUs, as flat
NumPy arrays.

A cluster is built from node groups; each group holds one accelerator kind and
fills its own racks and fabric blocks, so racks and blocks are never mixed.
An NVLink domain is the set of nodes whose GPUs share one NVLink fabric: one node
of an HGX H100 board (8 GPUs), 18 trays of 4 GPUs in a GB200 NVL72 rack. It lies
inside a rack unless a group says otherwise (GB200 NVL36x2: one domain over two
racks of 9 trays).
Several providers (the live server's Slurm clusters) may share one topology: each group
names its provider, a provider's groups are adjacent, and placement never spans two.
Arrays (not objects per node) keep placement vectorised at 1,000,000 GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from cotenant.model.accelerators import AcceleratorKind, accelerator
from cotenant.model.errors import SpecError


@dataclass(frozen=True, slots=True)
class NodeGroup:
    accelerator: str
    nodes: int
    nodes_per_rack: int = 8
    racks_per_block: int = 8
    gpus_per_node: int | None = None  # None: the kind's default
    # Nodes per NVLink domain; None: the kind's NVLink domain over its GPUs per node,
    # at most one rack (a GB200 NVL72 is 18 trays; an H100 node is its own domain).
    nodes_per_domain: int | None = None
    # The provider (e.g. one Slurm cluster of several) whose nodes these are; None: the
    # cluster is one provider. A gang never spans providers (scheduler/placement.py).
    provider: str | None = None

    def kind(self) -> AcceleratorKind:
        return accelerator(self.accelerator)

    @property
    def node_gpus(self) -> int:
        return self.gpus_per_node if self.gpus_per_node is not None else self.kind().gpus_per_node

    @property
    def domain_nodes(self) -> int:
        if self.nodes_per_domain is not None:
            return self.nodes_per_domain
        return max(1, min(self.kind().nvlink_domain // self.node_gpus, self.nodes_per_rack))


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    name: str
    groups: tuple[NodeGroup, ...]
    node_names: tuple[str, ...] = field(default=())  # optional (e.g. imported from Slurm)

    def validate(self, source: str | None = None) -> None:
        if not self.groups:
            raise SpecError("cluster.groups", "a cluster needs at least one node group", source)
        for i, g in enumerate(self.groups):
            f = f"cluster.groups[{i}]"
            accelerator(g.accelerator, f"{f}.accelerator")
            for name in ("nodes", "nodes_per_rack", "racks_per_block"):
                v = getattr(g, name)
                if not isinstance(v, int) or v < 1:
                    raise SpecError(
                        f"{f}.{name}", f"must be a whole number >= 1, got {v!r}", source
                    )
            npd = g.nodes_per_domain
            if npd is not None and (not isinstance(npd, int) or npd < 1):
                raise SpecError(
                    f"{f}.nodes_per_domain", f"must be a whole number >= 1, got {npd!r}", source
                )
            if g.gpus_per_node is not None and (g.gpus_per_node < 1 or g.gpus_per_node > 1024):
                raise SpecError(
                    f"{f}.gpus_per_node", f"must be 1..1024, got {g.gpus_per_node}", source
                )
        named = [g.provider for g in self.groups]
        if any(p is not None for p in named):
            runs = [p for i, p in enumerate(named) if i == 0 or p != named[i - 1]]
            bad = next((i for i, p in enumerate(named) if p is None or not p), None)
            if bad is not None:
                raise SpecError(
                    f"cluster.groups[{bad}].provider",
                    "every group names its provider when one does",
                    source,
                )
            if len(runs) != len(set(runs)):
                raise SpecError(
                    "cluster.groups",
                    f"a provider's groups must be adjacent, got providers {named}",
                    source,
                )
        total = sum(g.nodes for g in self.groups)
        if self.node_names and len(self.node_names) != total:
            raise SpecError(
                "cluster.node_names", f"{len(self.node_names)} names for {total} nodes", source
            )

    @property
    def total_gpus(self) -> int:
        return sum(g.nodes * g.node_gpus for g in self.groups)


@dataclass(frozen=True, slots=True, eq=False)
class Units:
    """The units of one level (NVLink domains, racks or fabric blocks). They are numbered
    in node order, so each is a run of consecutive nodes, ``start[u]`` to ``start[u + 1]``:
    placement sums over runs and slices them instead of masking the whole cluster."""

    of_node: np.ndarray  # the unit each node is in
    start: np.ndarray  # count + 1 offsets
    nodes: np.ndarray  # nodes in each unit
    max_nodes: int

    @property
    def count(self) -> int:
        return int(self.nodes.size)

    @staticmethod
    def of(of_node: np.ndarray, count: int) -> Units:
        if np.any(np.diff(of_node) < 0):
            raise ValueError("units must be numbered in node order")
        start = np.searchsorted(of_node, np.arange(count + 1)).astype(np.int64)
        nodes = np.diff(start)
        for a in (of_node, start, nodes):
            a.setflags(write=False)
        return Units(of_node, start, nodes, int(nodes.max()))


class Topology:
    """Immutable arrays describing where every node sits. Shared by all snapshots."""

    def __init__(self, spec: ClusterSpec) -> None:
        spec.validate()
        self.spec = spec
        self.kinds: tuple[str, ...] = tuple(dict.fromkeys(g.accelerator for g in spec.groups))
        node_rack: list[np.ndarray] = []
        node_domain: list[np.ndarray] = []
        node_block: list[np.ndarray] = []
        node_kind: list[np.ndarray] = []
        node_gpus: list[np.ndarray] = []
        rack_block: list[np.ndarray] = []
        node_provider: list[np.ndarray] = []
        self.provider_names: tuple[str, ...] = tuple(
            dict.fromkeys(g.provider or "" for g in spec.groups)
        )
        rack0 = block0 = domain0 = 0
        for g in spec.groups:
            n_racks = -(-g.nodes // g.nodes_per_rack)
            n_blocks = -(-n_racks // g.racks_per_block)
            local = np.arange(g.nodes, dtype=np.int32)
            racks = rack0 + local // g.nodes_per_rack
            node_rack.append(racks)
            npd = g.domain_nodes
            if npd <= g.nodes_per_rack:  # domains inside racks (the last may be short)
                per_rack = -(-g.nodes_per_rack // npd)
                dom = (local // g.nodes_per_rack) * per_rack + (local % g.nodes_per_rack) // npd
            else:
                dom = local // npd
            _, dom = np.unique(dom, return_inverse=True)  # numbered 0.. without gaps
            node_domain.append((domain0 + dom).astype(np.int32))
            domain0 += int(dom.max()) + 1
            rb = block0 + np.arange(n_racks, dtype=np.int32) // g.racks_per_block
            rack_block.append(rb)
            node_block.append(rb[racks - rack0])
            node_kind.append(np.full(g.nodes, self.kinds.index(g.accelerator), dtype=np.int16))
            node_gpus.append(np.full(g.nodes, g.node_gpus, dtype=np.int16))
            provider = self.provider_names.index(g.provider or "")
            node_provider.append(np.full(g.nodes, provider, dtype=np.int32))
            rack0 += n_racks
            block0 += n_blocks
        self.node_kind = np.concatenate(node_kind)
        self.node_gpus = np.concatenate(node_gpus)
        self.rack_block = np.concatenate(rack_block)
        for a in (self.node_kind, self.node_gpus, self.rack_block):
            a.setflags(write=False)
        self.domains = Units.of(np.concatenate(node_domain), domain0)
        self.racks = Units.of(np.concatenate(node_rack), rack0)
        self.blocks = Units.of(np.concatenate(node_block), block0)
        self.providers = Units.of(np.concatenate(node_provider), len(self.provider_names))
        self.n_nodes = int(self.node_gpus.size)
        self.total_gpus = int(self.node_gpus.sum())
        self.max_node_gpus = int(self.node_gpus.max())
        # Memo for scheduler.placement.level_range: asked millions of times per run.
        self.level_memo: dict[tuple[object, ...], Any] = {}
        # Memo for scheduler.placement.never_fits: by job shape (GPUs, constraint, kind).
        self.fit_memo: dict[tuple[object, ...], str | None] = {}
        self._provider_capacity: dict[tuple[str | None, tuple[str, ...]], int] = {}
        self._provider_nodes: dict[tuple[str, ...], np.ndarray | None] = {}
        self._job_nodes: dict[tuple[str | None, tuple[str, ...]], np.ndarray | None] = {}

    # -- the levels under their usual names ------------------------------------------------
    @property
    def node_rack(self) -> np.ndarray:
        return self.racks.of_node

    @property
    def n_racks(self) -> int:
        return self.racks.count

    @property
    def rack_nodes(self) -> np.ndarray:
        return self.racks.nodes

    @property
    def max_rack_nodes(self) -> int:
        return self.racks.max_nodes

    @property
    def node_block(self) -> np.ndarray:
        return self.blocks.of_node

    @property
    def n_blocks(self) -> int:
        return self.blocks.count

    @property
    def block_nodes(self) -> np.ndarray:
        return self.blocks.nodes

    @property
    def max_block_nodes(self) -> int:
        return self.blocks.max_nodes

    @property
    def node_domain(self) -> np.ndarray:
        return self.domains.of_node

    @property
    def n_domains(self) -> int:
        return self.domains.count

    @property
    def max_domain_nodes(self) -> int:
        return self.domains.max_nodes

    @cached_property
    def domains_are_nodes(self) -> bool:
        """Every NVLink domain is one node (HGX boards): the domain level adds nothing."""
        return self.domains.max_nodes == 1

    @cached_property
    def domains_are_racks(self) -> bool:
        """Every NVLink domain is one rack (GB200 NVL72): the domain level places for both."""
        return bool(np.array_equal(self.domains.of_node, self.racks.of_node))

    @cached_property
    def uniform_node_gpus(self) -> bool:
        return bool(self.node_gpus.min() == self.node_gpus.max())

    @property
    def n_providers(self) -> int:
        return self.providers.count

    @property
    def max_provider_nodes(self) -> int:
        return self.providers.max_nodes

    @cached_property
    def providers_are_blocks(self) -> bool:
        """Every provider is one fabric block: the provider level adds nothing."""
        return self.providers.count == self.blocks.count

    def provider_of_node(self, node: int) -> str | None:
        """The provider a node belongs to (None: the cluster is one provider)."""
        name = self.provider_names[int(self.providers.of_node[node])]
        return name or None

    def unit_of_node(self, level: int) -> list[int]:
        """Each node's unit at a level, as a Python list (read node by node on hot paths);
        made once."""
        key = ("unit-of-node", level)
        got = self.level_memo.get(key)
        if got is None:
            got = self.level_memo[key] = self.level_units(level).of_node.tolist()
        return got  # type: ignore[no-any-return]

    def level_units(self, level: int) -> Units:
        """The units of a placement level (1 NVLink domain, 2 rack, 3 fabric block,
        4 provider)."""
        return (self.domains, self.racks, self.blocks, self.providers)[level - 1]

    @cached_property
    def node_names(self) -> tuple[str, ...]:
        if self.spec.node_names:
            return self.spec.node_names
        return tuple(
            f"b{int(b):03d}-r{int(r):04d}-n{i:05d}"
            for i, (b, r) in enumerate(zip(self.node_block, self.node_rack, strict=True))
        )

    def capacity_by_kind(self) -> dict[str | None, int]:
        return dict(self._capacity_by_kind)

    @cached_property
    def _capacity_by_kind(self) -> dict[str | None, int]:
        out: dict[str | None, int] = {None: self.total_gpus}
        for k, name in enumerate(self.kinds):
            out[name] = int(self.node_gpus[self.node_kind == k].sum())
        return out

    def capacity_of(self, kind: str | None) -> int:
        return self._capacity_by_kind.get(kind, 0)

    def provider_capacity_of(self, kind: str | None, names: tuple[str, ...] = ()) -> int:
        """The most GPUs (of ``kind``; None: any) one provider has (of ``names``, for a
        job that accepts only those): a gang's upper bound."""
        key = (kind, names if self.provider_nodes(names) is not None else ())
        got = self._provider_capacity.get(key)
        if got is None:
            gpus = self.node_gpus.astype(np.int64)
            if kind is not None:
                k = self.kinds.index(kind) if kind in self.kinds else -1
                gpus = np.where(self.node_kind == k, gpus, 0)
            sums = np.add.reduceat(gpus, self.providers.start[:-1])
            if key[1]:
                sums = np.where([n in names for n in self.provider_names], sums, 0)
            got = self._provider_capacity[key] = int(sums.max())
        return got

    @cached_property
    def named_providers(self) -> tuple[str, ...]:
        """The providers its node groups name (the live server's Slurm clusters); none
        for one unnamed cluster, such as a twin engine the federation routes work to."""
        return tuple(n for n in self.provider_names if n)

    def job_nodes(self, kind: str | None, names: tuple[str, ...] = ()) -> np.ndarray | None:
        """The nodes a job may ever use: of its accelerator kind (None: any), on the
        providers it names (``provider_nodes``). Read-only; None: every node (also where
        the kind and providers named leave none out: a cluster of one kind)."""
        key = (kind, names)
        if key not in self._job_nodes:
            mask = None if kind is None else self.node_kind == self.kind_index(kind)
            only = self.provider_nodes(names)
            if only is not None:
                mask = only if mask is None else mask & only
            if mask is not None and mask.all():
                mask = None
            if mask is not None:
                mask.setflags(write=False)
            self._job_nodes[key] = mask
        return self._job_nodes[key]

    def kind_index(self, kind: str) -> int:
        """The kind's index in ``node_kind`` (-1: no node of that kind)."""
        return self.kinds.index(kind) if kind in self.kinds else -1

    def provider_nodes(self, names: tuple[str, ...]) -> np.ndarray | None:
        """The nodes of the named providers, for a job that accepts only those (read-only;
        None: no limit, because it names none or this topology names no provider)."""
        if not names or not self.named_providers:
            return None
        if names not in self._provider_nodes:
            ids = [k for k, n in enumerate(self.provider_names) if n and n in names]
            mask = np.isin(self.providers.of_node, ids)
            mask.setflags(write=False)
            self._provider_nodes[names] = mask
        return self._provider_nodes[names]

    def kind_of_node(self, node: int) -> str:
        return self.kinds[int(self.node_kind[node])]
