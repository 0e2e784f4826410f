"""The engine's mutable record of one job across its runs, preemptions and restarts."""

from __future__ import annotations

from dataclasses import dataclass, field

from cotenant.cluster.state import Placement
from cotenant.model.checkpoints import CheckpointedRun
from cotenant.model.jobs import JobSpec, JobState
from cotenant.scheduler.snapshot import PendingJob, RunningJob


@dataclass(slots=True)
class JobHistory:
    """What the job's runs added up to, across preemptions, faults and restarts."""

    first_start_s: int | None = None
    end_s: int | None = None
    preemptions: int = 0
    interruptions: int = 0
    lost_gpu_s: int = 0


@dataclass(slots=True)
class JobClaim:
    """A pending job's hold on room inside its tenant's entitlement: since when the
    guarantee monitor has found it owed (None: not owed), and the room the policy promised
    it (being reclaimed for it) and since when."""

    entitled_since_s: int | None = None
    promise: Placement | None = None
    promised_since_s: int | None = None


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
    reason: str = ""
    reason_detail: str = ""
    history: JobHistory = field(default_factory=JobHistory)
    claim: JobClaim = field(default_factory=JobClaim)
    _pending_view: PendingJob | None = field(default=None, repr=False)
    _running_view: RunningJob | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def tenant(self) -> str:
        return self.spec.tenant

    # -- the history's and the claim's fields, read and set as the job's own ------------
    @property
    def first_start_s(self) -> int | None:
        return self.history.first_start_s

    @first_start_s.setter
    def first_start_s(self, value: int | None) -> None:
        self.history.first_start_s = value

    @property
    def end_s(self) -> int | None:
        return self.history.end_s

    @end_s.setter
    def end_s(self, value: int | None) -> None:
        self.history.end_s = value

    @property
    def preemptions(self) -> int:
        return self.history.preemptions

    @preemptions.setter
    def preemptions(self, value: int) -> None:
        self.history.preemptions = value

    @property
    def interruptions(self) -> int:
        return self.history.interruptions

    @interruptions.setter
    def interruptions(self, value: int) -> None:
        self.history.interruptions = value

    @property
    def lost_gpu_s(self) -> int:
        return self.history.lost_gpu_s

    @lost_gpu_s.setter
    def lost_gpu_s(self, value: int) -> None:
        self.history.lost_gpu_s = value

    @property
    def entitled_since_s(self) -> int | None:
        return self.claim.entitled_since_s

    @entitled_since_s.setter
    def entitled_since_s(self, value: int | None) -> None:
        self.claim.entitled_since_s = value

    @property
    def promise(self) -> Placement | None:
        return self.claim.promise

    @promise.setter
    def promise(self, value: Placement | None) -> None:
        self.claim.promise = value

    @property
    def promised_since_s(self) -> int | None:
        return self.claim.promised_since_s

    @promised_since_s.setter
    def promised_since_s(self, value: int | None) -> None:
        self.claim.promised_since_s = value

    def remaining_s(self) -> int:
        return max(0, self.spec.duration_s - self.work_saved_s)

    def current_run(self) -> CheckpointedRun:
        """The current run, for the checkpoint arithmetic (``model.checkpoints``)."""
        spec = self.spec
        return CheckpointedRun(
            self.start_s,
            self.restart_s,
            self.work_saved_s,
            spec.duration_s,
            spec.checkpoint_interval_s,
            self.write_s,
        )

    def progress_s(self, now: int) -> int:
        """Work done by ``now`` in the current run (see ``model.checkpoints``)."""
        return self.current_run().progress_s(now)

    def saved_by_periodic_checkpoints_s(self, now: int) -> int:
        """Work safe in the last checkpoint that has finished writing by ``now``."""
        return self.current_run().saved_s(now)

    def carried_on_move(self, now: int, attempt: int) -> tuple[int, int] | None:
        """Moved to another provider at ``now``, with the move planned on ``attempt``:
        (work it carries, work it loses). Running that attempt, it carries its last
        finished checkpoint; pending (preempted or interrupted since), what it saved.
        None when it cannot move now (ended, or being reclaimed)."""
        if self.state is JobState.RUNNING and self.attempt == attempt:
            saved = self.saved_by_periodic_checkpoints_s(now)
            return saved, self.progress_s(now) - saved
        if self.state is JobState.PENDING:
            return self.work_saved_s, 0
        return None

    def checkpoint_overhead_s(self, now: int) -> int:
        """Time spent writing checkpoints in the current run up to ``now``."""
        return self.current_run().writing_s(now)

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
                write_s=self.write_s,
            )
        return self._running_view

    def expected_end_s(self) -> int:
        """When the current run ends by the job's runtime estimate (for backfill)."""
        return self.current_run().end_s(self.spec.runtime_estimate_s)

    def touch(self) -> None:
        """Drop cached views after a change."""
        self._pending_view = None
        self._running_view = None
