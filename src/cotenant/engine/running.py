"""The running set (Kueue's cache of admitted work): the runs holding GPUs, in running
order (expected end, then id) with their frozen views for the snapshot; the ones being
reclaimed; and which jobs hold GPUs on each node (for the fault path)."""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from typing import TYPE_CHECKING

from cotenant.scheduler.snapshot import RunningJob

if TYPE_CHECKING:
    from cotenant.engine.jobs import JobRun

RunKey = tuple[int, str]  # (expected end, job id)


class RunningSet:
    def __init__(self) -> None:
        self.keys: list[RunKey] = []
        self.views: list[RunningJob] = []  # parallel to ``keys``
        self._reclaiming: dict[RunKey, RunningJob] = {}
        self._reclaiming_tuple: tuple[RunningJob, ...] | None = ()
        self._node_jobs: dict[int, set[str]] = defaultdict(set)

    def __len__(self) -> int:
        return len(self.keys)

    def __bool__(self) -> bool:
        return bool(self.keys)

    def add(self, run: JobRun) -> None:
        """Take the run's current view, at its place in running order."""
        key = (run.expected_end_s(), run.id)
        i = bisect_left(self.keys, key)
        self.keys.insert(i, key)
        view = run.running_view()
        self.views.insert(i, view)
        if view.reclaiming:
            self._reclaiming[key] = view
            self._reclaiming_tuple = None

    def remove(self, run: JobRun) -> None:
        """Drop the run's view (call before its expected end or state changes)."""
        key = (run.expected_end_s(), run.id)
        i = bisect_left(self.keys, key)
        if i < len(self.keys) and self.keys[i] == key:
            del self.keys[i]
            del self.views[i]
            if self._reclaiming.pop(key, None) is not None:
                self._reclaiming_tuple = None

    def reclaiming(self) -> tuple[RunningJob, ...]:
        """The runs being reclaimed, in running order."""
        if self._reclaiming_tuple is None:
            self._reclaiming_tuple = tuple(self._reclaiming[k] for k in sorted(self._reclaiming))
        return self._reclaiming_tuple

    # -- nodes ----------------------------------------------------------------------------
    def hold_nodes(self, run: JobRun) -> None:
        assert run.placement is not None
        for n in run.placement.nodes:
            self._node_jobs[n].add(run.id)

    def free_nodes(self, run: JobRun) -> None:
        assert run.placement is not None
        for n in run.placement.nodes:
            self._node_jobs[n].discard(run.id)

    def ids_on_node(self, node: int) -> list[str]:
        """The jobs holding GPUs on ``node``, by id."""
        ids = self._node_jobs.get(node)
        return sorted(ids) if ids else []
