"""Steps shared by policies: rejecting the impossible, backfill shadows, the power budget."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from cotenant.cluster.state import Placement
from cotenant.model.jobs import JobSpec
from cotenant.scheduler.decisions import Decisions, Reason, Reject, Wait
from cotenant.scheduler.placement import never_fits
from cotenant.scheduler.snapshot import RunningJob, Snapshot
from cotenant.scheduler.workspace import Workspace


def reject_if_impossible(snap: Snapshot, job: JobSpec, out: Decisions) -> bool:
    """Reject a gang no empty cluster could hold; True if rejected. The engine's snapshot
    names such jobs (``never_fit``, decided once at submit), so this is a set lookup."""
    if snap.never_fit is not None and job.id not in snap.never_fit:
        return False
    why = never_fits(snap.state.topo, job.gpus, job.constraint, job.accelerator, job.providers)
    if why is None:
        return False
    out.rejects.append(Reject(job.id, Reason.TOO_LARGE, why))
    return True


def shadow(
    now: int,
    need: int,
    available: int,
    running: Iterable[RunningJob],
    on: np.ndarray | None = None,
) -> tuple[int | None, int]:
    """EASY backfill reservation by GPU count: when ``need`` GPUs will be free, and how many
    spare GPUs there will be then. ``running`` must be in expected-end order. With ``on``
    (the nodes the job may ever use: its accelerator kind, its providers), a run frees only
    its GPUs on those nodes: an end on another kind or cluster makes the job no room."""
    if available >= need:
        return now, available - need
    for r in running:
        available += r.gpus if on is None else r.gpus_on(on)
        if available >= need:
            return max(now, r.expected_end_s), available - need
    return None, 0


def capacity_by_kind(snap: Snapshot) -> dict[str | None, int]:
    return snap.state.topo.capacity_by_kind()


class PowerBudget:
    """The snapshot's power headroom (``Snapshot.power_headroom_gpus``) as a budget of GPUs
    that may start this cycle; ``left`` is None when the site has no power cap.

    Before a placement a policy asks ``allows(gpus)``; after it, ``spend(gpus)``; a job that
    does not fit the budget is not placed and waits with ``HELD_FOR_POWER`` (``hold``).
    ``held`` counts those jobs this cycle."""

    __slots__ = ("future", "held", "left")

    def __init__(self, headroom_gpus: int | None, stopping_gpus: int = 0) -> None:
        self.left = headroom_gpus
        # Once the runs being reclaimed have stopped and the jobs waiting for them have
        # started: what a job promised room now can count on at its deadline.
        self.future = None if headroom_gpus is None else headroom_gpus + stopping_gpus
        self.held = 0

    def allows(self, gpus: int) -> bool:
        """Whether ``gpus`` more may start now without taking power promised to a job
        that waits for reclaims."""
        if self.left is None or self.future is None:
            return True
        return gpus <= self.left and gpus <= self.future

    def future_short(self, gpus: int) -> int:
        """GPUs of power missing for ``gpus`` more once the reclaims under way are done."""
        return 0 if self.future is None else max(0, gpus - self.future)

    def spend(self, gpus: int) -> None:
        if self.left is not None:
            self.left -= gpus
        if self.future is not None:
            self.future -= gpus

    def keep_now(self, gpus: int) -> None:
        """A job waits for power with a deadline: the headroom there is now is kept for
        it (up to ``gpus``), or a job that can wait longer would start on it and leave
        this one short when its own reclaims end."""
        if self.left is not None:
            self.left -= min(max(self.left, 0), gpus)

    def promise(self, gpus: int, freeing: int = 0) -> None:
        """A job waits for room that ``freeing`` GPUs of new reclaims make: it takes
        ``gpus`` of the future's power, and those reclaims give some back."""
        if self.future is not None:
            self.future += freeing - gpus

    def hold(self, job_id: str, out: Decisions, promise: Placement | None = None) -> None:
        self.held += 1
        out.waits.append(Wait(job_id, Reason.HELD_FOR_POWER, self.detail(), promise))

    def detail(self) -> str:
        return f"{max(0, self.left or 0):,} GPUs of power headroom under the site cap"


def power_budget(ws: Workspace) -> PowerBudget:
    """This cycle's power budget, kept with the policy's workspace (one per ``decide``)."""
    got = ws.cache.get("power-budget")
    if not isinstance(got, PowerBudget):
        headroom = ws.snap.power_headroom_gpus
        # (only under a cap: every cycle builds a budget, and the running set is large)
        stopping = 0 if headroom is None else sum(r.gpus for r in ws.snap.reclaiming_runs())
        got = PowerBudget(headroom, stopping)
        ws.cache["power-budget"] = got
    return got
