"""The job lifecycle: submit, start, stop, end, reclaim, preempt, interrupt, requeue and
retag, each keeping every part of the engine's bookkeeping in step (cluster state, the
running set, ownership, the guarantee views, usage intervals, the accounting).

Preemption and faults share one requeue path (``_stop_and_requeue``); the checkpoint
arithmetic is ``model.checkpoints``'s (through ``JobRun.current_run``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from operator import itemgetter
from typing import TYPE_CHECKING, cast

from cotenant.backends.base import EXIT_NOT_RUN, Backend, JobEnded, StartRequest
from cotenant.cluster.state import ClusterState, Placement
from cotenant.engine.accounting import Accounting
from cotenant.engine.agenda import DEADLINE, SUBMIT, Agenda
from cotenant.engine.events import (
    EngineEvent,
    JobRejected,
    JobSubmitted,
    RunEnded,
    RunInterrupted,
    RunPlaced,
    RunPreempted,
    RunReclaimed,
    RunRetagged,
)
from cotenant.engine.faults import interruptible
from cotenant.engine.guarantees import GuaranteeMonitor
from cotenant.engine.jobs import JobRun
from cotenant.engine.ownership import Ownership
from cotenant.engine.queue import PendingQueue
from cotenant.engine.running import RunningSet
from cotenant.engine.tenants import TenantBook
from cotenant.engine.usage import UsageMeter
from cotenant.model.errors import Conflict, SpecError
from cotenant.model.jobs import JobKind, JobSpec, JobState
from cotenant.scheduler.decisions import Place, Reason, Reclaim, Reject, Wait
from cotenant.scheduler.providers import provider_choice

if TYPE_CHECKING:
    from cotenant.engine.dependencies import Dependencies

FaultRecord = Callable[[JobRun, str, int, bool], None]  # (run, cause, lost_s, planned)


class JobLifecycle:
    def __init__(
        self,
        jobs: dict[str, JobRun],
        state: ClusterState,
        queue: PendingQueue,
        running: RunningSet,
        owners: Ownership,
        guarantees: GuaranteeMonitor,
        usage: UsageMeter,
        book: TenantBook,
        acct: Accounting,
        backend: Backend,
        agenda: Agenda,
        emit: Callable[[EngineEvent], None],
        record_fault: FaultRecord,
        *,
        restart_cost_s: int,
        checkpoint_write_s: int,
    ) -> None:
        self.jobs = jobs
        self.state = state
        self.queue = queue
        self.running = running
        self.owners = owners
        self.guarantees = guarantees
        self.usage = usage
        self.book = book
        self.acct = acct
        self.backend = backend
        self.agenda = agenda
        self.emit = emit
        self.record_fault = record_fault  # the fault path's count of interruptions
        self.restart_cost_s = restart_cost_s
        self.checkpoint_write_s = checkpoint_write_s
        # Jobs held for their dependencies (set by the engine): a held job is not queued
        # when its submission falls due, and its queue delay counts from its release.
        self.dependencies: Dependencies | None = None

    # -- into the queue -------------------------------------------------------------------
    def submit(self, spec: JobSpec, now: int) -> JobRun:
        if spec.id in self.jobs:
            raise Conflict(f"job id {spec.id!r} already exists")
        if spec.gpus < 1:
            raise SpecError("gpus", f"must be >= 1, got {spec.gpus}")
        if spec.duration_s < 0:
            raise SpecError("duration_s", f"must not be negative, got {spec.duration_s}")
        run = JobRun(spec, queued_since_s=spec.submit_s)
        self.jobs[spec.id] = run
        self.state.tenant_index(spec.tenant)
        if spec.kind is not JobKind.SERVICE:  # replicas come and go with demand; the
            self.acct.tenants[spec.tenant].submitted += 1  # services report counts them
        self.agenda.push(max(spec.submit_s, now), SUBMIT, spec.id)
        return run

    def queued(self, job_id: str, due: int, now: int) -> None:
        """The job's submission fell due at ``due``: queue it (once)."""
        run = self.jobs[job_id]
        if run.state is JobState.PENDING and run not in self.queue:
            run.queued_since_s = max(run.spec.submit_s, min(run.queued_since_s, due))
            if self.dependencies is None or not self.dependencies.hold(run, now):
                self.enqueue(run)
            self.emit(JobSubmitted(now, job_id, run.tenant, run.spec.gpus))

    def enqueue(self, run: JobRun) -> None:
        self.queue.add(run)
        self.agenda.dirty = True

    def cancel(self, run: JobRun, now: int) -> None:
        if run.state is JobState.PENDING:
            self.queue.remove(run)
        elif run.state in (JobState.RUNNING, JobState.RECLAIMING):
            self.backend.stop(run.id, now)
            self.stop_run(run, now)
        else:
            raise Conflict(f"job {run.id!r} is already {run.state.value}")
        run.state = JobState.CANCELLED
        run.end_s = now

    # -- a cycle's decisions --------------------------------------------------------------
    def reject(self, rj: Reject, now: int) -> None:
        run = self.jobs[rj.job_id]
        self.queue.remove(run)
        run.state = JobState.FAILED
        run.end_s = now
        run.reason, run.reason_detail = rj.reason.value, rj.detail
        self.acct.tenants[run.tenant].rejected += 1
        self.emit(JobRejected(now, rj.job_id, run.tenant, rj.reason.value, rj.detail))

    def place(self, pl: Place, now: int, honours_contracts: bool) -> None:
        """Start a placed job; a policy that does not honour contracts leaves it to the
        engine to tell owned from borrowed."""
        run = self.jobs[pl.job_id]
        if honours_contracts:
            borrowed = pl.borrowed
        else:
            owned = self.owners.owned[run.tenant]
            borrowed = owned + run.spec.gpus > self.book.entitled.get(run.tenant, 0)
        self.start(run, pl.placement, borrowed, now, pl.reason)

    def reclaim(self, rc: Reclaim, now: int) -> None:
        """Give a running job notice to checkpoint and stop by the deadline (or hasten a
        notice already given)."""
        run = self.jobs[rc.victim_id]
        hastened = (
            run.state is JobState.RECLAIMING
            and run.reclaim_deadline_s is not None
            and rc.deadline_s < run.reclaim_deadline_s
        )
        if run.state is not JobState.RUNNING and not hastened:
            return
        self.running.remove(run)
        run.state = JobState.RECLAIMING
        self.owners.unbalanced.add(run.tenant)
        run.reclaim_deadline_s = rc.deadline_s
        # The victim writes a checkpoint that completes by the deadline; a grace period
        # shorter than the write time leaves it its last periodic checkpoint.
        run.checkpoint_at_notice_s = run.current_run().saved_on_notice_s(now, rc.deadline_s)
        run.touch()
        self.running.add(run)
        self.backend.checkpoint(run.id, now)
        self.agenda.push(rc.deadline_s, DEADLINE, run.id)
        self.emit(
            RunReclaimed(
                now,
                run.id,
                run.tenant,
                rc.beneficiary_id,
                self.jobs[rc.beneficiary_id].tenant,
                rc.deadline_s,
                rc.rule.value,
                True if hastened else None,
            )
        )

    def wait(self, w: Wait, now: int) -> None:
        run = self.jobs[w.job_id]
        run.reason, run.reason_detail = w.reason.value, w.detail
        if self.guarantees.promise(run, w.promise, now):
            self.queue.refresh(run)

    # -- running --------------------------------------------------------------------------
    def start(
        self, run: JobRun, placement: Placement, borrowed: bool, now: int, reason: Reason
    ) -> None:
        self.queue.remove(run)
        choice = None
        if self.state.topo.n_providers > 1:  # which provider, and why (before it is taken)
            choice = provider_choice(self.state, self.book.rivals, run.spec, placement)
        self.state.apply(run.tenant, placement)
        run.state = JobState.RUNNING
        run.placement = placement
        run.start_s = now
        run.restart_s = self.restart_cost_s if run.attempt > 0 else 0
        run.attempt += 1
        run.write_s = self.checkpoint_write_s
        run.borrowed = borrowed
        self.running.hold_nodes(run)
        run.reclaim_deadline_s = None
        run.reason, run.reason_detail = reason.value, "" if choice is None else choice.detail
        run.touch()
        if run.history.first_start_s is None:
            run.history.first_start_s = now
            since = (
                run.spec.submit_s
                if self.dependencies is None
                else self.dependencies.eligible_s(run)
            )
            self.acct.tenants[run.tenant].queue_delays_s.append(now - since)
        self.guarantees.started(run, now)
        self.running.add(run)
        self._hold(run, +1)
        self.usage.open(run.id, now, borrowed)
        names = self.state.topo.node_names
        self.backend.start(
            StartRequest(
                run.spec,
                run.attempt,
                placement,
                _names_of(names, placement.nodes),
                now,
                run.work_saved_s,
                run.restart_s,
                self.checkpoint_write_s,
            )
        )
        placed = RunPlaced(
            now, run.id, run.tenant, run.spec.gpus, placement.nodes, borrowed, reason.value
        )
        if choice is not None:
            placed = replace(
                placed,
                provider=choice.provider,
                route=choice.reason.value,
                route_detail=choice.detail,
            )
        self.emit(placed)

    def retag(self, run: JobRun, borrowed: bool, now: int) -> None:
        """Count a running job's GPUs anew as borrowed or owned; its usage interval is
        closed and a new one opened."""
        self._hold(run, -1)
        self.running.remove(run)
        self.usage.close(run, now)
        run.borrowed = borrowed
        self.owners.demotions += borrowed
        run.touch()
        self.usage.open(run.id, now, borrowed)
        self.running.add(run)
        self._hold(run, +1)
        self.emit(RunRetagged(now, run.id, run.tenant, borrowed))

    def _hold(self, run: JobRun, sign: int) -> None:
        self.guarantees.hold(run, sign)
        self.owners.hold(run, sign)

    # -- stopping -------------------------------------------------------------------------
    def stop_run(self, run: JobRun, now: int) -> None:
        """Release a run's GPUs and close its usage interval."""
        assert run.placement is not None
        self.running.remove(run)
        self.state.release(run.tenant, run.placement)
        self._hold(run, -1)
        self.usage.close(run, now)
        self.running.free_nodes(run)
        tt = self.acct.tenants[run.tenant]
        tt.restart_gpu_s += min(run.restart_s, now - run.start_s) * run.spec.gpus
        tt.checkpoint_gpu_s += run.checkpoint_overhead_s(now) * run.spec.gpus
        run.attained_gpu_s += (now - run.start_s) * run.spec.gpus
        run.placement = None
        run.reclaim_deadline_s = None
        run.touch()
        self.agenda.dirty = True

    def ended(self, ev: JobEnded) -> None:
        """The backend saw the run end (a stale report of an earlier attempt is ignored). A
        run that never ran through no fault of its own (``EXIT_NOT_RUN``: its cluster's
        controller went away) is interrupted: back to the queue at its place, not failed."""
        run = self.jobs.get(ev.job_id)
        if run is None or run.attempt != ev.attempt or run.placement is None:
            return
        t = ev.end_s
        if ev.exit_code == EXIT_NOT_RUN:  # never ran, not the job's fault: queue it again
            self.interrupt(run, t, f"not started: {ev.reason or 'the backend could not'}")
            return
        self.stop_run(run, t)
        tt = self.acct.tenants[run.tenant]
        if ev.exit_code == 0:
            run.state = JobState.COMPLETED
            run.work_saved_s = run.spec.duration_s
            tt.completed += run.spec.kind is not JobKind.SERVICE
            tt.useful_gpu_s += run.spec.duration_s * run.spec.gpus
        else:
            run.state = JobState.FAILED
        run.history.end_s = t
        self.emit(RunEnded(t, run.id, run.tenant, run.state.value, ev.exit_code))

    def preempt(self, run: JobRun, t: int) -> None:
        """Stop a reclaimed run at its deadline; it resumes later from its checkpoint (the
        one written on notice, else its last periodic one), queued from now."""
        saved = run.checkpoint_at_notice_s
        if saved is None:
            saved = run.saved_by_periodic_checkpoints_s(t)
        lost = self._stop_and_requeue(run, t, saved, queued_since_s=t, detail="")
        tt = self.acct.tenants[run.tenant]
        tt.preemptions += 1
        tt.preempted_lost_gpu_s += lost * run.spec.gpus
        run.history.preemptions += 1
        self.emit(RunPreempted(t, run.id, run.tenant, lost))

    def interrupt(self, run: JobRun, t: int, cause: str, planned: bool = False) -> None:
        """Stop a running job because of a fault; it resumes from its last checkpoint (a
        drain gives notice: one written in time), back in the queue at its original place:
        a fault is not the job's fault."""
        if not interruptible(run):
            return
        ckpt = run.current_run()
        saved = ckpt.checkpoint_by_s(t) if planned else ckpt.saved_s(t)
        lost = self._stop_and_requeue(
            run, t, saved, queued_since_s=run.spec.submit_s, detail=f"interrupted: {cause}"
        )
        run.history.interruptions += 1
        tt = self.acct.tenants[run.tenant]
        tt.interruptions += 1
        tt.failure_lost_gpu_s += lost * run.spec.gpus
        self.record_fault(run, cause, lost, planned)
        self.emit(RunInterrupted(t, run.id, run.tenant, cause, lost))

    def _stop_and_requeue(
        self, run: JobRun, t: int, saved: int, *, queued_since_s: int, detail: str
    ) -> int:
        """The one requeue path (preemption and faults): stop the run at ``t`` keeping
        ``saved`` of the job's work, and queue it again from ``queued_since_s``. Returns
        the work lost (s): what the run had done beyond ``saved``."""
        lost = max(0, run.progress_s(t) - saved)
        self.backend.stop(run.id, t)
        self.stop_run(run, t)
        run.history.lost_gpu_s += lost * run.spec.gpus
        run.work_saved_s = max(run.work_saved_s, saved)
        run.checkpoint_at_notice_s = None
        run.state = JobState.PENDING
        run.queued_since_s = queued_since_s
        run.reason, run.reason_detail = "requeued", detail
        run.touch()
        self.enqueue(run)
        return lost


def _names_of(names: tuple[str, ...], nodes: tuple[int, ...]) -> tuple[str, ...]:
    """The names of ``nodes`` (itemgetter picks them in C: a run may hold 65,536 nodes)."""
    if len(nodes) == 1:
        return (names[nodes[0]],)
    return cast(tuple[str, ...], itemgetter(*nodes)(names))
