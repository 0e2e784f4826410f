"""What a policy returns. Every decision carries a machine-readable reason code."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from cotenant.cluster.state import Placement


class Reason(StrEnum):
    # placed
    PLACED_OWN = "placed-own"  # inside the tenant's entitlement
    PLACED_BORROWED = "placed-borrowed"  # on idle capacity lent by others
    PLACED = "placed"  # policies that ignore contracts
    BACKFILLED = "backfilled"  # started ahead of a reserved job without delaying it
    # pending
    NO_CAPACITY = "no-capacity"  # no free capacity holds the gang now
    WAITING_FOR_RECLAIM = "waiting-for-reclaim"  # borrowers are checkpointing to make room
    RESERVED_FOR_EARLIER = "reserved-for-earlier-job"  # would delay the reserved head job
    QUEUED_BEHIND = "queued-behind"  # strict FIFO: an earlier job waits
    OVER_ENTITLEMENT = "over-entitlement"  # beyond entitlement; nothing lendable fits
    NO_LENDABLE_CAPACITY = "no-lendable-capacity"
    OWN_JOBS_HOLD_CAPACITY = "own-jobs-hold-capacity"  # within entitlement, blocked by own work
    HELD_FOR_POWER = "held-for-power"  # would push facility power above the site cap
    NOT_EXAMINED = "not-examined"  # a smaller job of the same tenant already did not fit
    STORE_UNAVAILABLE = "store-unavailable"  # nothing starts that cannot be recorded
    WAITING_FOR_DEPENDENCY = "waiting-for-dependency"  # held until the jobs it waits for end
    DEPENDENCY_NEVER_MET = "dependency-never-met"  # what it waits for can no longer happen
    # rejected
    TOO_LARGE = "too-large"
    NO_CONTRACT = "no-contract"
    # preemption rules
    RECLAIM_FOR_ENTITLEMENT = "reclaim-for-entitlement"  # a lender needs its capacity back
    PREEMPT_FOR_SERVICE = "preempt-for-service"  # a service scale-up inside the entitlement
    PREEMPT_LOWER_PRIORITY = "preempt-lower-priority"  # the tenant's own less important work
    PREEMPT_LEAST_ATTAINED = "preempt-least-attained"  # LAS: a job with less service waits


@dataclass(frozen=True, slots=True)
class Place:
    job_id: str
    placement: Placement
    reason: Reason
    borrowed: bool = False


@dataclass(frozen=True, slots=True)
class Reclaim:
    """Tell a running job to checkpoint now and stop at ``deadline_s``."""

    victim_id: str
    beneficiary_id: str
    deadline_s: int
    rule: Reason


@dataclass(frozen=True, slots=True)
class Wait:
    job_id: str
    reason: Reason
    detail: str = ""
    promise: Placement | None = None  # room held for it while borrowers checkpoint


@dataclass(frozen=True, slots=True)
class Reject:
    job_id: str
    reason: Reason
    detail: str


@dataclass(frozen=True, slots=True)
class Behind:
    """The policy stopped at the queue's head (strict FIFO): every pending job from
    position ``index`` of the snapshot's queue on, the rejected aside (``count`` jobs),
    waits for this reason without a verdict of its own. A cycle costs what is ahead of
    the head, not the queue's length."""

    index: int
    count: int
    reason: Reason
    detail: str = ""


@dataclass(slots=True)
class Decisions:
    places: list[Place] = field(default_factory=list)
    reclaims: list[Reclaim] = field(default_factory=list)
    waits: list[Wait] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    # Reason for a tenant's jobs the cycle did not look at one by one.
    tenant_waits: dict[str, Wait] = field(default_factory=dict)
    behind: Behind | None = None

    def __len__(self) -> int:
        """Verdicts, one per job decided: the jobs waiting behind the head count too."""
        n = len(self.places) + len(self.reclaims) + len(self.waits) + len(self.rejects)
        return n + (self.behind.count if self.behind is not None else 0)

    def wait_count(self) -> int:
        """Verdicts that say "still waiting": each wait, and each job behind the head."""
        return len(self.waits) + (self.behind.count if self.behind is not None else 0)
