"""The engine's mutable record of one job across its runs, preemptions and restarts."""

from __future__ import annotations

from dataclasses import dataclass, field

from cotenant.cluster.state import Placement
from cotenant.model.jobs import JobSpec, JobState
from cotenant.scheduler.snapshot import PendingJob, RunningJob


@dataclass(slots=True)
class JobRun:
    spec: JobSpec
    state: JobState = JobState.PENDING
    queued_since_s: int = 0
    work_saved_s: int = 0  # work safe in the last checkpoint
    attained_gpu_s: int = 0
    # current run
    placement: Placement | None = None
    start_s: int = 0
    restart_s: int = 0
    borrowed: bool = False
    reclaim_deadline_s: int | None = None
    checkpoint_at_notice_s: int | None = None
    attempt: int = 0
    write_s: int = 0  # checkpoint write time in the current run
    # history
    first_start_s: int | None = None
    end_s: int | None = None
    preemptions: int = 0
    interruptions: int = 0
    lost_gpu_s: int = 0
    reason: str = ""
    reason_detail: str = ""
    entitled_since_s: int | None = None
    promise: Placement | None = None
    promised_since_s: int | None = None
    _pending_view: PendingJob | None = field(default=None, repr=False)
    _running_view: RunningJob | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def tenant(self) -> str:
        return self.spec.tenant

    def remaining_s(self) -> int:
        return max(0, self.spec.duration_s - self.work_saved_s)

    def progress_s(self, now: int) -> int:
        """Work done by ``now`` in the current run. A run is: restart cost, then cycles of
        ``checkpoint_interval`` of work followed by ``write_s`` writing the checkpoint
        (the simulated backend times runs the same way)."""
        ran = max(0, now - self.start_s - self.restart_s)
        every = self.spec.checkpoint_interval_s
        if every > 0 and self.write_s > 0:
            k, r = divmod(ran, every + self.write_s)
            ran = k * every + min(r, every)
        return min(self.spec.duration_s, self.work_saved_s + ran)

    def saved_by_periodic_checkpoints_s(self, now: int) -> int:
        """Work safe in the last checkpoint that has finished writing by ``now``."""
        ran = max(0, now - self.start_s - self.restart_s)
        every = self.spec.checkpoint_interval_s
        done = (ran // (every + self.write_s)) * every if every > 0 else 0
        return min(self.spec.duration_s, self.work_saved_s + done)

    def checkpoint_overhead_s(self, now: int) -> int:
        """Time spent writing checkpoints in the current run up to ``now``."""
        ran = max(0, now - self.start_s - self.restart_s)
        every = self.spec.checkpoint_interval_s
        if every <= 0 or self.write_s <= 0:
            return 0
        k, r = divmod(ran, every + self.write_s)
        return k * self.write_s + max(0, r - every)

    def pending_view(self) -> PendingJob:
        if self._pending_view is None:
            self._pending_view = PendingJob(
                self.spec,
                self.queued_since_s,
                self.attained_gpu_s,
                self.remaining_s(),
                promise=self.promise,
                promised_since_s=self.promised_since_s,
            )
        return self._pending_view

    def running_view(self) -> RunningJob:
        if self._running_view is None:
            assert self.placement is not None
            self._running_view = RunningJob(
                spec=self.spec,
                placement=self.placement,
                start_s=self.start_s,
                expected_end_s=self.expected_end_s(),
                borrowed=self.borrowed,
                reclaiming=self.reclaim_deadline_s is not None,
                reclaim_deadline_s=self.reclaim_deadline_s,
                work_at_start_s=self.work_saved_s,
                restart_s=self.restart_s,
                attained_gpu_s=self.attained_gpu_s,
            )
        return self._running_view

    def expected_end_s(self) -> int:
        est = self.spec.runtime_estimate_s
        left = max(0, est - self.work_saved_s)
        every = self.spec.checkpoint_interval_s
        writes = (left - 1) // every if every > 0 and left > 0 else 0
        return self.start_s + self.restart_s + left + writes * self.write_s

    def touch(self) -> None:
        """Drop cached views after a change."""
        self._pending_view = None
        self._running_view = None
