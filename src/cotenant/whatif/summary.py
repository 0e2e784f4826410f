"""A study's numbers: per variant and metric the mean with its 95% interval, and the
difference to the baseline variant (the first) with Welch's interval, flagged when it is
within the noise. Also how each metric reads (units), for the text and HTML reports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cotenant.whatif.runner import Outcome, Plan
from cotenant.whatif.stats import LEVEL, Difference, Interval, mean_ci, welch


@dataclass
class Summary:
    scenario: str
    days: float
    seeds: list[int]
    labels: list[str]  # variants, the baseline first
    metrics: list[str]  # the metrics shown, in order
    samples: dict[str, dict[str, list[float]]]  # metric -> variant -> one value per seed
    cells: dict[str, dict[str, Interval]]
    diffs: dict[str, dict[str, Difference]]
    complete: bool = True
    runs: int = 0
    headline: list[str] = field(default_factory=list)
    study: str | None = None
    question: str | None = None

    @property
    def baseline(self) -> str:
        return self.labels[0]

    def cell(self, metric: str, label: str) -> Interval | None:
        return self.cells.get(metric, {}).get(label)

    def diff(self, metric: str, label: str) -> Difference | None:
        return self.diffs.get(metric, {}).get(label)

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "study": self.study,
            "question": self.question,
            "answer": self.headline,
            "days": self.days,
            "seeds": self.seeds,
            "level": LEVEL,
            "baseline": self.baseline,
            "variants": self.labels,
            "complete": self.complete,
            "runs": self.runs,
            "metrics": {
                m: {
                    label: {
                        **c.to_json(),
                        "values": self.samples[m][label],
                        "vs_baseline": (
                            d.to_json() if (d := self.diff(m, label)) is not None else None
                        ),
                    }
                    for label, c in self.cells.get(m, {}).items()
                }
                for m in self.samples
            },
            "shown": self.metrics,
        }


def summarise(plan: Plan, outcome: Outcome, shown: Sequence[str] | None = None) -> Summary:
    """Group the finished runs by variant (in seed order) and compute the intervals. A
    variant with no finished run is left out; ``complete`` says whether any run is
    missing."""
    labels: list[str] = []
    samples: dict[str, dict[str, list[float]]] = {}
    n_runs = 0
    for v in plan.variants:
        got = [
            outcome.results[k]
            for s in plan.seeds
            if (k := _task_key(plan, v, s)) in outcome.results
        ]
        if not got:
            continue
        labels.append(v.label)
        n_runs += len(got)
        names = set.intersection(*(set(r["metrics"]) for r in got))
        for m in names:
            samples.setdefault(m, {})[v.label] = [float(r["metrics"][m]) for r in got]
    cells = {m: {lab: mean_ci(xs) for lab, xs in by.items()} for m, by in samples.items()}
    diffs: dict[str, dict[str, Difference]] = {}
    if labels:
        base = labels[0]
        for m, by in samples.items():
            if base in by:
                diffs[m] = {lab: welch(xs, by[base]) for lab, xs in by.items() if lab != base}
    order = [m for m in (shown or default_metrics(samples)) if m in samples]
    days = (plan.days if plan.days is not None else _days(plan)) or 0.0
    return Summary(
        scenario=plan.base.name,
        days=days,
        seeds=list(plan.seeds),
        labels=labels,
        metrics=order,
        samples={m: samples[m] for m in sorted(samples)},
        cells=cells,
        diffs=diffs,
        complete=n_runs == len(plan.variants) * len(plan.seeds),
        runs=n_runs,
    )


def _task_key(plan: Plan, variant: Any, seed: int) -> str:
    from cotenant.whatif.runner import RunTask

    return RunTask(plan.base, variant, seed, plan.days, plan.policy).key


def _days(plan: Plan) -> float:
    from cotenant.model.time import parse_duration

    raw = plan.base.raw.get("duration", "30d")
    return parse_duration(raw, "duration") / 86_400


DEFAULT = (
    "revenue_usd",
    "margin_usd",
    "utilisation",
    "goodput",
    "held_for_power_gpu_h",
    "sla_shortfall_gpu_h",
)


def default_metrics(samples: dict[str, Any]) -> list[str]:
    return [m for m in DEFAULT if m in samples]


# How each metric reads -------------------------------------------------------------

_NAMES = {
    "revenue_usd": "owner revenue",
    "margin_usd": "owner margin",
    "utilisation": "utilisation",
    "break_even_utilisation": "break-even utilisation",
    "goodput": "goodput",
    "sla_shortfall_gpu_h": "SLA shortfall (GPU-h)",
    "held_for_power_gpu_h": "held for power (GPU-h)",
    "jobs_held_for_power": "jobs held for power",
    "peak_power_share": "peak power / cap",
    "idle_gpu_h": "idle (GPU-h)",
    "fees_usd": "fees",
    "used_gpu_h": "used (GPU-h)",
    "usd_per_useful_gpu_h": "$/useful GPU-h",
    "queue_p50_h": "queue p50",
    "queue_p99_h": "queue p99",
    "refill_share": "refilled share",
    "refill_h": "refill time",
}


def metric_name(m: str) -> str:
    tenant, _, short = m.rpartition(".")
    name = _NAMES.get(short, short)
    return f"{tenant} {name}" if tenant else name


def _kind(m: str) -> str:
    short = m.rpartition(".")[2]
    if short.endswith("usd_per_useful_gpu_h"):
        return "price"
    if short.endswith("_usd"):
        return "usd"
    if short in {"utilisation", "goodput", "break_even_utilisation", "refill_share"} or (
        short == "peak_power_share"
    ):
        return "pct"
    if short.endswith("_gpu_h"):
        return "gpuh"
    if short.endswith("_h"):
        return "hours"
    return "num"


def days(d: float) -> str:
    """``1 day``, ``2.5 days``."""
    return f"{d:g} day" if d == 1 else f"{d:g} days"


def is_share(m: str) -> bool:
    """A metric that is a fraction (shown as a percentage)."""
    return _kind(m) == "pct"


def fmt(m: str, x: float, signed: bool = False) -> str:
    """One value of metric ``m`` as a reader wants it ($1.25B, 97.1%, 1,234 GPU-h, 3.5 h)."""
    kind = _kind(m)
    sign = "+" if signed and x > 0 else ""
    if kind == "usd":
        return sign + _usd(x)
    if kind == "price":
        return f"{sign}{'-' if x < 0 else ''}${abs(x):,.2f}"
    if kind == "pct":
        return f"{sign}{x * 100:.1f}%" if not signed else f"{sign}{x * 100:.1f} pts"
    if kind == "gpuh":
        return f"{sign}{x:,.0f}"
    if kind == "hours":
        return f"{sign}{x:,.1f} h"
    return f"{sign}{x:,.3g}"


def fmt_half(m: str, half: float | None) -> str:
    if half is None:
        return "(1 run)"
    kind = _kind(m)
    if kind == "pct":
        return f"± {half * 100:.1f}%"
    return "± " + fmt(m, half)


def fmt_interval(m: str, c: Interval) -> str:
    return f"{fmt(m, c.mean)} {fmt_half(m, c.half)}"


def fmt_diff(m: str, d: Difference) -> str:
    c = d.diff
    if _kind(m) == "pct":
        text = f"{c.mean * 100:+.1f} pts"
        return text if c.half is None else f"{text} ± {c.half * 100:.1f}"
    text = fmt(m, c.mean, signed=True)
    return text if c.half is None else f"{text} ± {fmt(m, c.half)}"


def _usd(x: float) -> str:
    a = abs(x)
    s = "-" if x < 0 else ""
    if a >= 1e9:
        return f"{s}${a / 1e9:,.3f}B"
    if a >= 1e6:
        return f"{s}${a / 1e6:,.2f}M"
    if a >= 1e3:
        return f"{s}${a / 1e3:,.1f}k"
    return f"{s}${a:,.2f}"


__all__ = [
    "Summary",
    "days",
    "default_metrics",
    "fmt",
    "fmt_diff",
    "fmt_interval",
    "is_share",
    "metric_name",
    "summarise",
]
