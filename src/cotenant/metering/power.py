"""Power over a run: facility power over time against the site cap, and the work the
scheduler held back for power (design doc 0005, "Power over time" and "Site power cap").

* ``power_series_w``: facility power at the report's sample times, from the ledger.
* ``PowerHolds``: counts, over the whole run, the jobs held with reason
  ``held-for-power`` (by the policy, or by the engine's cap: ``engine/powercap.py``),
  the GPU-seconds of demand that waited so, and the cycles in which a tenant's
  borrowing was stopped for power.
* ``power_section``: the report's ``metering.power`` table built from both.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from cotenant.metering.energy import EnergyReport, SiteEnergy
from cotenant.metering.ledger import UsageLedger
from cotenant.model.accelerators import CATALOGUE
from cotenant.model.jobs import JobState
from cotenant.scheduler.decisions import Decisions, Reason

if TYPE_CHECKING:
    from cotenant.engine.core import Engine

H = 3600.0


def power_series_w(
    ledger: UsageLedger,
    site: SiteEnergy,
    installed: Mapping[str, tuple[int, int]],
    times: Iterable[int],
) -> list[float]:
    """Facility power (W) at each of ``times``: every node on, every installed GPU idle,
    plus the busy step of each GPU the ledger shows allocated at that instant."""
    at = np.asarray(list(times), dtype=np.int64)
    it_w = np.zeros(at.size, dtype=np.float64)
    for name, (gpus, nodes) in sorted(installed.items()):
        kind = CATALOGUE[name]
        it_w += gpus * kind.idle_watts + nodes * site.node_overhead_watts
        recs = [r for r in ledger.records() if r.accelerator == name]
        if not recs:
            continue
        g = np.asarray([r.gpus for r in recs], dtype=np.float64)
        starts = np.asarray([r.start_s for r in recs], dtype=np.int64)
        ends = np.asarray([r.end_s for r in recs], dtype=np.int64)
        busy = _running_sum(starts, g, at) - _running_sum(ends, g, at)
        it_w += busy * (kind.busy_watts - kind.idle_watts)
    return [float(w) for w in it_w * site.pue]


def _running_sum(
    keys: np.ndarray[Any, np.dtype[np.int64]],
    values: np.ndarray[Any, np.dtype[np.float64]],
    at: np.ndarray[Any, np.dtype[np.int64]],
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """``sum(values[keys <= t])`` for each t in ``at``."""
    order = np.argsort(keys, kind="stable")
    csum = np.concatenate(([0.0], np.cumsum(values[order])))
    return np.asarray(csum[np.searchsorted(keys[order], at, side="right")], dtype=np.float64)


class PowerHolds:
    """Counts what is held for power over a whole run: by the policy, or by the engine's
    filter of the policy's starts (``engine/powercap.py``, applied before the watchers).

    A wait makes no event and the engine keeps only a pending job's latest reason, so
    the report could see only the jobs still held at the end. This watches every cycle's
    decisions (``Engine.cycle_watchers``: the policy is observed, not wrapped, and nothing
    is changed) and counts, per tenant:

    * ``jobs``: distinct jobs held with ``held-for-power`` at least once;
    * ``held_gpu_s``: GPU-seconds of demand that waited so, each held job's GPUs from the
      cycle that held it to the next cycle (nothing starts between cycles);
    * ``borrowing_held_cycles``: cycles in which the tenant's jobs were not looked at one
      by one because lending stopped for power (``contract``: entitled demand waits for
      power, so nothing is lent).

    ``cycles`` counts the cycles that held anything for power. Construct it before the
    run and call ``finish(end_s)`` after."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.jobs: dict[str, set[str]] = defaultdict(set)
        self.held_gpu_s: dict[str, int] = defaultdict(int)
        self.borrowing_held_cycles: dict[str, int] = defaultdict(int)
        self.cycles = 0
        self._open: dict[str, tuple[int, str, int]] = {}  # job -> (held since, tenant, GPUs)
        engine.cycle_watchers.append(self.observe)

    def observe(self, now: int, d: Decisions) -> None:
        """One cycle's decisions, at ``now``."""
        self._close(now)
        held = False
        for w in d.waits:
            if w.reason is Reason.HELD_FOR_POWER:
                run = self.engine.jobs[w.job_id]
                self._open[w.job_id] = (now, run.tenant, run.spec.gpus)
                self.jobs[run.tenant].add(w.job_id)
                held = True
        for tenant, w in d.tenant_waits.items():
            if w.reason is Reason.HELD_FOR_POWER:
                self.borrowing_held_cycles[tenant] += 1
                held = True
        self.cycles += held

    def finish(self, end_s: int) -> None:
        """Close the waits still open at the end of the run."""
        self._close(end_s)

    def _close(self, now: int) -> None:
        for since, tenant, gpus in self._open.values():
            self.held_gpu_s[tenant] += gpus * max(0, now - since)
        self._open.clear()

    def to_json_dict(self) -> dict[str, Any]:
        tenants = sorted(set(self.jobs) | set(self.held_gpu_s) | set(self.borrowing_held_cycles))
        return {
            "jobs": sum(len(j) for j in self.jobs.values()),
            "held_gpu_h": sum(self.held_gpu_s.values()) / H,
            "cycles": self.cycles,
            "per_tenant": {
                t: {
                    "jobs": len(self.jobs.get(t, ())),
                    "held_gpu_h": self.held_gpu_s.get(t, 0) / H,
                    "borrowing_held_cycles": self.borrowing_held_cycles.get(t, 0),
                }
                for t in tenants
            },
        }


def jobs_held_at_end(engine: Engine) -> list[str]:
    """Jobs still pending with reason ``held-for-power``, in id order."""
    return sorted(
        r.id
        for r in engine.jobs.values()
        if r.state is JobState.PENDING and r.reason == Reason.HELD_FOR_POWER.value
    )


def power_section(
    engine: Engine,
    ledger: UsageLedger,
    site: SiteEnergy,
    installed: Mapping[str, tuple[int, int]],
    energy: EnergyReport,
    holds: PowerHolds | None,
) -> dict[str, Any]:
    """The report's ``metering.power``: peak against the cap (exact, from the energy
    report's sweep), facility power at the accounting's sample times (``series_times``,
    ``facility_mw``), and the work held for power (``held_for_power``; None when the run
    was not watched by ``PowerHolds``).

    The accounting samples the state in force up to each sample time (a job that starts
    or ends at that very second counts from the next sample on), so the ledger, whose
    intervals are half-open, is read one second before each sample; at the horizon's end
    that is also what keeps a run from ending idle."""
    times = list(engine.acct.series.times)
    series = power_series_w(ledger, site, installed, [t - 1 for t in times])
    cap = site.power_cap_mw
    return {
        "cap_mw": cap,
        "peak_facility_mw": energy.peak_facility_w / 1e6,
        "peak_it_mw": energy.peak_it_w / 1e6,
        "over_cap": energy.over_power_cap,
        "peak_share_of_cap": None if cap is None else energy.peak_facility_w / (cap * 1e6),
        "jobs_held_for_power_at_end": len(jobs_held_at_end(engine)),
        "held_for_power": None if holds is None else holds.to_json_dict(),
        "series_times": times,
        "facility_mw": [round(w / 1e6, 6) for w in series],
    }


__all__ = ["PowerHolds", "jobs_held_at_end", "power_section", "power_series_w"]
