"""Topology-aware gang placement: one entry point, pure and vectorised.

A gang that fits in one node takes one node (best fit: the fullest node that
still holds it). A larger gang takes whole free nodes plus at most one partial
node for the remainder, inside the smallest domain (NVLink domain, rack, fabric
block, or the whole cluster) with room among those its constraint allows,
choosing the domain with the least free capacity that holds it (best fit limits
fragmentation). Across blocks it takes the fewest blocks. Where NVLink domains
span several nodes (GB200 NVL72: 18 trays of 4 GPUs), a gang larger than one
domain takes whole free domains first and the rest from the fullest domain that
holds it, so it crosses as few NVLink domains as it can.

Where the topology holds several providers (Slurm clusters under one engine), the widest
level is one provider, never the whole topology: a gang never spans providers. A gang
wider than a fabric block takes the provider with the fewest whole free nodes that
holds it (best fit; the first among equals), and the fewest blocks inside it.

The caller passes ``free`` (GPUs free per node) and ``eligible`` (healthy, of
the right kind, no rival in the way). There are no per-GPU Python loops: each
call is a handful of NumPy operations over the node arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum
from typing import Literal, cast

import numpy as np

from cotenant.cluster.state import Placement
from cotenant.cluster.topology import Topology, Units
from cotenant.model.jobs import Constraint

_BIG = np.int32(1 << 30)


class Level(IntEnum):
    NODE = 0
    DOMAIN = 1  # one NVLink domain
    RACK = 2
    BLOCK = 3
    PROVIDER = 4  # one provider (a Slurm cluster of several); only where there are several
    ANY = 5


_MAX_LEVEL = {
    Constraint.NODE: Level.NODE,
    Constraint.DOMAIN: Level.DOMAIN,
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
    if not topo.domains_are_nodes and nodes <= topo.max_domain_nodes:
        return Level.DOMAIN
    if nodes <= topo.max_rack_nodes:
        return Level.RACK
    if nodes <= topo.max_block_nodes:
        return Level.BLOCK
    if topo.n_providers > 1 and nodes <= topo.max_provider_nodes:
        return Level.PROVIDER
    return Level.ANY


def widest_level(topo: Topology) -> Level:
    """The widest level a gang may take: one provider where there are several."""
    return Level.PROVIDER if topo.n_providers > 1 else Level.ANY


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
        hi = min(hi, widest_level(topo))
        got = topo.level_memo[key] = (lo, hi)
    return cast(tuple[Level, Level], got)


def levels_to_try(topo: Topology, gpus: int, constraint: Constraint) -> tuple[Level, ...]:
    """The levels ``level_range`` allows, in order, without those that add nothing here:
    the domain level where every domain is one node, the rack level where every rack is
    one domain (tried as a domain), the provider level where every provider is one block
    (or there is one provider), and a level whose largest domain is too small."""
    key = ("try", gpus, constraint)
    got = topo.level_memo.get(key)
    if got is None:
        lo, hi = level_range(topo, gpus, constraint)
        nodes = -(-gpus // topo.max_node_gpus)
        out: list[Level] = []
        for level in range(lo, hi + 1):
            if level == Level.DOMAIN and (topo.domains_are_nodes or nodes > topo.max_domain_nodes):
                continue
            if level == Level.RACK and (
                (topo.domains_are_racks and Level.DOMAIN in out) or nodes > topo.max_rack_nodes
            ):
                continue
            if level == Level.PROVIDER and (
                topo.n_providers == 1
                or (topo.providers_are_blocks and Level.BLOCK in out)
                or nodes > topo.max_provider_nodes
            ):
                continue
            out.append(Level(level))
        got = topo.level_memo[key] = tuple(out)
    return cast(tuple[Level, ...], got)


def could_ever_fit(topo: Topology, gpus: int, constraint: Constraint, capacity: int) -> str | None:
    """None if an empty cluster could hold the gang; else a reason a user can act on."""
    if gpus < 1:
        return "a job needs at least one GPU"
    if gpus > capacity:
        return f"needs {gpus} GPUs; the cluster (of its kind) has {capacity}"
    lo, hi = level_range(topo, gpus, constraint)
    if lo > hi:
        if hi == Level.PROVIDER and lo == Level.ANY:
            return f"{gpus} GPUs cannot fit inside one provider (a gang never spans providers)"
        return f"{gpus} GPUs cannot fit inside one {constraint.value}"
    return None


def never_fits(
    topo: Topology,
    gpus: int,
    constraint: Constraint,
    kind: str | None,
    providers: tuple[str, ...] = (),
) -> str | None:
    """``could_ever_fit`` for a job's shape on this topology, decided once per shape: the
    answer depends on the topology, the capacity of the kind and the providers the job
    accepts only, never on what runs or on node health, so it is kept for the topology's
    lifetime."""
    key = (gpus, constraint, kind, providers)
    memo = topo.fit_memo
    if key in memo:
        return memo[key]
    capacity = topo.capacity_of(kind)
    most = topo.provider_capacity_of(kind) if topo.n_providers > 1 else capacity
    only = topo.provider_nodes(providers) is not None
    if only:
        most = topo.provider_capacity_of(kind, providers)
    if only and 0 < gpus <= capacity and gpus > most:
        why: str | None = (
            f"needs {gpus} GPUs; the providers it accepts ({', '.join(providers)}) have at "
            f"most {most} (of its kind) in one"
        )
    elif 0 < gpus <= capacity and gpus > most:  # a gang never spans providers
        why = f"needs {gpus} GPUs; the largest provider (of its kind) has {most}"
    else:
        why = could_ever_fit(topo, gpus, constraint, capacity)
    memo[key] = why
    return why


def find_placement(
    topo: Topology,
    free: np.ndarray,
    eligible: np.ndarray,
    gpus: int,
    constraint: Constraint = Constraint.AUTO,
    unit_counts: Callable[[Level], np.ndarray | None] | None = None,
) -> Placement | None:
    """Where the gang goes (None: nowhere now). ``unit_counts``, where the caller keeps
    them, gives the whole free eligible nodes per unit of a level (None: not kept), so
    a gang inside one unit is placed without counting them over the cluster."""
    for level in levels_to_try(topo, gpus, constraint):
        if level == Level.NODE:
            p = _on_one_node(free, eligible, gpus)
        elif level == Level.ANY:
            p = _across_blocks(topo, free, eligible, gpus)
        elif level == Level.PROVIDER:
            p = _in_one_provider(topo, free, eligible, gpus)
        else:
            counts = None if unit_counts is None else unit_counts(level)
            got = (
                False
                if counts is None
                else in_one_unit_counted(topo, free, eligible, gpus, level, counts)
            )
            p = _in_one_domain(topo, free, eligible, gpus, level) if got is False else got
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
) -> tuple[np.ndarray, np.ndarray | None, int, int]:
    """Masks of whole free nodes and remainder candidates (None without a remainder),
    whole nodes needed, remainder."""
    full = eligible & (free == topo.node_gpus)
    if topo.uniform_node_gpus:
        per = topo.max_node_gpus
    else:
        per = int(topo.node_gpus[eligible].max()) if eligible.any() else topo.max_node_gpus
    k, r = divmod(gpus, per)
    partial = eligible & (free >= r) & ~full if r else None
    return full, partial, k, r


def _pick_remainder(
    free: np.ndarray, part_idx: np.ndarray, spare_idx: Callable[[], np.ndarray], r: int
) -> int:
    """Best-fit node for the remainder: a partial node if one holds it, else the first
    whole one to spare."""
    if part_idx.size:
        return int(part_idx[np.argmin(free[part_idx])])
    return int(spare_idx()[0])


def _by_domain(topo: Topology, full_idx: np.ndarray, k: int) -> np.ndarray:
    """``k`` of the whole free nodes ``full_idx`` (ascending), crossing as few NVLink
    domains as possible: the domains with the most of them first (whole free domains),
    then the rest from the domain that holds it with the fewest to spare (best fit)."""
    if k == 0:
        return full_idx[:0]
    # Node indices ascend within and across domains, so each domain's nodes are a run.
    doms, starts, counts = np.unique(
        topo.node_domain[full_idx], return_index=True, return_counts=True
    )
    if doms.size == 1:
        return full_idx[:k]
    order = np.argsort(-counts, kind="stable")
    cum = np.cumsum(counts[order])
    m = int(np.searchsorted(cum, k))  # domains order[:m] hold fewer than k; order[m] ends it
    rest = k - (int(cum[m - 1]) if m else 0)
    later = order[m:]
    cand = later[counts[later] >= rest]
    last = int(cand[np.argmin(counts[cand])])
    whole = np.zeros(doms.size, dtype=bool)
    whole[order[:m]] = True
    run = np.repeat(whole, counts)
    s0 = int(starts[last])
    return np.concatenate([full_idx[run], full_idx[s0 : s0 + rest]])


def _remainder_near(
    topo: Topology,
    free: np.ndarray,
    part_idx: np.ndarray,
    spare_idx: Callable[[], np.ndarray],
    chosen: np.ndarray,
    r: int,
) -> int:
    """``_pick_remainder``, inside the NVLink domains the gang already takes where it can."""
    if not topo.domains_are_nodes and chosen.size:
        used = np.zeros(topo.n_domains, dtype=bool)
        used[topo.node_domain[chosen]] = True
        near = part_idx[used[topo.node_domain[part_idx]]]
        if near.size:
            return _pick_remainder(free, near, spare_idx, r)
        if not part_idx.size:
            spare = spare_idx()
            spare_near = spare[used[topo.node_domain[spare]]]
            if spare_near.size:
                return int(spare_near[0])
    return _pick_remainder(free, part_idx, spare_idx, r)


def _assemble(nodes: np.ndarray, per_gpus: np.ndarray, rem_node: int | None, r: int) -> Placement:
    if rem_node is not None:
        nodes = np.append(nodes, rem_node)
        per_gpus = np.append(per_gpus, r)
    order = np.argsort(nodes, kind="stable")
    nodes, per_gpus = nodes[order].astype(np.int64), per_gpus[order].astype(np.int32)
    nodes.setflags(write=False)
    per_gpus.setflags(write=False)
    return Placement(tuple(nodes.tolist()), tuple(per_gpus.tolist()), (nodes, per_gpus))


def _count_runs(mask: np.ndarray, units: Units) -> np.ndarray:
    """True nodes in each unit. Summed as bytes where a unit has under 256 nodes (no
    overflow): about twice as fast as summing into wider integers."""
    if units.max_nodes < 256:
        got = np.add.reduceat(mask.view(np.uint8), units.start[:-1], dtype=np.uint8)
        return got.astype(np.int32)
    return np.add.reduceat(mask, units.start[:-1], dtype=np.int32)


def _in_one_domain(
    topo: Topology, free: np.ndarray, eligible: np.ndarray, gpus: int, level: Level
) -> Placement | None:
    # Each domain of a level is a run of consecutive nodes: its counts are sums over runs
    # (``reduceat``) and its nodes a slice, never a mask over the whole cluster.
    starts = topo.level_units(level).start
    heads = starts[:-1]
    full, partial, k, r = _split(topo, free, eligible, gpus)
    if k == 0:
        # Fits one node's size but no single node had room: spread over partial nodes.
        avail = np.add.reduceat(np.where(eligible, free, 0), heads, dtype=np.int64)
        ok = avail >= gpus
        if not ok.any():
            return None
        d = int(np.argmin(np.where(ok, avail, _BIG)))
        s0, s1 = int(starts[d]), int(starts[d + 1])
        fd = free[s0:s1]
        idx = np.flatnonzero(eligible[s0:s1] & (fd > 0))
        idx = idx[np.argsort(-fd[idx], kind="stable")]
        take = np.minimum(fd[idx].astype(np.int64), gpus)
        cum = np.cumsum(take)
        m = int(np.searchsorted(cum, gpus)) + 1
        got = take[:m].copy()
        got[-1] -= int(cum[m - 1]) - gpus
        return _assemble(idx[:m] + s0, got, None, 0)
    units = topo.level_units(level)
    full_count = _count_runs(full, units)
    if partial is not None:
        part_count = _count_runs(partial, units)
        ok = (full_count >= k + 1) | ((full_count >= k) & (part_count > 0))
    else:
        ok = full_count >= k
    if not ok.any():
        return None
    d = int(np.argmin(np.where(ok, full_count, _BIG)))
    return _take_in_unit(topo, free, eligible, level, d, k, r)


def in_one_unit_counted(
    topo: Topology,
    free: np.ndarray,
    eligible: np.ndarray,
    gpus: int,
    level: Level,
    full_count: np.ndarray,
) -> Placement | Literal[False] | None:
    """``_in_one_domain`` for a gang of at least one whole node on a cluster of one node
    size, given ``full_count`` (whole free eligible nodes per unit of ``level``, kept up
    to date by the caller) instead of counting them over the cluster. The same unit is
    chosen: the one with the fewest whole free nodes that holds the gang (a unit with
    exactly ``k`` needs a partial node for the remainder; the first among equals).
    False when many units would need their partial nodes looked at: ask the full pass."""
    k, r = divmod(gpus, topo.max_node_gpus)
    if k == 0 or not topo.uniform_node_gpus:
        return False
    starts = topo.level_units(level).start
    d: int | None = None
    if r:
        exact = np.flatnonzero(full_count == k)
        if exact.size > _UNITS_TO_LOOK_AT:
            return False
        size = topo.max_node_gpus
        for u in exact.tolist():
            s0, s1 = int(starts[u]), int(starts[u + 1])
            fs = free[s0:s1]
            if (eligible[s0:s1] & (fs >= r) & (fs != size)).any():
                d = u
                break
    if d is None:
        ok = np.flatnonzero(full_count >= k + (1 if r else 0))
        if not ok.size:
            return None
        d = int(ok[np.argmin(full_count[ok])])
    return _take_in_unit(topo, free, eligible, level, d, k, r)


_UNITS_TO_LOOK_AT = 16  # units with exactly enough whole nodes, checked for a remainder


def _take_in_unit(
    topo: Topology,
    free: np.ndarray,
    eligible: np.ndarray,
    level: Level,
    d: int,
    k: int,
    r: int,
) -> Placement:
    """``k`` whole free nodes (and a node for the remainder ``r``) inside unit ``d``."""
    starts = topo.level_units(level).start
    s0, s1 = int(starts[d]), int(starts[d + 1])
    fs, es = free[s0:s1], eligible[s0:s1]
    full_here = es & (fs == topo.node_gpus[s0:s1])
    full_idx = s0 + np.flatnonzero(full_here)
    if level == Level.DOMAIN or topo.domains_are_nodes:
        chosen = full_idx[:k]
    else:
        chosen = _by_domain(topo, full_idx, k)
    rem_node = None
    if r:
        part_idx = s0 + np.flatnonzero(es & (fs >= r) & ~full_here)
        rem_node = _remainder_near(
            topo, free, part_idx, lambda: np.setdiff1d(full_idx, chosen), chosen, r
        )
    per = topo.node_gpus[chosen].astype(np.int64)
    return _assemble(chosen, per, rem_node, r)


def _across_blocks(
    topo: Topology, free: np.ndarray, eligible: np.ndarray, gpus: int
) -> Placement | None:
    full, partial, k, r = _split(topo, free, eligible, gpus)
    full_count = _count_runs(full, topo.blocks)
    no_partial = partial is not None and not partial.any()
    need_nodes = k + (1 if no_partial else 0)
    if int(full_count.sum()) < need_nodes:
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
    picked = np.zeros(topo.n_blocks, dtype=bool)
    picked[blocks] = True
    in_blocks = np.repeat(picked, topo.block_nodes)
    full_idx = np.flatnonzero(full & in_blocks)
    chosen = full_idx[:k] if topo.domains_are_nodes else _by_domain(topo, full_idx, k)
    rem_node = None
    if partial is not None:
        part_idx = np.flatnonzero(partial & in_blocks)
        if not part_idx.size:
            part_idx = np.flatnonzero(partial)
        rem_node = _remainder_near(
            topo, free, part_idx, lambda: np.setdiff1d(np.flatnonzero(full), chosen), chosen, r
        )
    per = topo.node_gpus[chosen].astype(np.int64)
    return _assemble(chosen, per, rem_node, r)


def _in_one_provider(
    topo: Topology, free: np.ndarray, eligible: np.ndarray, gpus: int
) -> Placement | None:
    """A gang wider than a block, inside one provider: the provider with the fewest whole
    free nodes that holds it (the first among equals), across as few of its blocks as
    it can (``_across_blocks`` over that provider's nodes only)."""
    units = topo.providers
    full, partial, k, _ = _split(topo, free, eligible, gpus)
    full_count = _count_runs(full, units)
    if partial is not None:
        room = np.add.reduceat(np.where(eligible, free, 0), units.start[:-1], dtype=np.int64)
        ok = (full_count >= k) & (room >= gpus)
    else:
        ok = full_count >= k
    order = np.argsort(np.where(ok, full_count, _BIG), kind="stable")
    for d in order:
        if not ok[d]:
            break
        s0, s1 = int(units.start[d]), int(units.start[d + 1])
        inside = np.zeros_like(eligible)
        inside[s0:s1] = eligible[s0:s1]
        p = _across_blocks(topo, free, inside, gpus)
        if p is not None:
            return p
    return None
