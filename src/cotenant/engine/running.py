"""The running set (Kueue's cache of admitted work): the runs holding GPUs, in running
order (expected end, then id) with their frozen views for the snapshot; the ones being
reclaimed; and which jobs hold GPUs on each node (for the fault path)."""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from typing import TYPE_CHECKING

import numpy as np

from cotenant.scheduler.snapshot import RunningJob

if TYPE_CHECKING:
    from cotenant.engine.jobs import JobRun

RunKey = tuple[int, str]  # (expected end, job id)

# A run on more nodes than this keeps its nodes as one sorted array, searched when a node
# fails, instead of one set entry per node: a 262,144-GPU run holds 65,536 nodes, and
# starting or stopping it would otherwise touch 65,536 sets.
WIDE_RUN_NODES = 512


class RunningSet:
    def __init__(self) -> None:
        self.keys: list[RunKey] = []
        self.views: list[RunningJob] = []  # parallel to ``keys``
        self._views_tuple: tuple[RunningJob, ...] | None = ()  # kept until the set changes
        self._key_of: dict[str, RunKey] = {}  # each run's key, as it was added
        self._reclaiming: dict[RunKey, RunningJob] = {}
        self._reclaiming_tuple: tuple[RunningJob, ...] | None = ()
        self._node_jobs: dict[int, set[str]] = defaultdict(set)
        self._wide: dict[str, np.ndarray] = {}  # job id -> its nodes, ascending
        self._wide_on = np.zeros(0, dtype=np.int16)  # wide runs holding each node

    def __len__(self) -> int:
        return len(self.keys)

    def __bool__(self) -> bool:
        return bool(self.keys)

    def add(self, run: JobRun) -> None:
        """Take the run's current view, at its place in running order."""
        view = run.running_view()
        key = (view.expected_end_s, run.id)
        self._key_of[run.id] = key
        i = bisect_left(self.keys, key)
        self.keys.insert(i, key)
        self.views.insert(i, view)
        self._views_tuple = None
        if view.reclaiming:
            self._reclaiming[key] = view
            self._reclaiming_tuple = None

    def remove(self, run: JobRun) -> None:
        """Drop the run's view (at the place it was added in)."""
        key = self._key_of.pop(run.id, None)
        if key is None:
            return
        i = bisect_left(self.keys, key)
        if i < len(self.keys) and self.keys[i] == key:
            del self.keys[i]
            del self.views[i]
            self._views_tuple = None
            if self._reclaiming.pop(key, None) is not None:
                self._reclaiming_tuple = None

    def as_tuple(self) -> tuple[RunningJob, ...]:
        """The views in running order (kept until the set changes)."""
        got = self._views_tuple
        if got is None:
            got = self._views_tuple = tuple(self.views)
        return got

    def reclaiming(self) -> tuple[RunningJob, ...]:
        """The runs being reclaimed, in running order."""
        if self._reclaiming_tuple is None:
            self._reclaiming_tuple = tuple(self._reclaiming[k] for k in sorted(self._reclaiming))
        return self._reclaiming_tuple

    # -- nodes ----------------------------------------------------------------------------
    def hold_nodes(self, run: JobRun) -> None:
        assert run.placement is not None
        nodes, job_id = run.placement.nodes, run.id
        if len(nodes) > WIDE_RUN_NODES:
            arr = self._wide[job_id] = run.placement.arrays()[0]  # ascending, no repeats
            if self._wide_on.size <= arr[-1]:
                grown = np.zeros(max(int(arr[-1]) + 1, 2 * self._wide_on.size), np.int16)
                grown[: self._wide_on.size] = self._wide_on
                self._wide_on = grown
            self._wide_on[arr] += 1
            return
        for n in nodes:
            self._node_jobs[n].add(job_id)

    def free_nodes(self, run: JobRun) -> None:
        assert run.placement is not None
        nodes, job_id = run.placement.nodes, run.id
        arr = self._wide.pop(job_id, None)
        if arr is not None:
            self._wide_on[arr] -= 1
            return
        for n in nodes:
            self._node_jobs[n].discard(job_id)

    def ids_on_node(self, node: int) -> list[str]:
        """The jobs holding GPUs on ``node``, by id."""
        ids = self._node_jobs.get(node)
        out = set(ids) if ids else set()
        if node >= self._wide_on.size or not self._wide_on[node]:
            return sorted(out)
        for job_id, nodes in self._wide.items():
            i = int(np.searchsorted(nodes, node))
            if i < nodes.size and nodes[i] == node:
                out.add(job_id)
        return sorted(out)
