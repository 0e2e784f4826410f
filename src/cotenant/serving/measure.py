"""What the services got: the report's ``services`` section (docs/design/0007-serving.md,
"Measures"), and its text lines.

Per service, exactly over the run ``[start, end)`` (no sampling): the number of replicas
*serving* is a step function (a replica serves from ``startup_s`` after each start until
it stops) and demand is a step function, so the run splits into pieces on which both are
constant. On each piece the modelled p99 meets the target iff the serving count is at
least the replicas the model needs for that demand (the tail falls with the count), so
SLO attainment is the share of time on such pieces. Requests served are
``min(demand, serving x throughput)`` and dropped ``max(0, demand - serving x throughput)``,
integrated over time.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from cotenant.serving.autoscaler import Autoscaler, ServiceRecord
from cotenant.serving.queueing import replicas_needed_many
from cotenant.serving.scaling import ScaleReason

H = 3600.0


def serving_steps(
    intervals: Iterable[tuple[int, int]], startup_s: int, start_s: int, end_s: int
) -> tuple[np.ndarray, np.ndarray]:
    """Times and replica counts serving from each time on, from ``start_s``; a run
    ``(a, b)`` serves over ``[a + startup_s, b)``, or ``[start_s, b)`` if it began then."""
    delta: dict[int, int] = {start_s: 0}
    for a, b in intervals:
        # The run opens with the service already up: replicas placed at its first instant
        # serve at once; every later start (scale-up, restart) pays the start-up time.
        lo = start_s if a <= start_s else a + startup_s
        hi = min(b, end_s)
        if hi > lo:
            delta[lo] = delta.get(lo, 0) + 1
            delta[hi] = delta.get(hi, 0) - 1
    times = np.array(sorted(t for t in delta if t < end_s), dtype=np.int64)
    counts = np.cumsum([delta[int(t)] for t in times]).astype(np.int64)
    return times, counts


def service_measures(scaler: Autoscaler, i: int) -> dict[str, Any]:
    rec: ServiceRecord = scaler.services[i]
    spec = rec.cfg.spec
    start, end = scaler.start_s, scaler.end_s
    runs = scaler.serving_intervals(i)
    st, sc = serving_steps(runs, spec.startup_s, start, end)
    curve = rec.curve
    inside = curve.times_s[(curve.times_s > start) & (curve.times_s < end)]
    cuts = np.union1d(np.union1d(st, inside), [start])
    widths = np.diff(np.append(cuts, end)).astype(np.float64)
    serving = sc[np.searchsorted(st, cuts, side="right") - 1]
    ci = np.searchsorted(curve.times_s, cuts, side="right") - 1
    rps = np.where(ci >= 0, curve.rps[np.maximum(ci, 0)], 0.0)
    limit = max(int(serving.max(initial=0)), spec.min_replicas, 1)
    need = replicas_needed_many(
        rps,
        spec.throughput_rps_per_replica,
        spec.latency_target_s,
        spec.latency_quantile,
        0,
        limit,
        spec.servers_per_replica,
    )
    met = serving >= need
    capacity = serving * spec.throughput_rps_per_replica
    total = float(widths.sum())
    served = float((np.minimum(rps, capacity) * widths).sum())
    dropped = float((np.maximum(rps - capacity, 0.0) * widths).sum())
    missed = widths[~met]
    ups = sum(d.reason is ScaleReason.SCALE_UP for d in rec.decisions)
    alloc_s = sum(b - a for a, b in runs)
    return {
        "tenant": spec.tenant,
        "gpus_per_replica": spec.gpus_per_replica,
        "throughput_rps_per_replica": spec.throughput_rps_per_replica,
        "servers_per_replica": spec.servers_per_replica,
        "latency_target_s": spec.latency_target_s,
        "latency_quantile": spec.latency_quantile,
        "startup_s": spec.startup_s,
        "lookahead_s": rec.plan.lookahead_s,
        "headroom": rec.cfg.scaling.headroom,
        "slo_attainment": float(widths[met].sum()) / total if total else 1.0,
        "slo_missed_s": int(missed.sum()),
        "slo_missed_pieces": int(missed.size),
        "peak_demand_rps": float(rps.max(initial=0.0)),
        "peak_replicas_serving": int(serving.max(initial=0)),
        "min_replicas_serving": int(serving.min()) if serving.size else 0,
        "peak_replicas_asked": max((d.to for d in rec.decisions), default=0),
        "replica_hours": alloc_s / H,
        "gpu_hours": alloc_s * spec.gpus_per_replica / H,
        "serving_replica_hours": float((serving * widths).sum()) / H,
        "requests_served": served,
        "requests_dropped": dropped,
        "dropped_share": dropped / (served + dropped) if served + dropped else 0.0,
        "replicas_started": len(runs),
        "scale_ups": ups,
        "scale_downs": len(rec.decisions) - ups,
        "own_runs_preempted": rec.own_preempted,
        "own_runs_preempted_gpus": rec.own_preempted_gpus,
        "borrowers_reclaimed": rec.borrowers_reclaimed,
        "borrowers_reclaimed_gpus": rec.borrowers_reclaimed_gpus,
        "replicas_reclaimed": rec.replicas_reclaimed,
    }


def services_report(scaler: Autoscaler) -> dict[str, Any]:
    """The report's ``services`` section: per service, per tenant, and the series of
    serving and training GPUs per tenant at the report's sample times."""
    scaler.advance(scaler.end_s)
    services = {rec.cfg.name: service_measures(scaler, i) for i, rec in enumerate(scaler.services)}
    tenants = {
        name: {
            "services": [s for s, m in services.items() if m["tenant"] == name],
            "training_gpu_h_given_up": ts.given_up_gpu_s / H,
            "serving_gpus_peak": max(ts.serving_samples, default=0),
            "serving_gpus_min": min(ts.serving_samples, default=0),
            "training_gpus_min": min(ts.training_samples, default=0),
            "training_gpus_max": max(ts.training_samples, default=0),
        }
        for name, ts in scaler.tenants.items()
    }
    return {
        "services": services,
        "tenants": tenants,
        "series": {
            "step_s": scaler.sample_step_s,
            "times": list(scaler.sample_times),
            "serving_gpus": {n: ts.serving_samples for n, ts in scaler.tenants.items()},
            "training_gpus": {n: ts.training_samples for n, ts in scaler.tenants.items()},
        },
    }


def services_text(section: dict[str, Any]) -> list[str]:
    """Lines for the rendered report."""
    lines = ["Inference services (modelled p99 with the replicas serving; see docs 0007)"]
    for name, m in section["services"].items():
        lines.append(
            f"  {name} ({m['tenant']}): SLO attainment {m['slo_attainment']:.4%} "
            f"(p{m['latency_quantile'] * 100:g} <= {m['latency_target_s']:g} s; "
            f"{m['slo_missed_s']:,} s missed); replicas serving {m['min_replicas_serving']:,}"
            f"-{m['peak_replicas_serving']:,}; {m['replica_hours']:,.0f} replica-h "
            f"({m['gpu_hours']:,.0f} GPU-h)"
        )
        lines.append(
            f"    requests served {m['requests_served']:,.0f}, dropped "
            f"{m['requests_dropped']:,.0f} ({m['dropped_share']:.4%}); "
            f"{m['scale_ups']:,} scale-ups, {m['scale_downs']:,} scale-downs; made room by "
            f"reclaiming {m['borrowers_reclaimed']:,} borrowed runs and preempting "
            f"{m['own_runs_preempted']:,} of the tenant's own"
        )
    for name, t in section["tenants"].items():
        lines.append(
            f"  {name}: serving {t['serving_gpus_min']:,}-{t['serving_gpus_peak']:,} GPUs, "
            f"training {t['training_gpus_min']:,}-{t['training_gpus_max']:,} GPUs "
            f"(hourly samples); training GPU-h given up to serving "
            f"{t['training_gpu_h_given_up']:,.0f}"
        )
    return lines
