"""The comparison tables of a replay: one row per policy, one row per tenant. The
terminal (``cli/replay.py``) and the HTML report (``htmlreport.py``) both print them."""

from __future__ import annotations

from collections.abc import Sequence

from cotenant.twin.report import Report


def dur(s: float) -> str:
    """Seconds as a short human duration."""
    if s < 120:
        return f"{s:.0f}s"
    if s < 7200:
        return f"{s / 60:.0f}m"
    if s < 4 * 86_400:
        return f"{s / 3600:.1f}h"
    return f"{s / 86_400:.1f}d"


def comparison_rows(reports: Sequence[Report], compact: bool = False) -> list[dict[str, str]]:
    """One row of formatted figures per policy; ``compact`` joins avg/p50/p99 in one cell
    (for a terminal), otherwise one column each (HTML)."""
    rows = []
    for r in reports:
        e = r.extra
        jobs = e["jobs"]
        row = {"policy": r.policy, "jobs done": f"{jobs['completed']:,}/{jobs['total']:,}"}
        for key, label in (("jct_s", "JCT"), ("queue_delay_s", "queue")):
            st = e[key]
            if compact:
                row[f"{label} avg/p50/p99"] = "/".join(dur(st[k]) for k in ("avg", "p50", "p99"))
            else:
                row.update({f"{label} {k}": dur(st[k]) for k in ("avg", "p50", "p99")})
        row["makespan"] = dur(e["makespan_s"])
        util = f"{r.utilization:.1%}"
        arrivals = f"{e.get('utilization_arrivals', r.utilization):.1%}"
        if compact:
            row["util. run/arrivals"] = f"{util}/{arrivals}"
        else:
            row["utilisation (run)"] = util
            row["utilisation (arrivals)"] = arrivals
        row["preemptions"] = f"{e['preemptions']:,}"
        row["guarantee violations" if not compact else "violations"] = (
            f"{e['guarantee_violation_s']:,} s"
        )
        row["wall"] = f"{r.engine['wall_s']:.1f} s"
        rows.append(row)
    return rows


def tenant_rows(report: Report) -> list[dict[str, str]]:
    rows = []
    for name, t in report.tenants.items():
        hours = (report.end_s - report.start_s) / 3600
        commit = t["entitled_gpu_h"] / hours if hours > 0 else 0.0
        rows.append(
            {
                "tenant": name,
                "commitment": f"{commit:,.0f}" if commit else "-",
                "GPU-hours": f"{t['used_gpu_h']:,.0f}",
                "queue p50": dur(t["queue_p50_s"]),
                "queue p99": dur(t["queue_p99_s"]),
                "borrowed GPU-h": f"{t['borrowed_gpu_h']:,.0f}",
                "lent GPU-h": f"{t['lent_gpu_h']:,.0f}",
                "done/submitted": f"{t['completed']:,}/{t['submitted']:,}",
            }
        )
    return rows
