"""Rebuild a live engine's jobs from what the store recorded.

A pending job is submitted again (its queue position is its submit time). A running
job is started again on the nodes it held, as of the time it started, so the backend
times its end as before (the digital twin; a real backend would re-attach to the
running processes instead). Its usage interval reopens where the ledger left off.
A job that was reclaiming is restored as running: the next cycle decides again
whether to reclaim it.

Restoring emits no decisions: the sinks are detached while it runs, so nothing is
audited twice. Uses the engine's own start path (``_start``) so that every piece of
bookkeeping (cluster state, ownership, guarantee views, usage) stays consistent.
"""

from __future__ import annotations

from dataclasses import dataclass

from cotenant.cluster.state import Placement
from cotenant.engine.core import Engine
from cotenant.engine.jobs import JobRun
from cotenant.model.errors import InvariantBroken
from cotenant.model.jobs import JobSpec, JobState
from cotenant.scheduler.decisions import Reason


@dataclass(frozen=True, slots=True)
class SavedJob:
    """What the store keeps of a job that was pending, running or reclaiming."""

    spec: JobSpec
    state: JobState
    placement: Placement | None = None
    borrowed: bool = False
    start_s: int | None = None  # start of the current run
    first_start_s: int | None = None
    usage_since_s: int | None = None  # open usage interval (after the last retag)
    attempt: int = 0
    work_saved_s: int = 0
    preemptions: int = 0
    reason: str = ""  # the reason code it was placed with


def restore_jobs(engine: Engine, saved: list[SavedJob]) -> list[JobRun]:
    """Put ``saved`` jobs back into ``engine``: running ones first (their GPUs are taken),
    then pending ones in the order given. Raises InvariantBroken if two running jobs
    claim the same GPUs."""
    sinks, engine.sinks = engine.sinks, []
    try:
        runs = [_restore_running(engine, s) for s in saved if _is_running(s)]
        runs += [_restore_pending(engine, s) for s in saved if not _is_running(s)]
    finally:
        engine.sinks = sinks
    engine.state.check_invariants()
    return runs


def _is_running(s: SavedJob) -> bool:
    return s.state in (JobState.RUNNING, JobState.RECLAIMING) and s.placement is not None


def _restore_pending(engine: Engine, s: SavedJob) -> JobRun:
    run = engine.submit(s.spec)
    run.attempt = s.attempt
    run.work_saved_s = s.work_saved_s
    run.preemptions = s.preemptions
    run.first_start_s = s.first_start_s
    run.touch()
    return run


def _restore_running(engine: Engine, s: SavedJob) -> JobRun:
    assert s.placement is not None
    start = s.start_s if s.start_s is not None else engine.clock.now()
    run = engine.submit(s.spec)  # its queue event finds it running and does nothing
    run.attempt = max(0, s.attempt - 1)  # _start counts this run again
    run.work_saved_s = s.work_saved_s
    run.preemptions = s.preemptions
    run.first_start_s = s.first_start_s if s.first_start_s is not None else start
    try:
        engine._start(run, s.placement, s.borrowed, start, Reason.PLACED)
    except InvariantBroken as e:
        raise InvariantBroken(f"restoring job {s.spec.id}: {e}") from None
    if s.reason:
        run.reason = s.reason
    since = s.usage_since_s if s.usage_since_s is not None else start
    engine._open_usage[run.id] = (since, s.borrowed)
    return run
