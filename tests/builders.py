"""Small builders for tests: clusters, contracts, jobs and engines with readable defaults.

Every time is an integer Unix second; ``T0`` is 2026-10-01T00:00:00Z.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from cotenant.backends.sim import SimBackend
from cotenant.cluster.state import ClusterState
from cotenant.cluster.topology import ClusterSpec, NodeGroup, Topology
from cotenant.engine.clock import SimClock
from cotenant.engine.core import Engine
from cotenant.model.contracts import (
    Commitment,
    Contract,
    IsolationLevel,
    IsolationTerms,
    LendingTerms,
    NoticeTerms,
    Ramp,
)
from cotenant.model.jobs import JobSpec, JobState
from cotenant.scheduler.policies import get_policy
from cotenant.scheduler.snapshot import Rivals, Snapshot

T0 = 1_790_812_800  # 2026-10-01T00:00:00Z
MIN = 60
HOUR = 3600
DAY = 86_400
YEAR = 365 * DAY
H100 = "H100-SXM-80GB"


def cluster(
    nodes: int = 16,
    per_rack: int = 4,
    racks_per_block: int = 2,
    kind: str = H100,
    gpus_per_node: int | None = None,
) -> Topology:
    """One node group: ``nodes`` nodes, ``per_rack`` to a rack, ``racks_per_block`` to a block."""
    return Topology(
        ClusterSpec("test", (NodeGroup(kind, nodes, per_rack, racks_per_block, gpus_per_node),))
    )


def contract(
    tenant: str,
    gpus: int = 0,
    *,
    all_available: bool = False,
    reserve: int = 0,
    rivals: Sequence[str] = (),
    level: IsolationLevel = IsolationLevel.NODE,
    grace: int = 5 * MIN,
    lend: bool = True,
    lend_limit: int | None = None,
    priority: int = 0,
    start: int = T0,
    end: int = T0 + YEAR,
    notice_period: int = 90 * DAY,
    ramp: Ramp = Ramp.LINEAR,
    notice_at: int | None = None,
    accelerator: str | None = None,
) -> Contract:
    return Contract(
        tenant,
        start,
        end,
        Commitment(gpus, all_available, reserve, accelerator),
        notice=NoticeTerms(notice_period, ramp, notice_at),
        lending=LendingTerms(lend, lend_limit, grace),
        isolation=IsolationTerms(tuple(rivals), level),
        priority=priority,
    )


def job(
    id: str,
    tenant: str,
    gpus: int,
    duration_s: int = HOUR,
    submit_s: int = T0,
    **kw: Any,
) -> JobSpec:
    return JobSpec(id=id, tenant=tenant, gpus=gpus, duration_s=duration_s, submit_s=submit_s, **kw)


def bare_snapshot(state: ClusterState, rivals: Mapping[str, Rivals] | None = None) -> Snapshot:
    """A snapshot of ``state`` alone: no jobs, no contracts (for a policy's workspace)."""
    return Snapshot(
        now=0,
        state=state,
        pending=(),
        running=(),
        contracts={},
        entitlements={},
        owned_gpus={},
        borrowed_gpus={},
        rivals=rivals or {},
    )


def engine(
    topo: Topology,
    contracts: Iterable[Contract] = (),
    policy: str = "contract",
    *,
    start: int = T0,
    tenants: Iterable[str] = (),
    events: list[dict[str, Any]] | None = None,
    checkpoint_write_s: int = 60,
    **kw: Any,
) -> Engine:
    """A simulated engine; if ``events`` is given, every emitted event is appended to it."""
    contracts = list(contracts)
    names = list(dict.fromkeys([*(c.tenant for c in contracts), *tenants]))
    eng = Engine(
        topo,
        contracts,
        get_policy(policy),
        SimBackend(),
        SimClock(start),
        tenants=names,
        checkpoint_write_s=checkpoint_write_s,
        **kw,
    )
    if events is not None:
        eng.sinks.append(events.append)
    return eng


# -- driving real backends (local processes, Slurm) in wall-clock time -----------------------
def submit_command(
    eng: Engine, id: str, gpus: int, command: str, tenant: str = "B", duration_s: int = 2
) -> None:
    eng.submit(
        job(
            id,
            tenant,
            gpus,
            duration_s=duration_s,
            submit_s=eng.clock.now(),
            command=("sh", "-c", command),
        )
    )


def drive(eng: Engine, done: Callable[[], bool], timeout_s: float) -> None:
    """Run a wall-clock engine until ``done()``; fail with the jobs' states after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    eng.run(
        eng.clock.now() + int(timeout_s) + 2, stop=lambda: done() or time.monotonic() > deadline
    )
    assert done(), {j: (r.state.value, r.reason) for j, r in eng.jobs.items()}


def finished(eng: Engine) -> Callable[[], bool]:
    terminal = (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED)
    return lambda: all(r.state in terminal for r in eng.jobs.values())


# Two tenants of small experiments on 32 GPUs under a 22 kW cap: power binds, not GPUs.
TIGHT_POWER_SCENARIO = """
name = "tight-power"
duration = "12h"
policy = "contract"
[cluster]
groups = [{ accelerator = "H100-SXM-80GB", nodes = 4, nodes_per_rack = 2 }]
[[tenants]]
name = "alpha"
[tenants.contract]
commitment = { gpus = 16 }
[tenants.workload]
pretraining_runs = 0
rl_runs = 0
experiments = 30
experiment_gpus = [1, 8]
experiment_median_hours = 1.0
[[tenants]]
name = "beta"
[tenants.workload]
pretraining_runs = 0
rl_runs = 0
experiments = 30
experiment_gpus = [1, 8]
experiment_median_hours = 1.0
[energy]
power_cap_mw = 0.022
"""
