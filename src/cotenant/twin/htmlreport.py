"""One self-contained HTML file from one or more reports, rendered from the Jinja2
template ``templates/report.html``: matplotlib PNGs embedded as base64, the comparison
table, and per run its tenants, faults, money and energy where the run computed them.
Used by ``replay --html``; ``write_html`` takes any
list of :class:`~cotenant.twin.report.Report` so ``simulate --html`` can reuse it.

Figures (each only when the reports carry the data):
1. Utilisation over time, one line per policy (``series``: allocated per tenant).
2. Per-tenant allocation stacked against the total commitment (entitlement) and
   the healthy capacity, for one policy (the first unless ``stack_policy`` says).
3. CDFs of job completion time and of queueing delay, one line per policy
   (``series["jct_s"]``, ``series["queue_delay_s"]`` from replays).
4. Facility power over time against the site cap, one line per policy
   (``extra["metering"]["power"]``: metered runs, i.e. ``simulate`` and a replay with
   ``--html`` or ``--invoice``); the caption gives each peak against the cap.
5. Serving against training GPUs per tenant with inference services, over the run and
   over its first two days (``extra["services"]["series"]``, first report).
6. GPUs per provider over time for a federated run, beside the same run without its
   pools (``extra["federation"]["series"]``, first report that has one).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from jinja2 import Environment, PackageLoader, Template, select_autoescape

from cotenant.twin.comparison import comparison_rows, tenant_rows
from cotenant.twin.fedreport import federation_lines, provider_rows
from cotenant.twin.pipelines import pipeline_rows
from cotenant.twin.report import Report

DPI = 110
MAX_STACKED = 9  # tenants drawn one by one in the stacked plot; the rest are "others"


def write_html(
    reports: Sequence[Report],
    path: str | Path,
    title: str,
    *,
    stack_policy: str | None = None,
) -> Path:
    """Write the report file and return its path."""
    out = Path(path)
    out.write_text(render_html(reports, title, stack_policy=stack_policy), encoding="utf-8")
    return out


def render_html(reports: Sequence[Report], title: str, *, stack_policy: str | None = None) -> str:
    """The report page, from the ``templates/report.html`` Jinja2 template: the policies
    compared, the figures, and per run its tenants and, where the run computed them, its
    faults, money (invoices, economics) and energy."""
    note = ""
    if reports:
        r0 = reports[0]
        note = (
            f"{r0.scenario}: {r0.cluster_gpus:,} GPUs; "
            f"{_days(r0.end_s - r0.start_s)} simulated under the first policy."
        )
    figures = [
        ("Utilisation over time", utilisation_figure(reports)),
        (
            "Allocation per tenant against commitment",
            stacked_figure(_pick(reports, stack_policy)) if reports else None,
        ),
        ("Job completion time and queueing delay (CDF)", cdf_figure(reports)),
        (power_caption(reports), power_figure(reports)),
        (serving_caption(reports), serving_figure(reports)),
        (
            "GPUs per provider over time (dashed: the same run without its pools)",
            providers_figure(reports),
        ),
    ]
    page: str = _template().render(
        title=title,
        note=note,
        comparison=_comparison_rows(reports) if reports else [],
        figures=[{"caption": c, "png": png} for c, png in figures if png is not None],
        runs=[_run_context(r) for r in reports],
    )
    return page


def _template() -> Template:
    env = Environment(
        loader=PackageLoader("cotenant.twin", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("report.html")


def _run_context(r: Report) -> dict[str, Any]:
    faults = r.extra.get("faults")
    metering = r.extra.get("metering")
    return {
        "policy": r.policy,
        "tenants": tenant_rows(r),
        "faults": _faults(faults) if faults and faults.get("enabled") else None,
        "money": _money(metering) if metering and metering.get("invoices") else None,
        "energy": _energy(metering) if metering and metering.get("energy") else None,
        "pipelines": pipeline_rows(r.extra["pipelines"]) if r.extra.get("pipelines") else None,
        "providers": provider_rows(fed) if (fed := r.extra.get("federation")) else None,
        "federation_notes": federation_lines(fed) if fed else [],
    }


def _faults(f: dict[str, Any]) -> dict[str, Any]:
    rows = []
    for name, t in f["tenants"].items():
        top = sorted(t["by_cause"].items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        rows.append(
            {
                "tenant": name,
                "interruptions (planned)": f"{t['interruptions']:,} ({t['planned']:,})",
                "top causes": ", ".join(f"{c} {n:,}" for c, n in top) or "-",
                "lost to failures": f"{t['failure_lost_gpu_h']:,.0f}",
                "restart + checkpoint": f"{t['restart_gpu_h'] + t['checkpoint_gpu_h']:,.0f}",
                "goodput": "-" if t["goodput"] is None else f"{t['goodput']:.1%}",
                "SLA shortfall": f"{t['sla_shortfall_gpu_h']:,.0f}",
            }
        )
    goodput = f["cluster_goodput"]
    failures = sum(f["node_failures_by_cause"].values())
    note = (
        f"{failures:,} node or rack failures; cluster goodput "
        f"{'-' if goodput is None else f'{goodput:.1%}'}"
    )
    return {"tenants": rows, "note": note}


def _money(m: dict[str, Any]) -> dict[str, Any]:
    from cotenant.metering.money import format_usd

    invoices = []
    for inv in m["invoices"]:
        totals = [("Subtotal", inv["subtotal_cents"])]
        if inv["credits_cents"]:
            totals.append(("Credits", inv["credits_cents"]))
        totals.append(("Total", inv["total_cents"]))
        invoices.append(
            {
                "tenant": inv["tenant"],
                "month": inv["month"],
                "currency": inv["currency"],
                "price_kind": inv["price_kind"],
                "accrued": inv["accrued_over_run"],
                "lines": [
                    {
                        "description": ln["description"],
                        "quantity": ln["quantity"],
                        "unit_price": ln["unit_price"],
                        "amount": ln["amount"],
                    }
                    for ln in inv["lines"]
                ],
                "totals": [(label, format_usd(c)) for label, c in totals],
            }
        )
    ec = m.get("economics")
    economics, ec_note = [], ""
    if ec:
        economics = [
            {
                "tenant": t["tenant"],
                "pays per GPU-hour used": t["implied_price"] or "n/a",
                "uses of its entitlement": (
                    "n/a" if t["utilization"] is None else f"{t['utilization']:.1%}"
                ),
            }
            for t in ec["tenants"]
        ]
        be = ec.get("break_even_utilization")
        ec_note = (
            f"Revenue over the run {format_usd(ec['revenue_cents'])}, power "
            f"{format_usd(ec['power_cost_cents'])}, margin {ec['margin']}"
            + ("" if be is None else f"; owner break-even utilization {be:.1%}")
        )
    days = _days(int(m["end_s"]) - int(m["start_s"]))
    return {"invoices": invoices, "economics": economics, "economics_note": ec_note, "days": days}


def _energy(m: dict[str, Any]) -> dict[str, Any]:
    rows = [
        {
            "tenant": name,
            "facility energy (MWh)": f"{u['facility_mwh']:,.1f}",
            "water (L)": f"{u['water_l']:,.0f}",
            "CO2e (t)": f"{u['co2e_t']:,.1f}",
            "power cost": u["cost"],
        }
        for name, u in m["energy"]["per_tenant"].items()
    ]
    p = m.get("power") or {}
    power = ""
    if p:
        cap = p.get("cap_mw")
        against = "no cap" if cap is None else f"cap {cap:g} MW ({p['peak_share_of_cap']:.0%})"
        power = f"Peak facility power {p['peak_facility_mw']:.4g} MW, {against}."
    return {"tenants": rows, "power": power}


# -- figures ----------------------------------------------------------------------------------
def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _aligned(series: dict[str, Any], key: str) -> dict[str, np.ndarray]:
    """Per-tenant samples aligned with ``series["times"]``: a tenant first seen after the
    start has fewer samples, all at the end, so it is padded with zeros in front."""
    n = len(series.get("times", []))
    out: dict[str, np.ndarray] = {}
    for name, values in series.get(key, {}).items():
        v = np.asarray(values[-n:] if n else values, dtype=np.float64)
        out[name] = np.concatenate([np.zeros(n - v.size), v]) if v.size < n else v
    return out


def _hours(r: Report) -> np.ndarray:
    return (np.asarray(r.series.get("times", []), dtype=np.float64) - r.start_s) / 3600.0


def _time_axis(span_h: float) -> str:
    return "days since start" if span_h > 72 else "hours since start"


def _scale(span_h: float) -> float:
    return 24.0 if span_h > 72 else 1.0


def utilisation_figure(reports: Sequence[Report]) -> str | None:
    """One panel per policy (lines of several policies hide each other), shared axes."""
    drawn = [r for r in reports if len(r.series.get("times", [])) > 1]
    if not drawn:
        return None
    span = max(float(_hours(r)[-1]) for r in drawn)
    k = _scale(span)
    fig, axes = plt.subplots(
        len(drawn), 1, figsize=(10, 0.6 + 1.7 * len(drawn)), sharex=True, squeeze=False
    )
    cmap = plt.get_cmap("tab10")
    for i, (ax, r) in enumerate(zip(axes[:, 0], drawn, strict=True)):
        alloc = _aligned(r.series, "allocated")
        total = sum(alloc.values(), np.zeros(len(r.series["times"])))
        pct = 100.0 * total / r.cluster_gpus
        ax.fill_between(_hours(r) / k, pct, step="post", color=cmap(i % 10), alpha=0.75, lw=0)
        ax.set_ylim(0, 105)
        ax.set_yticks([0, 50, 100])
        ax.grid(alpha=0.3)
        ax.set_title(f"{r.policy}: {r.utilization:.1%} over the run", loc="left", fontsize=9)
    axes[len(drawn) // 2, 0].set_ylabel("GPUs allocated (%)")
    axes[-1, 0].set_xlabel(_time_axis(span))
    fig.tight_layout()
    return _png(fig)


def _pick(reports: Sequence[Report], policy: str | None) -> Report:
    if policy is not None:
        for r in reports:
            if r.policy == policy:
                return r
    return reports[0]


def stacked_figure(r: Report) -> str | None:
    times = r.series.get("times", [])
    if len(times) < 2:
        return None
    alloc = _aligned(r.series, "allocated")
    ent = _aligned(r.series, "entitled")
    order = sorted(alloc, key=lambda t: -float(alloc[t].sum()))
    shown = order[:MAX_STACKED]
    layers = [alloc[t] for t in shown]
    labels = list(shown)
    rest = order[MAX_STACKED:]
    if rest:
        layers.append(sum((alloc[t] for t in rest), np.zeros(len(times))))
        labels.append(f"{len(rest)} others")
    hours = _hours(r)
    span = float(hours[-1])
    x = hours / _scale(span)
    fig, ax = plt.subplots(figsize=(10, 4.2))
    cmap = plt.get_cmap("tab10")
    colours = [cmap(i % 10) for i in range(len(layers))]
    ax.stackplot(x, *layers, labels=labels, colors=colours, alpha=0.85, step="post")
    committed = sum(ent.values(), np.zeros(len(times)))
    if committed.any():
        ax.step(
            x, committed, where="post", c="black", lw=1.5, ls="--", label="commitments", zorder=4
        )
    healthy = r.series.get("healthy_gpus")
    if healthy is not None and len(healthy) == len(times):
        ax.step(x, healthy, where="post", color="grey", lw=4, alpha=0.4, label="healthy GPUs")
    ax.set_ylim(0, r.cluster_gpus * 1.05)
    ax.set_ylabel("GPUs")
    ax.set_xlabel(_time_axis(span))
    ax.set_title(f"under {r.policy}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return _png(fig)


def cdf_figure(reports: Sequence[Report]) -> str | None:
    if not any(r.series.get("jct_s") for r in reports):
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, key, label in (
        (axes[0], "jct_s", "job completion time"),
        (axes[1], "queue_delay_s", "queueing delay"),
    ):
        for r in reports:
            v = np.sort(np.asarray(r.series.get(key, []), dtype=np.float64))
            if v.size == 0:
                continue
            # On a log axis a zero is drawn at 1 s; the title says how many there are.
            y = np.arange(1, v.size + 1) / v.size
            ax.step(np.maximum(v, 1.0) / 3600.0, y, where="post", lw=1.3, label=r.policy)
        ax.set_xscale("log")
        ax.set_xlabel(f"{label} (hours, log scale)")
        ax.set_ylabel("fraction of jobs")
        ax.set_ylim(0, 1.01)
        ax.grid(alpha=0.3, which="both")
        ax.legend(loc="lower right", fontsize=8)
    axes[1].set_title("zero delays are drawn at 1 s", fontsize=9)
    fig.tight_layout()
    return _png(fig)


def _power(r: Report) -> dict[str, Any] | None:
    """The metering section's power table, if it has a series to draw."""
    p = (r.extra.get("metering") or {}).get("power")
    return p if p and len(p.get("facility_mw", [])) > 1 else None


def power_caption(reports: Sequence[Report]) -> str:
    """The power figure's heading, with each policy's exact peak against the cap."""
    peaks = []
    for r in reports:
        p = _power(r)
        if p is None:
            continue
        cap = p["cap_mw"]
        against = "no cap" if cap is None else f"cap {cap:g} MW, {p['peak_share_of_cap']:.0%}"
        peaks.append(f"{r.policy}: peak {p['peak_facility_mw']:.4g} MW ({against})")
    return "Facility power against the site cap" + (f" ({'; '.join(peaks)})" if peaks else "")


def power_figure(reports: Sequence[Report]) -> str | None:
    fig = power_plot(reports)
    return None if fig is None else _png(fig)


def power_plot(reports: Sequence[Report]) -> Any:
    """Facility power at the report's sample times (dots joined by lines: samples, not
    the exact step function; the caption has the exact peak), one line per policy, and
    the site cap as a dashed red line (none when the site has no cap). A matplotlib
    figure, or None when no report has a power series."""
    drawn = [(r, p) for r in reports if (p := _power(r)) is not None]
    if not drawn:
        return None
    span = max((p["series_times"][-1] - r.start_s) / 3600.0 for r, p in drawn)
    k = _scale(span)
    fig, ax = plt.subplots(figsize=(10, 3.6))
    top = 0.0
    for r, p in drawn:
        x = (np.asarray(p["series_times"], dtype=np.float64) - r.start_s) / 3600.0 / k
        ax.plot(x, p["facility_mw"], lw=1.3, marker=".", ms=3, label=r.policy)
        top = max(top, float(p["peak_facility_mw"]))
    caps = sorted({float(p["cap_mw"]) for _, p in drawn if p["cap_mw"] is not None})
    for cap in caps:
        ax.axhline(cap, color="red", ls="--", lw=1.5, label=f"site cap {cap:g} MW")
        top = max(top, cap)
    ax.set_ylim(0, top * 1.1 if top > 0 else 1.0)
    step = drawn[0][0].series.get("step_s")
    ax.set_ylabel("facility power (MW)" + (f", sampled every {step / 3600:g} h" if step else ""))
    ax.set_xlabel(_time_axis(span))
    if not caps:
        ax.set_title("no power cap set for the site", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def providers_figure(reports: Sequence[Report]) -> str | None:
    fig = providers_plot(reports)
    return None if fig is None else _png(fig)


def providers_plot(reports: Sequence[Report]) -> Any:
    """GPUs allocated on each provider over time, from the first report with a federation
    section; its run without the pools dashed beside it. None without one."""
    found = [r for r in reports if r.extra.get("federation")]
    if not found:
        return None
    r = found[0]
    fed = r.extra["federation"]
    runs = [("", fed["series"], "-")]
    if fed.get("baseline"):
        runs.append((" (no pools)", fed["baseline"]["series"], "--"))
    span = (r.end_s - r.start_s) / 3600.0
    k = _scale(span)
    fig, ax = plt.subplots(figsize=(10, 3.6))
    colours: dict[str, Any] = {}
    for suffix, series, style in runs:
        for name, s in series.items():
            if not s["times"]:
                continue
            x = (np.asarray(s["times"], dtype=np.float64) - r.start_s) / 3600.0 / k
            line = ax.plot(
                x, s["allocated"], ls=style, lw=1.3, color=colours.get(name), label=name + suffix
            )
            colours.setdefault(name, line[0].get_color())
    ax.set_ylabel("GPUs allocated")
    ax.set_xlabel(_time_axis(span))
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def _services(reports: Sequence[Report]) -> tuple[Report, dict[str, Any]] | None:
    for r in reports:
        sec = r.extra.get("services")
        if sec and len(sec.get("series", {}).get("times", [])) > 1:
            return r, sec
    return None


def serving_caption(reports: Sequence[Report]) -> str:
    found = _services(reports)
    if found is None:
        return "Serving and training GPUs"
    slo = "; ".join(
        f"{name}: SLO attainment {m['slo_attainment']:.3%}"
        for name, m in found[1]["services"].items()
    )
    return f"Serving and training GPUs per tenant ({slo})"


def serving_figure(reports: Sequence[Report]) -> str | None:
    """Per tenant with services: GPUs of its service replicas and of everything else it
    runs, stacked, over the run (left) and its first 48 hours (right)."""
    found = _services(reports)
    if found is None:
        return None
    r, sec = found
    series = sec["series"]
    hours = (np.asarray(series["times"], dtype=np.float64) - r.start_s) / 3600.0
    tenants = list(series["serving_gpus"])
    fig, axes = plt.subplots(
        len(tenants), 2, figsize=(11, 0.8 + 2.4 * len(tenants)), squeeze=False,
        gridspec_kw={"width_ratios": [2, 1]},
    )  # fmt: skip
    span = float(hours[-1])
    for row, name in zip(axes, tenants, strict=True):
        serving = np.asarray(series["serving_gpus"][name], dtype=np.float64)
        training = np.asarray(series["training_gpus"][name], dtype=np.float64)
        for ax, window in ((row[0], span), (row[1], min(span, 48.0))):
            keep = hours <= window
            k = _scale(window)
            x = hours[keep] / k
            ax.stackplot(
                x, serving[keep], training[keep], labels=["serving", "training and experiments"],
                colors=["tab:orange", "tab:blue"], alpha=0.85, step="post",
            )  # fmt: skip
            ax.set_xlabel(_time_axis(window))
            ax.grid(alpha=0.3)
        row[0].set_ylabel(f"{name}\nGPUs")
        row[1].set_title("first 48 h", fontsize=9)
    axes[0, 0].legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return _png(fig)


# -- tables -----------------------------------------------------------------------------------
def _comparison_rows(reports: Sequence[Report]) -> list[dict[str, str]]:
    if all("jct_s" in r.extra for r in reports):
        return comparison_rows(reports)
    return [
        {
            "policy": r.policy,
            "utilisation": f"{r.utilization:.1%}",
            "guarantee violations": f"{r.guarantee_violation_s():,} s",
            "wall": f"{r.engine.get('wall_s', 0.0):.1f} s",
        }
        for r in reports
    ]


def _days(s: int) -> str:
    return f"{s / 86_400:.1f} days" if s >= 86_400 else f"{s / 3600:.1f} hours"
