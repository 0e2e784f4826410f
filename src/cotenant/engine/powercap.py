"""The site power cap as a filter the engine owns (design doc 0005, "Site power cap").

The built-in policies budget power themselves (``PowerBudget``): they know which job
to hold and keep reservations and promises in power as well as in GPUs. But a policy is
anything with ``decide`` (a user's own, one written before the cap), and the cap is the
site's, not the policy's: so the engine passes every cycle's decisions through
``hold_for_power`` before it applies them. Starts are kept in the policy's order while
the snapshot's power headroom holds them; a start past it becomes a wait with
``held-for-power``, keeping any room promised to the job. With a policy that budgets
power nothing is held here: the decisions come back as they went in.

Pure: a snapshot and decisions in, decisions out (the input is not changed).
"""

from __future__ import annotations

from dataclasses import replace

from cotenant.cluster.state import Placement
from cotenant.scheduler.decisions import Decisions, Reason, Wait
from cotenant.scheduler.snapshot import Snapshot


def hold_for_power(snap: Snapshot, d: Decisions) -> tuple[Decisions, tuple[Wait, ...]]:
    """``d`` with every start that the power headroom (``snap.power_headroom_gpus``, less
    what the cycle's earlier starts take) cannot hold turned into a ``held-for-power``
    wait; and those waits. ``d`` itself, and no waits, when all fit or there is no cap."""
    left = snap.power_headroom_gpus
    if left is None or not d.places:
        return d, ()
    sizes = [p.placement.total_gpus for p in d.places]
    if sum(sizes) <= left:
        return d, ()
    kept = []
    held: list[Wait] = []
    for place, gpus in zip(d.places, sizes, strict=True):
        if gpus <= left:
            kept.append(place)
            left -= gpus
            continue
        detail = (
            f"{left:,} GPUs of power headroom under the site cap "
            f"(the policy started {gpus:,}; held by the engine)"
        )
        held.append(Wait(place.job_id, Reason.HELD_FOR_POWER, detail))
    promised = _promises(snap, {w.job_id for w in held})
    waits = tuple(replace(w, promise=promised.get(w.job_id)) for w in held)
    return replace(d, places=kept, waits=[*d.waits, *waits]), waits


def _promises(snap: Snapshot, job_ids: set[str]) -> dict[str, Placement]:
    """The room promised to each of ``job_ids`` (jobs waiting for reclaims) in the
    snapshot: a held job keeps it, as a policy holding it for power would."""
    return {
        p.spec.id: p.promise for p in snap.pending if p.promise is not None and p.spec.id in job_ids
    }
