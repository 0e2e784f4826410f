"""Topology-aware gang placement: one entry point, pure and vectorised.

A gang that fits in one node takes one node (best fit: the fullest node that
still holds it). A larger gang takes whole free nodes plus at most one partial
node for the remainder, inside the smallest domain (rack, fabric block, or the
whole cluster) with room among those its constraint allows, choosing the domain with the least free
capacity that holds it (best fit limits fragmentation). Across blocks it takes
the fewest blocks.

The caller passes ``free`` (GPUs free per node) and ``eligible`` (healthy, of
the right kind, no rival in the way). There are no per-GPU Python loops: each
call is a handful of NumPy operations over the node arrays.
"""

from __future__ import annotations

from enum import IntEnum
from typing import cast

import numpy as np

from cotenant.cluster.state import Placement
from cotenant.cluster.topology import Topology
from cotenant.model.jobs import Constraint

_BIG = np.int32(1 << 30)


class Level(IntEnum):
    NODE = 0
    RACK = 1
    BLOCK = 2
    ANY = 3


_MAX_LEVEL = {
    Constraint.NODE: Level.NODE,
    Constraint.RACK: Level.RACK,
    Constraint.BLOCK: Level.BLOCK,
    Constraint.ANY: Level.ANY,
}


def smallest_level(topo: Topology, gpus: int, per_node: int | None = None) -> Level:
    """The smallest domain whose size can hold a gang of ``gpus``."""
    per = per_node or topo.max_node_gpus
    if gpus <= per:
        return Level.NODE
    nodes = -(-gpus // per)
    if nodes <= topo.max_rack_nodes:
        return Level.RACK
    if nodes <= topo.max_block_nodes:
        return Level.BLOCK
    return Level.ANY


def level_range(topo: Topology, gpus: int, constraint: Constraint) -> tuple[Level, Level]:
    """(first level to try, last level allowed).

    AUTO prefers the smallest domain that can hold the gang and widens only when none
    has room (Kueue's "preferred" topology): requiring it would starve block-sized gangs
    on a busy cluster, where one down node spoils a whole block. A gang that fits one
    node stays on one node: splitting it would move NVLink traffic onto the network.
    """
    key = (gpus, constraint)
    got = topo.level_memo.get(key)
    if got is None:
        lo = smallest_level(topo, gpus)
        if constraint is Constraint.AUTO:
            hi = Level.NODE if lo is Level.NODE else Level.ANY
        else:
            hi = _MAX_LEVEL[constraint]
        got = topo.level_memo[key] = (lo, hi)
    return cast(tuple[Level, Level], got)


def could_ever_fit(topo: Topology, gpus: int, constraint: Constraint, capacity: int) -> str | None:
    """None if an empty cluster could hold the gang; else a reason a user can act on."""
    if gpus < 1:
        return "a job needs at least one GPU"
    if gpus > capacity:
        return f"needs {gpus} GPUs; the cluster (of its kind) has {capacity}"
    lo, hi = level_range(topo, gpus, constraint)
    if lo > hi:
        return f"{gpus} GPUs cannot fit inside one {constraint.value}"
    return None


def never_fits(topo: Topology, gpus: int, constraint: Constraint, kind: str | None) -> str | None:
    """``could_ever_fit`` for a job's shape on this topology, decided once per shape: the
    answer depends on the topology and the capacity of the kind only, never on what runs
    or on node health, so it is kept for the topology's lifetime."""
    key = (gpus, constraint, kind)
    memo = topo.fit_memo
    if key in memo:
        return memo[key]
    why = memo[key] = could_ever_fit(topo, gpus, constraint, topo.capacity_of(kind))
    return why


def find_placement(
    topo: Topology,
    free: np.ndarray,
    eligible: np.ndarray,
    gpus: int,
    constraint: Constraint = Constraint.AUTO,
) -> Placement | None:
    lo, hi = level_range(topo, gpus, constraint)
    for level in range(lo, hi + 1):
        if level == Level.NODE:
            p = _on_one_node(free, eligible, gpus)
        elif level == Level.ANY:
            p = _across_blocks(topo, free, eligible, gpus)
        else:
            dom = topo.node_rack if level == Level.RACK else topo.node_block
            n_dom = topo.n_racks if level == Level.RACK else topo.n_blocks
            p = _in_one_domain(topo, free, eligible, gpus, dom, n_dom)
        if p is not None:
            return p
    return None


def _on_one_node(free: np.ndarray, eligible: np.ndarray, gpus: int) -> Placement | None:
    score = np.where(eligible & (free >= gpus), free, _BIG)
    i = int(np.argmin(score))
    if score[i] == _BIG:
        return None
    return Placement((i,), (gpus,))


def _split(
    topo: Topology, free: np.ndarray, eligible: np.ndarray, gpus: int
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Masks of whole free nodes and remainder candidates, whole nodes needed, remainder."""
    full = eligible & (free == topo.node_gpus)
    per = int(topo.node_gpus[eligible].max()) if eligible.any() else topo.max_node_gpus
    k, r = divmod(gpus, per)
    partial = eligible & (free >= r) & ~full if r else np.zeros_like(full)
    return full, partial, k, r


def _pick_remainder(free: np.ndarray, partial: np.ndarray, spare_full: np.ndarray, r: int) -> int:
    """Best-fit node for the remainder: a partial node if one holds it, else a whole one."""
    idx = np.flatnonzero(partial)
    if idx.size:
        return int(idx[np.argmin(free[idx])])
    return int(np.flatnonzero(spare_full)[0])


def _assemble(nodes: np.ndarray, per_gpus: np.ndarray, rem_node: int | None, r: int) -> Placement:
    if rem_node is not None:
        nodes = np.append(nodes, rem_node)
        per_gpus = np.append(per_gpus, r)
    order = np.argsort(nodes, kind="stable")
    return Placement(tuple(int(x) for x in nodes[order]), tuple(int(x) for x in per_gpus[order]))


def _in_one_domain(
    topo: Topology, free: np.ndarray, eligible: np.ndarray, gpus: int, dom: np.ndarray, n_dom: int
) -> Placement | None:
    full, partial, k, r = _split(topo, free, eligible, gpus)
    if k == 0:
        # Fits one node's size but no single node had room: spread over partial nodes.
        avail = np.bincount(dom, weights=np.where(eligible, free, 0), minlength=n_dom)
        ok = avail >= gpus
        if not ok.any():
            return None
        d = int(np.argmin(np.where(ok, avail, np.inf)))
        idx = np.flatnonzero(eligible & (dom == d) & (free > 0))
        idx = idx[np.argsort(-free[idx], kind="stable")]
        take = np.minimum(free[idx].astype(np.int64), gpus)
        cum = np.cumsum(take)
        m = int(np.searchsorted(cum, gpus)) + 1
        got = take[:m].copy()
        got[-1] -= int(cum[m - 1]) - gpus
        return _assemble(idx[:m], got, None, 0)
    full_count = np.bincount(dom[full], minlength=n_dom)
    if r:
        part_count = np.bincount(dom[partial], minlength=n_dom)
        ok = (full_count >= k + 1) | ((full_count >= k) & (part_count > 0))
    else:
        ok = full_count >= k
    if not ok.any():
        return None
    d = int(np.argmin(np.where(ok, full_count, _BIG)))
    in_d = dom == d
    full_idx = np.flatnonzero(full & in_d)
    chosen = full_idx[:k]
    rem_node = None
    if r:
        spare = np.zeros_like(full)
        spare[full_idx[k:]] = True
        rem_node = _pick_remainder(free, partial & in_d, spare, r)
    per = topo.node_gpus[chosen].astype(np.int64)
    return _assemble(chosen, per, rem_node, r)


def _across_blocks(
    topo: Topology, free: np.ndarray, eligible: np.ndarray, gpus: int
) -> Placement | None:
    full, partial, k, r = _split(topo, free, eligible, gpus)
    full_count = np.bincount(topo.node_block[full], minlength=topo.n_blocks)
    need_nodes = k + (1 if r and not partial.any() else 0)
    if int(full_count.sum()) < need_nodes or (
        r and not partial.any() and need_nodes > k and int(full_count.sum()) < k + 1
    ):
        return None
    order = np.argsort(-full_count, kind="stable")
    cum = np.cumsum(full_count[order])
    m = int(np.searchsorted(cum, k)) + 1 if k else 0
    blocks: list[int] = [int(b) for b in order[: max(m - 1, 0)]]
    if m:
        rest = k - (int(cum[m - 2]) if m >= 2 else 0)
        later = order[m - 1 :]
        cand = later[full_count[later] >= rest]
        blocks.append(int(cand[np.argmin(full_count[cand])]))
    in_blocks = np.isin(topo.node_block, np.asarray(blocks, dtype=topo.node_block.dtype))
    full_idx = np.flatnonzero(full & in_blocks)
    chosen = full_idx[:k]
    rem_node = None
    if r:
        spare = full.copy()
        spare[chosen] = False
        pin = partial & in_blocks
        rem_node = _pick_remainder(free, pin if pin.any() else partial, spare, r)
    per = topo.node_gpus[chosen].astype(np.int64)
    return _assemble(chosen, per, rem_node, r)
