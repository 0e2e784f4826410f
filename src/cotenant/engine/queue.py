"""The pending queue: jobs waiting to start, kept in queue order incrementally.

Queue order is priority (highest first), then the time the job was queued (its submit
time, or the time it was last preempted), then its submit time, then its id. The queue
keeps, beside the order, what a cycle asks of it without walking it: each tenant's own
queue (cached as a tuple until it changes), the GPUs each tenant asks for, and the jobs
no empty cluster could hold (decided once per job shape, when the job is queued). What a
snapshot reads of it (the queue as a tuple, the jobs that never fit, the waiting tenants,
each tenant's queue) is kept until the queue changes, so a cycle after one that changed
nothing in the queue builds none of it again.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Mapping
from types import MappingProxyType

from cotenant.cluster.topology import Topology
from cotenant.engine.jobs import JobRun
from cotenant.model.errors import InvariantBroken
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
        self._key_of: dict[str, Key] = {}  # each queued job's key, as it was queued
        # What a snapshot reads, kept until the queue changes (None: to build anew).
        self._views_tuple: tuple[PendingJob, ...] | None = None
        self._never_fit_frozen: frozenset[str] | None = None
        self._waiting: frozenset[str] | None = None
        self._by_tenant: Mapping[str, tuple[PendingJob, ...]] | None = None
        self._queues: dict[str, tuple[PendingJob, ...]] = {}  # waiting tenants' queues
        self._stale: set[str] = set()  # tenants whose entry in ``_queues`` is out of date

    def __len__(self) -> int:
        return len(self.keys)

    def __bool__(self) -> bool:
        return bool(self.keys)

    def _find(self, keys: list[Key], key: Key) -> int:
        i = bisect_left(keys, key)
        return i if i < len(keys) and keys[i] == key else -1

    def __contains__(self, run: JobRun) -> bool:
        return run.id in self._key_of

    def add(self, run: JobRun) -> None:
        key, view, tenant = queue_key(run), run.pending_view(), run.tenant
        if run.id in self._key_of:
            raise InvariantBroken(f"job {run.id!r} is queued twice")
        self._key_of[run.id] = key
        i = bisect_left(self.keys, key)
        self.keys.insert(i, key)
        self.views.insert(i, view)
        tk = self._tenant_keys[tenant]
        j = bisect_left(tk, key)
        tk.insert(j, key)
        self._tenant_views[tenant].insert(j, view)
        self._tenant_tuple.pop(tenant, None)
        self._stale.add(tenant)
        self.gpus[tenant] += run.spec.gpus
        spec = run.spec
        why = never_fits(self.topo, spec.gpus, spec.constraint, spec.accelerator, spec.providers)
        if why is not None:
            self.never_fit.add(run.id)
            self._never_fit_frozen = None
        self._changed(len(tk) == 1)

    def remove(self, run: JobRun) -> bool:
        """Take the job out of the queue; False if it was not in it."""
        key = self._key_of.pop(run.id, None)
        if key is None:
            return False
        i = self._find(self.keys, key)
        del self.keys[i]
        del self.views[i]
        tk = self._tenant_keys[run.tenant]
        j = bisect_left(tk, key)
        del tk[j]
        del self._tenant_views[run.tenant][j]
        self._tenant_tuple.pop(run.tenant, None)
        self._stale.add(run.tenant)
        self.gpus[run.tenant] -= run.spec.gpus
        if run.id in self.never_fit:
            self.never_fit.discard(run.id)
            self._never_fit_frozen = None
        self._changed(not tk)
        return True

    def refresh(self, run: JobRun) -> None:
        """The job's view changed (e.g. a promise): take its new view, same place."""
        key = self._key_of.get(run.id)
        if key is None:
            return
        i = self._find(self.keys, key)
        run.touch()
        view = run.pending_view()
        self.views[i] = view
        tk = self._tenant_keys[run.tenant]
        self._tenant_views[run.tenant][bisect_left(tk, key)] = view
        self._tenant_tuple.pop(run.tenant, None)
        self._stale.add(run.tenant)
        self._changed(False)

    def _changed(self, tenants: bool) -> None:
        """The queue changed (``tenants``: and so did the set of waiting tenants)."""
        self._views_tuple = None
        self._by_tenant = None
        if tenants:
            self._waiting = None

    def as_tuple(self) -> tuple[PendingJob, ...]:
        """The queue's views in order (kept until the queue changes)."""
        got = self._views_tuple
        if got is None:
            got = self._views_tuple = tuple(self.views)
        return got

    def never_fit_ids(self) -> frozenset[str]:
        """The queued jobs no empty cluster could hold (kept until that set changes)."""
        got = self._never_fit_frozen
        if got is None:
            got = self._never_fit_frozen = frozenset(self.never_fit)
        return got

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
        got = self._waiting
        if got is None:
            got = self._waiting = frozenset(t for t, keys in self._tenant_keys.items() if keys)
        return got

    def of_tenant(self, tenant: str) -> tuple[PendingJob, ...]:
        got = self._tenant_tuple.get(tenant)
        if got is None:
            got = self._tenant_tuple[tenant] = tuple(self._tenant_views.get(tenant, ()))
        return got

    def by_tenant(self) -> Mapping[str, tuple[PendingJob, ...]]:
        """Each waiting tenant's own queue, in queue order (read-only: kept until the queue
        changes; each tenant's tuple until its own queue changes)."""
        got = self._by_tenant
        if got is None:
            queues = self._queues
            for t in self._stale:
                if self._tenant_keys.get(t):
                    queues[t] = self.of_tenant(t)
                else:
                    queues.pop(t, None)
            self._stale.clear()
            # (a copy: a snapshot keeps the queues of its instant)
            got = self._by_tenant = MappingProxyType(
                {t: queues[t] for t in self._tenant_keys if t in queues}
            )
        return got

    def counts(self) -> dict[str, int]:
        return {t: len(keys) for t, keys in self._tenant_keys.items() if keys}
