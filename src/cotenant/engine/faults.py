"""The engine's fault path: interrupt, fail, drain and repair nodes.

An interrupted run keeps the work safe in its last finished checkpoint, loses the
rest, pays the restart cost when it next starts, and goes back to the queue in its
original place (it is re-placed whole, on healthy nodes). A node may be down for
several reasons at once (its own fault and its rack's uplink); it is healthy again
only when every reason is repaired.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from cotenant.cluster.state import Health
from cotenant.model.jobs import JobState

if TYPE_CHECKING:
    from cotenant.engine.core import Engine
    from cotenant.engine.jobs import JobRun


class FaultLog:
    """Counts for the report: interruptions by tenant and cause, work lost, per job size."""

    def __init__(self) -> None:
        self.by_tenant_cause: dict[str, Counter[str]] = defaultdict(Counter)
        self.lost_gpu_s: dict[str, int] = defaultdict(int)
        self.planned: dict[str, int] = defaultdict(int)
        self.node_failures: Counter[str] = Counter()
        self.by_job_gpus: Counter[int] = Counter()  # interruptions per job size (GPUs)


class FaultHandling:
    """Mixed into Engine: the node-level mechanism the failure injector drives."""

    fault_log: FaultLog
    _down_reasons: np.ndarray
    _draining: np.ndarray

    @property
    def _e(self) -> Engine:
        return cast("Engine", self)

    def _init_faults(self) -> None:
        self._e.fault_log = FaultLog()
        self._e._down_reasons = np.zeros(self._e.topo.n_nodes, dtype=np.int16)
        self._e._draining = np.zeros(self._e.topo.n_nodes, dtype=np.int16)

    def jobs_on_node(self, node: int) -> list[JobRun]:
        ids = self._e._node_jobs.get(node)
        return [self._e.jobs[j] for j in sorted(ids)] if ids else []

    def interrupt(self, run: JobRun, t: int, cause: str, planned: bool = False) -> None:
        """Stop a running job because of a fault; it resumes from its last checkpoint."""
        if run.state not in (JobState.RUNNING, JobState.RECLAIMING) or run.placement is None:
            return
        ckpt = run.current_run()
        progress = ckpt.progress_s(t)
        # A drain gives notice: the job writes a checkpoint that completes in time.
        saved = ckpt.checkpoint_by_s(t) if planned else ckpt.saved_s(t)
        lost = max(0, progress - saved)
        self._e.backend.stop(run.id, t)
        self._e._stop_run(run, t)
        run.work_saved_s = max(run.work_saved_s, saved)
        run.interruptions += 1
        run.lost_gpu_s += lost * run.spec.gpus
        tt = self._e.acct.tenants[run.tenant]
        tt.interruptions += 1
        tt.failure_lost_gpu_s += lost * run.spec.gpus
        log = self._e.fault_log
        log.by_tenant_cause[run.tenant][cause] += 1
        log.lost_gpu_s[run.tenant] += lost * run.spec.gpus
        log.by_job_gpus[run.spec.gpus] += 1
        if planned:
            log.planned[run.tenant] += 1
        # Back in the queue at its original place: a fault is not the job's fault.
        run.state = JobState.PENDING
        run.queued_since_s = run.spec.submit_s
        run.reason, run.reason_detail = "requeued", f"interrupted: {cause}"
        run.touch()
        self._e._enqueue(run)
        self._e._dirty = True
        self._e._emit(
            {
                "t": t,
                "event": "interrupt",
                "job": run.id,
                "tenant": run.tenant,
                "cause": cause,
                "lost_s": lost,
            }
        )

    def fail_nodes(self, nodes: list[int], t: int, cause: str, repair_s: int) -> None:
        """Take nodes down now (a node fault, or every node of a rack for an uplink fault),
        interrupt every job holding GPUs there, and repair them after ``repair_s``."""
        victims: dict[str, JobRun] = {}
        for n in nodes:
            for run in self._e.jobs_on_node(n):
                victims[run.id] = run
            self._e._down_reasons[n] += 1
            self._e._set_health(n, t, cause)
        for run in victims.values():
            self._e.interrupt(run, t, cause)
        self._e.fault_log.node_failures[cause] += 1
        if repair_s > 0:
            self._e.at(t + repair_s, lambda now: self._e.repair_nodes(nodes, now, cause))

    def repair_nodes(self, nodes: list[int], t: int, cause: str) -> None:
        for n in nodes:
            self._e._down_reasons[n] = max(0, int(self._e._down_reasons[n]) - 1)
            self._e._set_health(n, t, f"repaired: {cause}")

    def drain_node(self, node: int, t: int, down_at_s: int, repair_s: int, cause: str) -> None:
        """Planned maintenance: take nothing new now; at ``down_at_s`` checkpoint and stop
        what still runs there, then stay down for ``repair_s``."""
        self._e._draining[node] += 1
        self._e._set_health(node, t, f"draining: {cause}")

        def go_down(now: int) -> None:
            self._e._draining[node] = max(0, int(self._e._draining[node]) - 1)
            for run in self._e.jobs_on_node(node):
                self._e.interrupt(run, now, cause, planned=True)
            self._e._down_reasons[node] += 1
            self._e._set_health(node, now, cause)
            self._e.at(now + repair_s, lambda later: self._e.repair_nodes([node], later, cause))

        self._e.at(down_at_s, go_down)

    def interrupt_job_on_node(self, node: int, t: int, cause: str) -> None:
        """A software fault: only one job on the node is interrupted; the node stays up."""
        runs = self._e.jobs_on_node(node)
        if runs:
            self._e.interrupt(runs[0], t, cause)

    def _set_health(self, node: int, t: int, reason: str) -> None:
        if self._e._down_reasons[node] > 0:
            h = Health.DOWN
        elif self._e._draining[node] > 0:
            h = Health.DRAINING
        else:
            h = Health.HEALTHY
        if int(self._e.state.health[node]) != int(h):
            self._e.set_node_health(node, h, reason, t)

    def node_reported(self, node: int, health: Health, reason: str, t: int) -> None:
        """A backend observed a node's health (e.g. Slurm DOWN/DRAIN): take the fault path
        for a new fault, repair when it comes back. Reports that change nothing are ignored."""
        was = Health(int(self._e.state.health[node]))
        if health is was:
            return
        if health is Health.DOWN:
            self._e.fail_nodes([node], t, reason, repair_s=0)
        elif health is Health.DRAINING:
            self._e._draining[node] += 1
            self._e._set_health(node, t, reason)
        else:
            self._e._down_reasons[node] = 0
            self._e._draining[node] = 0
            self._e._set_health(node, t, reason)

    def down_gpus(self) -> int:
        return self._e.state.down_gpus()

    def at(self, t: int, fn: Callable[[int], Any]) -> None:
        """Run ``fn(now)`` when the clock reaches ``t`` (before that instant's cycle). ``now``
        is the step's time: ``t`` itself in the twin, later if a live step runs late; the
        callback acts then (a fault found late takes its nodes down from then on)."""
        key = str(next(self._e._seq))
        self._e._callbacks[key] = fn
        self._e._push(t, 0, key)
