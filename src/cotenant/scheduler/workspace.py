"""A policy's scratch copy of the cluster, for trying placements before deciding.

Two views: ``now`` (what is free at this instant) and ``future`` (what will be
free once the borrowers already told to checkpoint have stopped, minus what has
been promised to the jobs waiting for them). A job may start now only on GPUs
free in both views; a job waiting for a reclaim holds its promise in ``future``.
While nothing is being reclaimed the two views are one and cost nothing extra.

It also remembers, per tenant and domain range, the smallest gang that did not
fit: a larger one cannot fit either until something is released, so a long queue
costs one placement attempt per distinct size, not one per job.

The ``now`` view is the snapshot's own state until the first change: a cycle that
places nothing (strict FIFO's blocked head, a full cluster) copies nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import cast

import numpy as np

from cotenant.cluster.state import ClusterState, Placement
from cotenant.model.jobs import JobSpec
from cotenant.scheduler.nodefit import FullCounts, NodeFit
from cotenant.scheduler.placement import Level, find_placement, level_range
from cotenant.scheduler.snapshot import Snapshot, blocked_nodes

_NOW, _FUTURE = 0, 1
_MISSING = object()  # not yet in a memo
FIT_AFTER_ASKS = 8  # one-node placements asked in a cycle before building the buckets


class Workspace:
    def __init__(self, snap: Snapshot, reclaiming: Iterable[tuple[str, Placement]] = ()) -> None:
        self.snap = snap
        self.topo = snap.state.topo
        self._now = snap.state  # the snapshot's, read-only, until the first change
        self._own = False
        self.future: ClusterState | None = None
        self._usable = snap.state.usable()
        # Keys name a job's kind and the providers it accepts (``()``: any).
        self._kind_mask: dict[tuple[str | None, tuple[str, ...]], np.ndarray] = {}
        self._blocked: dict[tuple[int, str], np.ndarray | None] = {}
        self._eligible: dict[
            tuple[int, str, str | None, tuple[str, ...]],
            tuple[tuple[np.ndarray | None, ...], np.ndarray],
        ] = {}
        self._failed: dict[tuple[int, str, str | None, tuple[str, ...], int, int], int] = {}
        self.cache: dict[str, object] = {}  # per-cycle memos a policy may keep here
        self.version = 0  # bumped by every change, so memos can tell they are stale
        self._room_upper: dict[str | None, tuple[int, int]] = {}
        self._fit: NodeFit | None = None  # the ``now`` view's best fit on one node, if built
        self._one_node_asks = 0
        # Whole free nodes per unit, by (level, kind, providers), once asked for twice.
        self._counts: dict[tuple[int, str | None, tuple[str, ...]], FullCounts] = {}
        self._count_asks: dict[tuple[int, str | None, tuple[str, ...]], int] = {}
        for tenant, p in reclaiming:
            self.release_future(tenant, p)

    @property
    def now(self) -> ClusterState:
        """What is free at this instant (read-only: change it through the methods below)."""
        return self._now

    def _changing_now(self) -> ClusterState:
        """The ``now`` view to change: the snapshot's state copied on the first change."""
        if not self._own:
            self._now = self._now.copy()
            self._own = True
        return self._now

    def free_total(self) -> int:
        """GPUs free now on nodes that may take new work. With every node healthy, that is
        the capacity less what is held (no pass over the nodes)."""
        now = self._now
        if now.down_gpus() == 0:
            return self.topo.total_gpus - now.held
        return int(now.free[self._usable].sum())

    # -- masks ----------------------------------------------------------------------------
    def base(self, kind: str | None, providers: tuple[str, ...] = ()) -> np.ndarray:
        """Nodes in service of the kind (None: any), on the providers a job accepts (none
        named: all); rivals not yet taken out. Read-only, kept for the cycle."""
        m = self._kind_mask.get((kind, providers))
        if m is None:
            only = self.topo.job_nodes(kind, providers)
            m = self._usable if only is None else self._usable & only
            self._kind_mask[(kind, providers)] = m
        return m

    def _blocked_in(self, view: int, tenant: str) -> np.ndarray | None:
        key = (view, tenant)
        got = self._blocked.get(key, _MISSING)
        if got is _MISSING:
            state = self.now if view == _NOW or self.future is None else self.future
            got = self._blocked[key] = blocked_nodes(state, tenant, self.snap.rivals)
        return cast(np.ndarray | None, got)

    def blocked_now(self, tenant: str) -> np.ndarray | None:
        """Nodes closed to the tenant now by its rivals (None: it has none); kept per cycle."""
        return self._blocked_in(_NOW, tenant)

    def eligible(
        self, tenant: str, kind: str | None, view: int = _NOW, providers: tuple[str, ...] = ()
    ) -> np.ndarray:
        """Nodes the tenant may take (read-only). Kept while the rival masks it is made of
        are the same objects (they are replaced whenever a rival's holdings change)."""
        if view == _NOW and self.future is not None:
            parts: tuple[np.ndarray | None, ...] = (
                self._blocked_in(_NOW, tenant),
                self._blocked_in(_FUTURE, tenant),
            )
        else:
            parts = (self._blocked_in(view, tenant),)
        key = (view, tenant, kind, providers)
        got = self._eligible.get(key)
        if got is not None:
            kept = got[0]
            if len(kept) == 1 == len(parts):
                if kept[0] is parts[0]:
                    return got[1]
            elif len(kept) == len(parts) and all(a is b for a, b in zip(kept, parts, strict=True)):
                return got[1]
        mask = self.base(kind, providers)
        for b in parts:
            if b is not None:
                mask = mask & ~b
        self._eligible[key] = (parts, mask)
        return mask

    def _free(self, view: int) -> np.ndarray:
        if self.future is None:
            return self.now.free
        if view == _FUTURE:
            return self.future.free
        return np.minimum(self.now.free, self.future.free)

    # -- placement ------------------------------------------------------------------------
    def _try(self, job: JobSpec, view: int) -> Placement | None:
        lo, hi = level_range(self.topo, job.gpus, job.constraint)
        key = (view, job.tenant, job.accelerator, job.providers, int(lo), int(hi))
        smallest_failed = self._failed.get(key)
        if smallest_failed is not None and job.gpus >= smallest_failed:
            return None
        if view == _NOW and lo == Level.NODE and self._use_fit():
            node = (self._fit or self._node_fit()).find(
                self.eligible(job.tenant, job.accelerator, view, job.providers), job.gpus
            )
            if node is not None and node >= 0:
                return Placement((node,), (job.gpus,))
            if node is None and hi == Level.NODE:
                self._failed[key] = (
                    job.gpus if smallest_failed is None else min(smallest_failed, job.gpus)
                )
                return None
        p = find_placement(
            self.topo,
            self._free(view),
            self.eligible(job.tenant, job.accelerator, view, job.providers),
            job.gpus,
            job.constraint,
            self._unit_counts(job) if view == _NOW else None,
        )
        if p is None:
            self._failed[key] = (
                job.gpus if smallest_failed is None else min(smallest_failed, job.gpus)
            )
        return p

    def try_now(self, job: JobSpec) -> Placement | None:
        return self._try(job, _NOW)

    def try_future(self, job: JobSpec) -> Placement | None:
        return self._try(job, _FUTURE) if self.future is not None else self._try(job, _NOW)

    def still_fits(self, job: JobSpec, p: Placement, now: bool) -> bool:
        """Whether a remembered placement is still free (now, or once reclaims finish)."""
        view = _NOW if now else _FUTURE
        free = self._free(view) if now or self.future is not None else self.now.free
        nodes, gpus = p.arrays()
        if np.any(free[nodes] < gpus):
            return False
        return bool(self.eligible(job.tenant, job.accelerator, view, job.providers)[nodes].all())

    def known_not_to_fit(self, job: JobSpec) -> bool:
        """True when a gang no larger already failed in this cycle (cheap skip)."""
        lo, hi = level_range(self.topo, job.gpus, job.constraint)
        got = self._failed.get((_NOW, job.tenant, job.accelerator, job.providers, int(lo), int(hi)))
        return got is not None and job.gpus >= got

    def _unit_counts(self, job: JobSpec) -> Callable[[Level], np.ndarray | None] | None:
        """Whole free nodes per unit for the job's placement in the ``now`` view, where they
        are its eligible ones (no rival kept a rack apart; one node size); None: not kept."""
        rivals = self.snap.rivals.get(job.tenant)
        if (rivals and rivals[1]) or not self.topo.uniform_node_gpus:
            return None

        def counts(level: Level) -> np.ndarray | None:
            key = (int(level), job.accelerator, job.providers)
            got = self._counts.get(key)
            if got is None:
                asks = self._count_asks[key] = self._count_asks.get(key, 0) + 1
                if asks < 2:  # a cycle that places one such gang counts once, as before
                    return None
                got = self._counts[key] = FullCounts(
                    self._free(_NOW),
                    self.base(job.accelerator, job.providers),
                    self.topo.level_units(level),
                    self.topo.unit_of_node(level),
                    self.topo.max_node_gpus,
                )
            return got.count

        return counts

    def _use_fit(self) -> bool:
        """Whether to answer from the best-fit buckets: once a cycle has asked for enough
        one-node placements that building them costs less than a pass per question (a
        cycle that places one job on a small cluster never builds them)."""
        if self._fit is not None:
            return True
        self._one_node_asks += 1
        return self._one_node_asks > FIT_AFTER_ASKS

    def _node_fit(self) -> NodeFit:
        fit = self._fit
        if fit is None:
            fit = self._fit = NodeFit(self._free(_NOW), self._usable, self.topo.max_node_gpus)
        return fit

    def _fit_touched(self, p: Placement | None) -> None:
        """Keep the best-fit buckets and the counts per unit in step with the ``now``
        view's free GPUs on the nodes a change touched (a wide change drops them, to be
        built again when next asked)."""
        fit, counts = self._fit, self._counts
        if p is None or (fit is None and not counts):
            return
        if len(p.nodes) > 64:  # moving more costs more than building them again
            self._fit = None
            counts.clear()
            return
        now, future = self._now.free, None if self.future is None else self.future.free
        for n in p.nodes:
            free = now.item(n) if future is None else min(now.item(n), future.item(n))
            if fit is not None:
                fit.moved(n, free)
            for c in counts.values():
                c.moved(n, free)

    # -- changes --------------------------------------------------------------------------
    def _touched(self, tenant: str) -> None:
        rivals = self.snap.rivals.get(tenant)
        if rivals:
            for r in rivals[0]:
                self._blocked.pop((_NOW, r), None)
                self._blocked.pop((_FUTURE, r), None)

    def _closed_to_rivals(self, tenant: str, p: Placement) -> None:
        """``tenant`` now holds GPUs on ``p``'s nodes in both views: close those nodes to
        each rival kept a node apart, in the rival's kept masks (blocked and eligible)
        rather than building them again over the whole cluster. A rival kept a rack
        apart has its masks built again (``_touched``)."""
        rivals = self.snap.rivals.get(tenant)
        if not rivals:
            return
        nodes: int | list[int] = p.nodes[0] if len(p.nodes) == 1 else list(p.nodes)
        rebuild = False
        for r in rivals[0]:
            if tenant in self.snap.rivals[r][1]:
                rebuild = True
                continue
            for view in (_NOW, _FUTURE):
                b = self._blocked.get((view, r))
                if b is not None:
                    b[nodes] = True
        for key, (_, mask) in self._eligible.items():
            if key[1] in rivals[0] and tenant not in self.snap.rivals[key[1]][1]:
                mask[nodes] = False
        if rebuild:
            self._touched(tenant)

    def commit_now(self, tenant: str, p: Placement) -> None:
        self.version += 1
        self._changing_now().apply(tenant, p)
        if self.future is not None:
            self.future.apply(tenant, p)
        self._closed_to_rivals(tenant, p)
        self._fit_touched(p)

    def promise(self, tenant: str, p: Placement) -> Placement | None:
        """Hold the room promised to a waiting job: all of it once reclaims finish, and
        the part already free now. Without the second, another job could start now on
        the free part, trading it for room that a later reclaim frees: the waiting job
        would then wait for that later deadline, past its own grace period.
        Returns the part held now, for ``withdraw``."""
        self.version += 1
        if self.future is None:
            self.future = self.now.copy()
        held_now = self.now.free_part(p)
        self.future.apply(tenant, p)
        if held_now is not None:
            self._changing_now().apply(tenant, held_now)
        self._touched(tenant)
        self._fit_touched(p)
        return held_now

    def withdraw(self, tenant: str, p: Placement, held_now: Placement | None) -> None:
        """Give back a promise's room (the job started elsewhere): without it, the room
        stays held for nobody this cycle, and a job owed it waits a cycle that may be
        minutes away (and meanwhile sees it lent)."""
        self.version += 1
        assert self.future is not None
        self.future.release(tenant, p)
        if held_now is not None:
            self._changing_now().release(tenant, held_now)
        self._blocked.clear()
        self._failed.clear()
        self._fit_touched(p)

    def release_future(self, tenant: str, p: Placement) -> None:
        self.version += 1
        if self.future is None:
            self.future = self.now.copy()
        self.future.release(tenant, p)
        self._blocked.pop((_FUTURE, tenant), None)
        self._blocked = {k: v for k, v in self._blocked.items() if k[0] == _NOW}
        self._failed = {k: v for k, v in self._failed.items() if k[0] == _NOW}
        self._fit_touched(p)

    def release_now(self, tenant: str, p: Placement) -> None:
        """Free GPUs immediately (a preemption with no grace)."""
        self.version += 1
        self._changing_now().release(tenant, p)
        if self.future is not None:
            self.future.release(tenant, p)
        self._blocked.clear()
        self._failed.clear()
        self._fit_touched(p)

    def free_upper_bound(self, kind: str | None) -> int:
        """GPUs of this kind free on healthy nodes in the view victims are released from
        (``future`` if any, else ``now``), ignoring isolation: an upper bound on the free
        room any tenant can find there. Cached until the workspace changes."""
        got = self._room_upper.get(kind)
        if got is not None and got[0] == self.version:
            return got[1]
        base = self.future if self.future is not None else self.now
        value = int(base.free[self.base(kind)].sum())
        self._room_upper[kind] = (self.version, value)
        return value

    def free_gpus(self, tenant: str, kind: str | None, providers: tuple[str, ...] = ()) -> int:
        """GPUs free now on the nodes the tenant may take (on ``providers``; none: all)."""
        mask = self.eligible(tenant, kind, providers=providers)
        if mask is self._usable and self.future is None:  # every usable node, one view
            return self.free_total()
        return int(self._free(_NOW)[mask].sum())
