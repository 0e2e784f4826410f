"""The pending queue: jobs waiting to start, kept in queue order incrementally.

Queue order is priority (highest first), then the time the job was queued (its submit
time, or the time it was last preempted), then its submit time, then its id. The queue
keeps, beside the order, what a cycle asks of it without walking it: each tenant's own
queue (cached as a tuple until it changes), the GPUs each tenant asks for, and the jobs
no empty cluster could hold (decided once per job shape, when the job is queued).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Mapping

from cotenant.cluster.topology import Topology
from cotenant.engine.jobs import JobRun
from cotenant.scheduler.placement import never_fits
from cotenant.scheduler.snapshot import PendingJob

Key = tuple[int, int, int, str]


def queue_key(run: JobRun) -> Key:
    return (-run.spec.priority, run.queued_since_s, run.spec.submit_s, run.id)


class PendingQueue:
    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self.keys: list[Key] = []  # queue order
        self.views: list[PendingJob] = []  # the jobs' frozen views, parallel to ``keys``
        self._tenant_keys: dict[str, list[Key]] = defaultdict(list)
        self._tenant_views: dict[str, list[PendingJob]] = defaultdict(list)
        self._tenant_tuple: dict[str, tuple[PendingJob, ...]] = {}
        self.gpus: dict[str, int] = defaultdict(int)  # GPUs asked for, per tenant
        self.never_fit: set[str] = set()  # queued jobs no empty cluster could hold

    def __len__(self) -> int:
        return len(self.keys)

    def __bool__(self) -> bool:
        return bool(self.keys)

    def _find(self, keys: list[Key], key: Key) -> int:
        i = bisect_left(keys, key)
        return i if i < len(keys) and keys[i] == key else -1

    def __contains__(self, run: JobRun) -> bool:
        return self._find(self.keys, queue_key(run)) >= 0

    def add(self, run: JobRun) -> None:
        key, view, tenant = queue_key(run), run.pending_view(), run.tenant
        i = bisect_left(self.keys, key)
        self.keys.insert(i, key)
        self.views.insert(i, view)
        tk = self._tenant_keys[tenant]
        j = bisect_left(tk, key)
        tk.insert(j, key)
        self._tenant_views[tenant].insert(j, view)
        self._tenant_tuple.pop(tenant, None)
        self.gpus[tenant] += run.spec.gpus
        spec = run.spec
        if never_fits(self.topo, spec.gpus, spec.constraint, spec.accelerator) is not None:
            self.never_fit.add(run.id)

    def remove(self, run: JobRun) -> bool:
        """Take the job out of the queue; False if it was not in it."""
        key = queue_key(run)
        i = self._find(self.keys, key)
        if i < 0:
            return False
        del self.keys[i]
        del self.views[i]
        tk = self._tenant_keys[run.tenant]
        j = bisect_left(tk, key)
        del tk[j]
        del self._tenant_views[run.tenant][j]
        self._tenant_tuple.pop(run.tenant, None)
        self.gpus[run.tenant] -= run.spec.gpus
        self.never_fit.discard(run.id)
        return True

    def refresh(self, run: JobRun) -> None:
        """The job's view changed (e.g. a promise): take its new view, same place."""
        key = queue_key(run)
        i = self._find(self.keys, key)
        if i < 0:
            return
        run.touch()
        view = run.pending_view()
        self.views[i] = view
        tk = self._tenant_keys[run.tenant]
        self._tenant_views[run.tenant][bisect_left(tk, key)] = view
        self._tenant_tuple.pop(run.tenant, None)

    def head_key(self, index: int) -> Key | None:
        return self.keys[index] if 0 <= index < len(self.keys) else None

    # -- per tenant -----------------------------------------------------------------------
    def tenant_keys(self, tenant: str) -> list[Key] | None:
        """The tenant's queue keys in order (None if the tenant never queued a job)."""
        return self._tenant_keys.get(tenant)

    def tenants_seen(self) -> list[str]:
        """Every tenant that ever queued a job, in first-seen order."""
        return list(self._tenant_keys)

    def tenants_waiting(self) -> frozenset[str]:
        return frozenset(t for t, keys in self._tenant_keys.items() if keys)

    def of_tenant(self, tenant: str) -> tuple[PendingJob, ...]:
        got = self._tenant_tuple.get(tenant)
        if got is None:
            got = self._tenant_tuple[tenant] = tuple(self._tenant_views.get(tenant, ()))
        return got

    def by_tenant(self) -> Mapping[str, tuple[PendingJob, ...]]:
        """Each waiting tenant's own queue, in queue order (tuples cached until changed)."""
        return {t: self.of_tenant(t) for t, keys in self._tenant_keys.items() if keys}

    def counts(self) -> dict[str, int]:
        return {t: len(keys) for t, keys in self._tenant_keys.items() if keys}
