"""A study's report: the answer first, then per metric each variant's mean and 95%
interval and its difference to the baseline (a Rich table); or one self-contained HTML
page from ``templates/whatif.html`` with, per metric, each variant's interval side by
side (a matplotlib PNG embedded as base64, like the run report)."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cotenant.whatif.summary import (
    Summary,
    days,
    fmt_diff,
    fmt_interval,
    is_share,
    metric_name,
)


def render_text(s: Summary, console: Console) -> None:
    head = f"[bold]{s.scenario}[/bold]"
    if s.study:
        head += f", study [bold]{s.study}[/bold]"
    console.print(
        f"{head}: {len(s.labels)} variants x {len(s.seeds)} seeds, {days(s.days)} each"
        + ("" if s.complete else f" [yellow](incomplete: {s.runs} runs finished)[/yellow]")
    )
    for line in s.headline:
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    if s.headline:
        console.print()
    t = Table(
        title=f"mean ± 95% CI; difference to baseline {s.baseline!r} (Welch 95% CI)",
        title_justify="left",
    )
    t.add_column("metric")
    t.add_column("variant")
    t.add_column("mean ± 95% CI", justify="right")
    t.add_column("vs baseline", justify="right")
    t.add_column("", justify="left")
    for m in s.metrics:
        labels = [lab for lab in s.labels if s.cell(m, lab) is not None]
        for i, label in enumerate(labels):
            c = s.cell(m, label)
            assert c is not None
            d = s.diff(m, label)
            t.add_row(
                metric_name(m) if i == 0 else "",
                label,
                fmt_interval(m, c),
                _vs(s, m, label) if d is None else fmt_diff(m, d),
                "" if d is None else ("noise" if d.within_noise else ""),
                end_section=i == len(labels) - 1,
            )
    console.print(t)
    console.print(
        "noise: the difference's 95% interval contains 0 (no difference can be told from the runs)."
    )


def _vs(s: Summary, m: str, label: str) -> str:
    if label == s.baseline:
        return "baseline"
    return "-" if s.cell(m, s.baseline) is None else "(1 run)"


def write_html(s: Summary, path: Path, title: str) -> Path:
    path.write_text(render_html(s, title), encoding="utf-8")
    return path


def render_html(s: Summary, title: str) -> str:
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(
        loader=PackageLoader("cotenant.twin", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    sections: list[dict[str, Any]] = []
    for m in s.metrics:
        rows = []
        for label in s.labels:
            c = s.cell(m, label)
            if c is None:
                continue
            d = s.diff(m, label)
            rows.append(
                {
                    "variant": label,
                    "mean ± 95% CI": fmt_interval(m, c),
                    "vs baseline": _vs(s, m, label) if d is None else fmt_diff(m, d),
                    "": "" if d is None else ("within noise" if d.within_noise else ""),
                }
            )
        sections.append({"name": metric_name(m), "png": interval_png(s, m), "rows": rows})
    page: str = env.get_template("whatif.html").render(
        title=title,
        question=s.question,
        answer=s.headline,
        note=(
            f"{len(s.labels)} variants x {len(s.seeds)} seeds (seeds {s.seeds[0]}.."
            f"{s.seeds[-1]}), {days(s.days)} each; baseline {s.baseline!r}"
            + ("" if s.complete else f"; incomplete: {s.runs} runs finished")
        )
        if s.seeds
        else "",
        sections=sections,
    )
    return page


def interval_png(s: Summary, m: str) -> str | None:
    """Each variant's mean with its 95% interval, side by side; the seeds' values as dots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [lab for lab in s.labels if s.cell(m, lab) is not None]
    if not labels:
        return None
    fig, ax = plt.subplots(figsize=(max(4.0, 1.3 * len(labels) + 1.5), 3.0))
    for i, lab in enumerate(labels):
        c = s.cell(m, lab)
        assert c is not None
        xs = s.samples[m][lab]
        ax.scatter([i] * len(xs), xs, s=10, color="#999", zorder=1)
        if c.low is not None and c.high is not None:
            ax.errorbar(
                [i],
                [c.mean],
                yerr=[[c.mean - c.low], [c.high - c.mean]],
                fmt="o",
                color="#1f77b4" if i else "#d62728",
                capsize=6,
                zorder=2,
            )
        else:
            ax.plot([i], [c.mean], "o", color="#1f77b4")
    ax.set_xticks(range(len(labels)), labels, rotation=20 if len(labels) > 4 else 0)
    ax.set_ylabel(metric_name(m))
    if is_share(m):
        from matplotlib.ticker import PercentFormatter

        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_title("mean and 95% CI per variant (red: baseline; grey: one run each)", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    # "tight": a title wider than a narrow figure (two variants) is kept whole, not cut
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


__all__ = ["interval_png", "render_html", "render_text", "write_html"]
