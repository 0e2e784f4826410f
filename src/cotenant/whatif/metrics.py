"""The numbers a study compares, read from one run's report: plain floats by name.

Cluster-wide (the owner's side): ``revenue_usd`` (what every tenant's contract earns the
owner over the run), ``margin_usd`` (revenue less power and fixed costs),
``utilisation`` (used over installed GPU-hours), ``break_even_utilisation``,
``goodput`` (useful share of the GPU-hours used, after failures, restarts and
checkpoints), ``sla_shortfall_gpu_h``, ``held_for_power_gpu_h`` (GPU-hours of work the
power cap held back), ``jobs_held_for_power``, ``peak_power_share`` (peak facility
power over the cap), ``idle_gpu_h``.

Per tenant ``T``: ``T.fees_usd`` (what it pays over the run), ``T.used_gpu_h``,
``T.usd_per_useful_gpu_h`` (its fees over its useful GPU-hours), ``T.goodput``,
``T.queue_p50_h`` and ``T.queue_p99_h`` (queueing delay).

For a tenant that gives notice during the run: ``T.refill_share`` (of the GPU-hours its
ramp-down gave up after the notice, the share other tenants used) and ``T.refill_h``
(hours from the notice until the cluster's idle GPUs are back within 1% of the cluster
of their level at the notice; 0 if they never rose above it; the rest of the run if
they did not come back: a censored value).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cotenant.twin.report import Report
from cotenant.twin.scenario import Scenario

H = 3600.0


def metrics_of(report: Report, scenario: Scenario) -> dict[str, float]:
    """Every metric the run can give (a metric the run did not compute is left out)."""
    out: dict[str, float] = {}
    metering: dict[str, Any] = report.extra.get("metering", {})
    eco = metering.get("economics", {})
    if eco:
        out["revenue_usd"] = eco["revenue_cents"] / 100
        out["margin_usd"] = eco["margin_cents"] / 100
        out["utilisation"] = float(eco["cluster_utilization"])
        if eco.get("break_even_utilization") is not None:
            out["break_even_utilisation"] = float(eco["break_even_utilization"])
    else:
        out["utilisation"] = float(report.utilization)
    power = metering.get("power", {})
    if power:
        held = power.get("held_for_power", {})
        out["held_for_power_gpu_h"] = float(held.get("held_gpu_h", 0.0))
        out["jobs_held_for_power"] = float(held.get("jobs", 0))
        if power.get("peak_share_of_cap") is not None:
            out["peak_power_share"] = float(power["peak_share_of_cap"])
    faults: dict[str, Any] = report.extra.get("faults") or {}
    per_fault: dict[str, Any] = faults.get("tenants", {}) if faults.get("enabled") else {}
    if faults.get("enabled") and faults.get("cluster_goodput") is not None:
        out["goodput"] = float(faults["cluster_goodput"])
        out["sla_shortfall_gpu_h"] = float(
            sum(r.get("sla_shortfall_gpu_h", 0.0) for r in per_fault.values())
        )
    series = report.series
    times = np.asarray(series.get("times", []), dtype=float)
    step = float(series.get("step_s", 3600))
    if len(times):
        idle = _idle(series)
        out["idle_gpu_h"] = float(idle.sum() * step / H)
    fees = {t["tenant"]: t["revenue_cents"] / 100 for t in eco.get("tenants", [])}
    for name, r in report.tenants.items():
        used = float(r["used_gpu_h"])
        out[f"{name}.used_gpu_h"] = used
        out[f"{name}.queue_p50_h"] = float(r["queue_p50_s"]) / H
        out[f"{name}.queue_p99_h"] = float(r["queue_p99_s"]) / H
        good = per_fault.get(name, {}).get("goodput")
        if good is not None:
            out[f"{name}.goodput"] = float(good)
        if name in fees:
            out[f"{name}.fees_usd"] = fees[name]
            useful = used * (float(good) if good is not None else 1.0)
            if useful > 0:
                out[f"{name}.usd_per_useful_gpu_h"] = fees[name] / useful
    for c in scenario.contracts():
        g = c.notice.given_at
        if g is not None and scenario.start_s <= g < scenario.end_s and len(times):
            out.update(_refill(series, c.tenant, g, step))
    return out


def _idle(series: dict[str, Any]) -> np.ndarray:
    healthy = np.asarray(series["healthy_gpus"], dtype=float)
    alloc = sum(
        (np.asarray(v, dtype=float) for v in series.get("allocated", {}).values()),
        np.zeros_like(healthy),
    )
    idle: np.ndarray = np.maximum(healthy - alloc, 0.0)
    return idle


def _refill(series: dict[str, Any], tenant: str, given: int, step: float) -> dict[str, float]:
    times = np.asarray(series["times"], dtype=float)
    after = times >= given
    if not after.any():
        return {}
    i0 = int(np.argmax(after))
    entitled = np.asarray(series.get("entitled", {}).get(tenant, []), dtype=float)
    alloc = series.get("allocated", {})
    others = sum(
        (np.asarray(v, dtype=float) for k, v in alloc.items() if k != tenant),
        np.zeros(len(times)),
    )
    out: dict[str, float] = {}
    if len(entitled) == len(times):
        freed = np.maximum(entitled[i0] - entitled[i0:], 0.0)
        gained = np.clip(others[i0:] - others[i0], 0.0, None)
        total = float(freed.sum())
        if total > 0:
            out[f"{tenant}.refill_share"] = float(np.minimum(gained, freed).sum()) / total
    idle = _idle(series)[i0:]
    healthy = np.asarray(series["healthy_gpus"], dtype=float)
    tol = 0.01 * float(healthy.max())
    above = np.flatnonzero(idle > idle[0] + tol)
    if not len(above):
        out[f"{tenant}.refill_h"] = 0.0
    else:
        back = np.flatnonzero(idle[above[0] :] <= idle[0] + tol)
        k = above[0] + back[0] if len(back) else len(idle) - 1
        out[f"{tenant}.refill_h"] = float(k * step / H)
    return out


__all__ = ["metrics_of"]
