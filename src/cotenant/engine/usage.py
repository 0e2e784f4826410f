"""The usage meter: each run's open allocation interval, closed into the ledger.

An interval opens when a run starts (or is retagged between owned and borrowed) and
closes when it stops or is retagged again; a closed interval is one ``UsageRecord``.
What the intervals sum to is what metering bills: allocated GPU-seconds, no more.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

from cotenant.cluster.topology import Topology
from cotenant.metering.ledger import COMPACT_NODES, NodeRuns, UsageLedger, UsageRecord

if TYPE_CHECKING:
    from cotenant.engine.jobs import JobRun


class UsageMeter:
    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self.ledger = UsageLedger()  # the composition root may swap in a recording one
        self._open: dict[str, tuple[int, bool]] = {}

    def open(self, job_id: str, since_s: int, borrowed: bool) -> None:
        """Open (or reopen) the job's interval from ``since_s``."""
        self._open[job_id] = (since_s, borrowed)

    def close(self, run: JobRun, now: int) -> None:
        """Close the run's open interval at ``now``; an empty one records nothing."""
        start, borrowed = self._open.pop(run.id)
        p = run.placement
        if now > start and p is not None:
            nodes = p.nodes if len(p.nodes) <= COMPACT_NODES else NodeRuns(p.arrays()[0])
            self.ledger.append(
                UsageRecord(
                    run.id,
                    run.tenant,
                    run.spec.gpus,
                    self.topo.kind_of_node(p.nodes[0]),
                    nodes,
                    start,
                    now,
                    borrowed,
                    run.spec.kind.value,
                )
            )

    def open_intervals(self) -> Mapping[str, tuple[int, bool]]:
        """Intervals still open, by job: (since, borrowed). Read-only."""
        return MappingProxyType(self._open)
