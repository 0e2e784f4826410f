"""Worlds the adversarial search found breaking a guarantee, kept as regression tests.

Each file in tests/fixtures/adversarial/ is a world as ``World.describe()`` writes it
(``bench/bench_adversarial.py`` prints a failing one that way); each failed before its
fix in scheduler/policies/contract.py (or the engine's guarantee monitor):

- hastened-reclaim: a reclaim already under way for another job is hastened to a 0 s grace;
- borrowers-drawing-owed-power: borrowers drawing the power an entitled job is owed are
  reclaimed for it;
- power-for-a-gpu-promise: a job promised room reclaimed for GPUs also gets its power;
- earliest-grace-deadline-first: power freed for a 0 s grace is not taken by an older
  promise that can wait;
- power-kept-for-the-earlier-deadline: a job waiting for power keeps the headroom there is
  now from a promise with a later deadline;
- zero-grace-replica-starts-on-free-room: a job waiting for its promised room (0 s grace)
  starts at once on room a repair freed, rather than at the reclaim's deadline 1 s later;
- zero-grace-rival-reclaim-hastened: a 0 s-grace job's room is free in GPUs but closed by
  a rival's borrower already being reclaimed (60 s grace, for another tenant); the
  reclaim is hastened to the job's grace (it was 59 s late: only GPU counts were checked);
- reclaim-decided-this-cycle-hastened: after a rack fails, one tenant's job (60 s grace)
  reclaims a borrower; a 0 s-grace tenant's jobs needing the same room later in the same
  cycle hasten that reclaim (they were 60 s late: only reclaims of earlier cycles were
  looked at);
- promised-job-held-for-power-keeps-it (a fix in the guarantee monitor, engine/core.py):
  under a site power cap, a tenant's promised 16-GPU job held for power keeps the power
  there is now, as the policy keeps it, so the tenant's 1-GPU job behind it is not
  counted owed (the monitor said 3,000 s late while the tenant's own work held the power);
- rival-pairs-keep-their-own-level (scheduler/snapshot.py): t0 is a node apart from t3
  and a rack apart from t2; a tenant had one level for all its rivals, so t0 kept a rack
  apart from t3 while t3 was placed only a node apart from t0, closing t0's room (59 s
  late). Each pair now keeps its own level, the same from both sides;
- zero-grace-power-hastened: under a site power cap, a 0 s-grace job waits for power that
  a reclaim made a second earlier for another tenant (300 s grace) frees; that reclaim is
  now hastened to the job's grace, as reclaims for GPUs are (it was 58 s late);
- promise-left-for-room-elsewhere-returned (written by hand from colossus-lease's
  lessee-lab-exp-9449, 74 s late on day 27): A's 8-GPU job waits for a borrower's node
  to be reclaimed; A's own job ends and the 8-GPU job starts on the room it freed; the
  node it was promised must go back to the cycle, so A's 16-GPU job gets the rest of the
  freed room plus that node (it was held for nobody, the freed room was lent, and the
  16-GPU job waited for a second reclaim: 210 s late);
- all-available-under-notice-2s-late (deep profile, seed 0 on beda636): 8 nodes, a
  service, two rack-uplink failures, two tenants under notice; the same fix: room a
  promise gave up was lent to t0 at 6,626 s and had to be reclaimed for t3's job,
  which started 2 s past its grace; it now starts at once on that room.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from adversarial import World, run_world

CASES = sorted((Path(__file__).resolve().parents[1] / "fixtures" / "adversarial").glob("*.json"))


def test_the_found_worlds_are_there() -> None:
    assert len(CASES) == 13


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_found_world_keeps_every_guarantee(path: Path) -> None:
    run_world(World.from_json(path.read_text()))
