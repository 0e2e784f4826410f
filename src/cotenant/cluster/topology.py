"""The topology tree: site > fabric block > rack > node > GPUs, as flat NumPy arrays.

A cluster is built from node groups; each group holds one accelerator kind and
fills its own racks and fabric blocks, so racks and blocks are never mixed.
Arrays (not objects per node) keep placement vectorised at 100,000 GPUs.
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

    def kind(self) -> AcceleratorKind:
        return accelerator(self.accelerator)

    @property
    def node_gpus(self) -> int:
        return self.gpus_per_node if self.gpus_per_node is not None else self.kind().gpus_per_node


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
            if g.gpus_per_node is not None and (g.gpus_per_node < 1 or g.gpus_per_node > 1024):
                raise SpecError(
                    f"{f}.gpus_per_node", f"must be 1..1024, got {g.gpus_per_node}", source
                )
        total = sum(g.nodes for g in self.groups)
        if self.node_names and len(self.node_names) != total:
            raise SpecError(
                "cluster.node_names", f"{len(self.node_names)} names for {total} nodes", source
            )

    @property
    def total_gpus(self) -> int:
        return sum(g.nodes * g.node_gpus for g in self.groups)


class Topology:
    """Immutable arrays describing where every node sits. Shared by all snapshots."""

    def __init__(self, spec: ClusterSpec) -> None:
        spec.validate()
        self.spec = spec
        self.kinds: tuple[str, ...] = tuple(dict.fromkeys(g.accelerator for g in spec.groups))
        node_rack: list[np.ndarray] = []
        node_block: list[np.ndarray] = []
        node_kind: list[np.ndarray] = []
        node_gpus: list[np.ndarray] = []
        rack_block: list[np.ndarray] = []
        rack0 = block0 = 0
        for g in spec.groups:
            n_racks = -(-g.nodes // g.nodes_per_rack)
            n_blocks = -(-n_racks // g.racks_per_block)
            racks = rack0 + np.arange(g.nodes, dtype=np.int32) // g.nodes_per_rack
            node_rack.append(racks)
            rb = block0 + np.arange(n_racks, dtype=np.int32) // g.racks_per_block
            rack_block.append(rb)
            node_block.append(rb[racks - rack0])
            node_kind.append(np.full(g.nodes, self.kinds.index(g.accelerator), dtype=np.int16))
            node_gpus.append(np.full(g.nodes, g.node_gpus, dtype=np.int16))
            rack0 += n_racks
            block0 += n_blocks
        self.node_rack = np.concatenate(node_rack)
        self.node_block = np.concatenate(node_block)
        self.node_kind = np.concatenate(node_kind)
        self.node_gpus = np.concatenate(node_gpus)
        self.rack_block = np.concatenate(rack_block)
        self.n_nodes = int(self.node_rack.size)
        self.n_racks = rack0
        self.n_blocks = block0
        for a in (self.node_rack, self.node_block, self.node_kind, self.node_gpus, self.rack_block):
            a.setflags(write=False)
        self.total_gpus = int(self.node_gpus.sum())
        # Largest domain sizes, for "could this gang ever fit" checks.
        self.max_node_gpus = int(self.node_gpus.max())
        self.rack_nodes = np.bincount(self.node_rack, minlength=self.n_racks)
        self.block_nodes = np.bincount(self.node_block, minlength=self.n_blocks)
        self.max_rack_nodes = int(self.rack_nodes.max())
        self.max_block_nodes = int(self.block_nodes.max())
        # Memo for scheduler.placement.level_range: asked millions of times per run.
        self.level_memo: dict[tuple[int, object], Any] = {}
        # Memo for scheduler.placement.never_fits: by job shape (GPUs, constraint, kind).
        self.fit_memo: dict[tuple[int, object, str | None], str | None] = {}

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

    def kind_of_node(self, node: int) -> str:
        return self.kinds[int(self.node_kind[node])]
