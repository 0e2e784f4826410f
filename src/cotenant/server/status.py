"""The engine's totals after its last step, read by the API without the engine's lock."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from cotenant.engine.core import Engine
from cotenant.metering.energy import SiteEnergy, topology_facility_power_w

FOREVER = 1 << 62


@dataclass(frozen=True, slots=True)
class Status:
    """The engine's totals after its last step; read without the lock."""

    t: int = 0
    allocated: Mapping[str, int] = field(default_factory=dict)
    owned: Mapping[str, int] = field(default_factory=dict)
    borrowed: Mapping[str, int] = field(default_factory=dict)
    entitled: Mapping[str, int] = field(default_factory=dict)
    pending: int = 0
    running: int = 0
    pending_by_tenant: Mapping[str, int] = field(default_factory=dict)  # queued in the engine
    running_by_tenant: Mapping[str, int] = field(default_factory=dict)  # running, reclaiming
    free_gpus: int = 0
    healthy_nodes: int = 0
    decisions: int = 0  # places, reclaims, preempts, rejects, ends, ...: not waits
    waits: int = 0  # "still waiting" verdicts, counted apart
    cycles: int = 0
    decisions_per_s: float = 0.0
    next_due_s: int = FOREVER  # the engine's next event after this step
    # The engine's own guarantee check: jobs inside an entitlement that started later than
    # the grace period allows, and by how many seconds in all, per tenant.
    violation_jobs: Mapping[str, int] = field(default_factory=dict)
    violation_s: Mapping[str, int] = field(default_factory=dict)
    power_w: float = 0.0  # facility power now (the cap's model)
    power_cap_w: float | None = None
    # Where the cluster is several providers (Slurm clusters): per provider, in topology
    # order, (name, GPUs, free GPUs on healthy nodes, nodes, healthy nodes); else empty.
    providers: tuple[tuple[str, int, int, int, int], ...] = ()


class DecisionRate:
    """Decisions per wall second over the last minute (engine thread)."""

    def __init__(self) -> None:
        self._seen: deque[tuple[float, int]] = deque(maxlen=120)

    def add(self, decided: int) -> float:
        wall = time.monotonic()
        self._seen.append((wall, decided))
        while len(self._seen) > 2 and wall - self._seen[0][0] > 60:
            self._seen.popleft()
        w0, d0 = self._seen[0]
        return (decided - d0) / (wall - w0) if wall > w0 else 0.0


def status_of(e: Engine, t: int, decided: int, rate: float) -> Status:
    """The engine's totals at ``t`` (lock held), with ``decided`` decisions so far."""
    usable = e.state.usable()
    nxt = e.next_event_time()
    site = e.site or SiteEnergy()
    return Status(
        t=t,
        allocated={k: v for k, v in e.allocated.items() if v},
        owned={k: v for k, v in e.owned.items() if v},
        borrowed={k: v for k, v in e.borrowed.items() if v},
        entitled=dict(e.entitled),
        pending=e.pending_count(),
        running=len(e.running()),
        pending_by_tenant=e.pending_jobs_by_tenant(),
        running_by_tenant=e.running_jobs_by_tenant(),
        free_gpus=int(e.state.free[usable].sum()),
        healthy_nodes=int(usable.sum()),
        decisions=decided,
        waits=e.waits,
        cycles=e.cycles,
        decisions_per_s=rate,
        next_due_s=FOREVER if nxt is None else nxt,
        violation_jobs={k: v.violation_jobs for k, v in e.acct.tenants.items()},
        violation_s={k: v.violation_s for k, v in e.acct.tenants.items()},
        power_w=topology_facility_power_w(site, e.topo, e.state),
        power_cap_w=None if site.power_cap_mw is None else site.power_cap_mw * 1e6,
        providers=providers_of(e, usable),
    )


def providers_of(e: Engine, usable: np.ndarray) -> tuple[tuple[str, int, int, int, int], ...]:
    """Each provider's capacity, free GPUs and healthy nodes (empty for one provider)."""
    topo = e.topo
    if topo.n_providers < 2:
        return ()
    heads = topo.providers.start[:-1]
    free = np.add.reduceat(np.where(usable, e.state.free, 0).astype(np.int64), heads)
    gpus = np.add.reduceat(topo.node_gpus.astype(np.int64), heads)
    healthy = np.add.reduceat(usable.astype(np.int64), heads)
    return tuple(
        (name, int(gpus[i]), int(free[i]), int(topo.providers.nodes[i]), int(healthy[i]))
        for i, name in enumerate(topo.provider_names)
    )


def with_pools(st: Status, lease: Engine, lease_name: str, pools: Mapping[str, Engine]) -> Status:
    """``st`` with each pool's capacity, free GPUs and healthy nodes after the lease's
    (the lease as one row when it is one provider)."""
    rows = list(st.providers) or [_whole(lease_name, lease)]
    rows += [_whole(name, e) for name, e in pools.items()]
    return replace(st, providers=tuple(rows))


def _whole(name: str, e: Engine) -> tuple[str, int, int, int, int]:
    """An engine's cluster as one provider row: GPUs, free on healthy nodes, nodes,
    healthy nodes."""
    usable = e.state.usable()
    free = int(e.state.free[usable].sum())
    return (name, e.topo.total_gpus, free, e.topo.n_nodes, int(usable.sum()))
