"""The reclaims under way in one scheduling cycle, for a policy that hastens them.

A reclaim frees room at its deadline. A job with a shorter grace that relies on that
room moves the deadline up; to know what it relies on, the policy needs every reclaim
under way: those in the snapshot and those it decided earlier in the same cycle.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import cast

from cotenant.scheduler.snapshot import RunningJob, Snapshot
from cotenant.scheduler.workspace import Workspace


class ReclaimsUnderWay:
    """The cycle's reclaims: those the snapshot shows and those decided so far in this
    cycle, by node in deadline order, with each one's current deadline."""

    def __init__(self, snap: Snapshot) -> None:
        self._by_node: defaultdict[int, list[RunningJob]] = defaultdict(list)
        self._deadline: dict[str, int] = {}
        for r in snap.reclaiming_runs():
            self._deadline[r.spec.id] = r.reclaim_deadline_s or 0
            for n in r.placement.nodes:
                self._by_node[n].append(r)
        for runs in self._by_node.values():
            runs.sort(key=self._order)
        self._runs: dict[str, RunningJob] = {r.spec.id: r for r in snap.reclaiming_runs()}

    def _order(self, r: RunningJob) -> tuple[int, str]:
        return (self._deadline[r.spec.id], r.spec.id)

    def add(self, r: RunningJob, deadline: int) -> None:
        """A run reclaimed in this cycle, or a reclaim whose deadline is moved up."""
        known = r.spec.id in self._deadline
        self._deadline[r.spec.id] = min(deadline, self._deadline.get(r.spec.id, deadline))
        self._runs[r.spec.id] = r
        for n in r.placement.nodes:
            runs = self._by_node[n]
            if not known:
                runs.append(r)
            runs.sort(key=self._order)

    def on_node(self, node: int) -> list[RunningJob]:
        return self._by_node.get(node, [])

    def runs(self) -> Iterator[RunningJob]:
        return iter(self._runs.values())

    def deadline(self, r: RunningJob) -> int:
        return self._deadline[r.spec.id]


def reclaims_under_way(snap: Snapshot, ws: Workspace) -> ReclaimsUnderWay:
    """The cycle's record, kept in the workspace's per-cycle memos."""
    got = ws.cache.get("reclaims-under-way")
    if got is None:
        got = ws.cache["reclaims-under-way"] = ReclaimsUnderWay(snap)
    return cast(ReclaimsUnderWay, got)
