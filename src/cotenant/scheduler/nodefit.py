"""Best fit of a gang on one node, and whole free nodes per unit (rack, block, NVLink
domain), kept up to date as a cycle's placements change the free GPUs, instead of a
pass over every node for every job.

``placement._on_one_node`` answers "the eligible node with the fewest free GPUs that
still holds the gang (the lowest index among equals)" with NumPy over the whole
cluster: about 25 us at 12,500 nodes, for each of the thousands of small jobs a busy
cycle places. ``NodeFit`` keeps the usable nodes in buckets by free GPUs, each bucket in
node order, so the same answer is the first eligible node of the first bucket at or
above the gang's size: a few list reads. A placement moves the nodes it touches
between buckets. The answer is exactly ``_on_one_node``'s (a test compares them).

A node the tenant may not use (a rival holds GPUs there, another accelerator kind) is
skipped as the buckets are read; after ``SCAN_LIMIT`` skips the caller falls back to
the NumPy pass, so a cluster where few nodes are open to a tenant costs no more than
before.
"""

from __future__ import annotations

from bisect import bisect_left, insort

import numpy as np

from cotenant.cluster.topology import Units

SCAN_LIMIT = 64  # nodes skipped (not eligible) before giving up for the NumPy pass
ASK_NUMPY = -1


class NodeFit:
    def __init__(self, free: np.ndarray, usable: np.ndarray, max_gpus: int) -> None:
        known = np.where(usable, free, -1).astype(np.int16)  # -1: not usable
        # Each bucket holds its nodes negated, ascending: the lowest node (the best fit
        # among equals, so the first taken) is last, where taking it out moves nothing.
        # Bucket 0 stays empty: a node with nothing free holds no gang.
        self.buckets: list[list[int]] = [[]] + [
            (-np.flatnonzero(known == v)[::-1]).tolist() for v in range(1, max_gpus + 1)
        ]
        self.known: list[int] = known.tolist()  # read node by node: Python ints

    def find(self, eligible: np.ndarray, gpus: int) -> int | None:
        """The best-fit node for ``gpus`` among ``eligible`` (a subset of the usable
        nodes); None if no node holds it; ``ASK_NUMPY`` (-1) if too many nodes were not
        eligible to tell cheaply."""
        skipped = 0
        for bucket in self.buckets[gpus:]:
            for neg in reversed(bucket):
                if eligible[-neg]:
                    return -neg
                skipped += 1
                if skipped > SCAN_LIMIT:
                    return ASK_NUMPY
        return None

    def moved(self, node: int, free: int) -> None:
        """Node ``node`` now has ``free`` GPUs free (a node out of service stays out)."""
        old = self.known[node]
        if old < 0 or old == free:
            return
        if old:
            bucket = self.buckets[old]
            del bucket[bisect_left(bucket, -node)]
        if free:
            insort(self.buckets[free], -node)
        self.known[node] = free


class FullCounts:
    """Whole free nodes per unit of one level among the nodes of ``base`` (in service, of
    a kind, on the providers a job accepts), on a cluster of one node size: what
    ``placement.in_one_unit_counted`` reads. A whole free node holds nobody's GPUs, so no
    rival kept a node apart closes it: for a tenant with no rival kept a rack apart these
    are its eligible whole free nodes. Per node, Python bytes (a node's move is read on
    every start; only a node filling or emptying changes a count)."""

    def __init__(
        self, free: np.ndarray, base: np.ndarray, units: Units, of_node: list[int], size: int
    ) -> None:
        full = base & (free == size)
        self.size = size
        self.of_node = of_node
        self.base = bytearray(np.asarray(base, dtype=bool).tobytes())
        self.full = bytearray(full.tobytes())
        self.count = np.add.reduceat(full, units.start[:-1], dtype=np.int32)

    def moved(self, node: int, free: int) -> None:
        """Node ``node`` now has ``free`` GPUs free."""
        full = free == self.size
        if full != self.full[node] and self.base[node]:
            self.full[node] = full
            self.count[self.of_node[node]] += 1 if full else -1
