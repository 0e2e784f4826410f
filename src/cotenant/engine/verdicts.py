"""Why a job waits: the standing verdicts of the last cycle, and counts of all verdicts.

Besides each job's own reason, a cycle may say why a whole tenant waits, or (strict
FIFO) why every job from some place in the queue on waits behind the head; the engine
may also hold all new starts (the live service's store cannot record decisions).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cotenant.engine.queue import Key, PendingQueue, queue_key
from cotenant.model.jobs import JobState
from cotenant.scheduler.decisions import Decisions

if TYPE_CHECKING:
    from cotenant.engine.jobs import JobRun


class Verdicts:
    def __init__(self) -> None:
        # (reason, detail) while the engine may start nothing new; running work goes on.
        self.hold: tuple[str, str] | None = None
        self.cycles = 0
        self.decisions_made = 0  # every verdict of every cycle, waits included
        self.waits = 0  # of which "still waiting" verdicts
        self._tenant_reason: dict[str, tuple[str, str]] = {}
        # Strict FIFO's verdict for the jobs from the head on: (head's key, reason, detail).
        self._behind: tuple[Key, str, str] | None = None

    def count(self, d: Decisions) -> None:
        self.cycles += 1
        self.decisions_made += len(d)
        self.waits += d.wait_count()

    def take(self, d: Decisions, queue: PendingQueue) -> None:
        """Keep the cycle's verdicts on tenants and on the queue behind its head."""
        self._tenant_reason = {t: (w.reason.value, w.detail) for t, w in d.tenant_waits.items()}
        b = d.behind
        head = None if b is None else queue.head_key(b.index)
        self._behind = None if b is None or head is None else (head, b.reason.value, b.detail)

    def why(self, run: JobRun) -> tuple[str, str]:
        """(reason, detail): why the job is in its state; for a pending job, why it waits."""
        if run.state is not JobState.PENDING:
            return run.state.value, run.reason_detail
        if self.hold is not None:
            return self.hold
        if self._behind is not None and queue_key(run) >= self._behind[0]:
            return self._behind[1], self._behind[2]
        if run.reason:
            return run.reason, run.reason_detail
        return self._tenant_reason.get(run.tenant, ("queued", "not yet considered"))
