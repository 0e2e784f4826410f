"""The engine's fault path: fail, drain and repair nodes, and interrupt what runs there.

An interrupted run keeps the work safe in its last finished checkpoint, loses the
rest, pays the restart cost when it next starts, and goes back to the queue in its
original place (it is re-placed whole, on healthy nodes). A node may be down for
several reasons at once (its own fault and its rack's uplink); it is healthy again
only when every reason is repaired.

``NodeFaults`` is one part of the engine, composed into it; it reaches the rest of the
engine through ``FaultTarget``, a few public operations (no import of the engine, no
private names): the one requeue path, node health, and timed callbacks.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from cotenant.cluster.state import ClusterState, Health
from cotenant.model.jobs import JobState

if TYPE_CHECKING:
    from cotenant.engine.jobs import JobRun


class FaultLog:
    """Counts for the report: interruptions by tenant and cause, work lost, per job size."""

    def __init__(self) -> None:
        self.by_tenant_cause: dict[str, Counter[str]] = defaultdict(Counter)
        self.lost_gpu_s: dict[str, int] = defaultdict(int)
        self.planned: dict[str, int] = defaultdict(int)
        self.node_failures: Counter[str] = Counter()
        self.by_job_gpus: Counter[int] = Counter()  # interruptions per job size (GPUs)


class FaultTarget(Protocol):
    """What the fault path needs of the engine."""

    state: ClusterState

    def jobs_on_node(self, node: int) -> list[JobRun]: ...

    def interrupt(self, run: JobRun, t: int, cause: str, planned: bool = False) -> None: ...

    def set_node_health(self, node: int, health: Health, reason: str, now: int) -> None: ...

    def at(self, t: int, fn: Callable[[int], Any]) -> None: ...


class NodeFaults:
    """Node-level fault mechanism the failure injector (and a backend's health reports)
    drive: why each node is down or draining, and what that interrupts."""

    def __init__(self, engine: FaultTarget, n_nodes: int) -> None:
        self.engine = engine
        self.log = FaultLog()
        self.down_reasons = np.zeros(n_nodes, dtype=np.int16)
        self.draining = np.zeros(n_nodes, dtype=np.int16)

    def fail_nodes(self, nodes: list[int], t: int, cause: str, repair_s: int) -> None:
        """Take nodes down now (a node fault, or every node of a rack for an uplink fault),
        interrupt every job holding GPUs there, and repair them after ``repair_s``."""
        e = self.engine
        victims: dict[str, JobRun] = {}
        for n in nodes:
            for run in e.jobs_on_node(n):
                victims[run.id] = run
            self.down_reasons[n] += 1
            self._set_health(n, t, cause)
        for run in victims.values():
            e.interrupt(run, t, cause)
        self.log.node_failures[cause] += 1
        if repair_s > 0:
            e.at(t + repair_s, lambda now: self.repair_nodes(nodes, now, cause))

    def repair_nodes(self, nodes: list[int], t: int, cause: str) -> None:
        for n in nodes:
            self.down_reasons[n] = max(0, int(self.down_reasons[n]) - 1)
            self._set_health(n, t, f"repaired: {cause}")

    def drain_node(self, node: int, t: int, down_at_s: int, repair_s: int, cause: str) -> None:
        """Planned maintenance: take nothing new now; at ``down_at_s`` checkpoint and stop
        what still runs there, then stay down for ``repair_s``."""
        e = self.engine
        self.draining[node] += 1
        self._set_health(node, t, f"draining: {cause}")

        def go_down(now: int) -> None:
            self.draining[node] = max(0, int(self.draining[node]) - 1)
            for run in e.jobs_on_node(node):
                e.interrupt(run, now, cause, planned=True)
            self.down_reasons[node] += 1
            self._set_health(node, now, cause)
            e.at(now + repair_s, lambda later: self.repair_nodes([node], later, cause))

        e.at(down_at_s, go_down)

    def interrupt_job_on_node(self, node: int, t: int, cause: str) -> None:
        """A software fault: only one job on the node is interrupted; the node stays up."""
        runs = self.engine.jobs_on_node(node)
        if runs:
            self.engine.interrupt(runs[0], t, cause)

    def node_reported(self, node: int, health: Health, reason: str, t: int) -> None:
        """A backend observed a node's health (e.g. Slurm DOWN/DRAIN): take the fault path
        for a new fault, repair when it comes back. Reports that change nothing are ignored."""
        was = Health(int(self.engine.state.health[node]))
        if health is was:
            return
        if health is Health.DOWN:
            self.fail_nodes([node], t, reason, repair_s=0)
        elif health is Health.DRAINING:
            self.draining[node] += 1
            self._set_health(node, t, reason)
        else:
            self.down_reasons[node] = 0
            self.draining[node] = 0
            self._set_health(node, t, reason)

    def record(self, run: JobRun, cause: str, lost_s: int, planned: bool) -> None:
        """Count one interruption for the report."""
        log = self.log
        log.by_tenant_cause[run.tenant][cause] += 1
        log.lost_gpu_s[run.tenant] += lost_s * run.spec.gpus
        log.by_job_gpus[run.spec.gpus] += 1
        if planned:
            log.planned[run.tenant] += 1

    def _set_health(self, node: int, t: int, reason: str) -> None:
        if self.down_reasons[node] > 0:
            h = Health.DOWN
        elif self.draining[node] > 0:
            h = Health.DRAINING
        else:
            h = Health.HEALTHY
        if int(self.engine.state.health[node]) != int(h):
            self.engine.set_node_health(node, h, reason, t)


def interruptible(run: JobRun) -> bool:
    return run.state in (JobState.RUNNING, JobState.RECLAIMING) and run.placement is not None
