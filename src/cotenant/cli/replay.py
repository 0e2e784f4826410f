"""``cotenant replay TRACE``: replay a real trace under several policies and compare.

Registered in ``cli/main.py``; like every command module it imports ``cli.common``, never
``cli.main`` (``python -m cotenant.cli.main`` runs that module as ``__main__`` and imports
this one at its end, so an import back would load it twice).

``--invoice`` and ``--html`` meter every policy's run (``replay.run_policy(meter=...)``):
``--invoice`` prints, per policy, the metering summary (energy, power against the cap,
economics) and each tenant's invoice per calendar month; ``--json`` then carries the
``metering`` section in every report. Commitments are priced by ``--price-terms`` or,
without it, at ``replay.REPLAY_PRICE`` (design doc 0005, "Metering a replay").
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from cotenant.cli.common import console, err_console, friendly
from cotenant.model.errors import SpecError
from cotenant.tablefit import Col, print_fitted

if TYPE_CHECKING:  # the engine and NumPy load when a replay runs, not for --help
    from cotenant.cluster.topology import ClusterSpec
    from cotenant.traces.base import Trace
    from cotenant.twin.report import Report

DEFAULT_POLICIES = "fifo-backfill,contract"
SHOW_PROBLEMS = 5
PHILLY_COLUMNS = {"timestamp", "duration", "num_gpus", "cluster"}
CSV_COLUMNS = {"id", "tenant", "submit_s", "gpus", "duration_s"}


# The options of ``replay_command``.
TraceOpt = Annotated[
    Path, typer.Argument(help="trace file (Philly, cotenant CSV) or directory (Alibaba 2023)")
]
FmtOpt = Annotated[
    str | None,
    typer.Option("--format", help="philly, alibaba-2023 or csv (default: guess from the file)"),
]
ClusterOpt = Annotated[
    str | None,
    typer.Option(
        help="a preset, NxG (16x8: 16 nodes of 8 GPUs), pooled:N (N GPUs, no topology) or a "
        "TOML file with a cluster table (default: the trace's nodes, or sized to the trace)"
    ),
]
PolicyOpt = Annotated[
    str, typer.Option(help="comma-separated policies to compare (see `cotenant policies`)")
]
TenantsFromTraceOpt = Annotated[
    bool,
    typer.Option(
        "--tenants-from-trace",
        help="the trace's quotas become fixed commitments (tenants without one only borrow)",
    ),
]
QuotaScaleOpt = Annotated[
    str | None,
    typer.Option(
        help="scale the trace's quotas (with --tenants-from-trace): a factor (0.5, 96/352; "
        "each quota rounded) or 'fit' (shared out to add up to --cluster exactly); "
        "without --cluster the cluster is sized to the scaled quotas"
    ),
]
LimitOpt = Annotated[
    int | None, typer.Option(min=1, max=10**9, help="replay only the first N jobs")
]
StartOpt = Annotated[
    str | None, typer.Option(help="keep jobs submitted from this ISO date-time (UTC)")
]
EndOpt = Annotated[
    str | None, typer.Option(help="keep jobs submitted before this ISO date-time (UTC)")
]
MaxGpusOpt = Annotated[
    int | None,
    typer.Option(help="a job asking for more GPUs is a bad row (default: the cluster's size)"),
]
MaxJobGpusOpt = Annotated[
    int | None,
    typer.Option(help="keep only jobs of at most N GPUs (a filter; the rest are not bad rows)"),
]
StrictOpt = Annotated[bool, typer.Option("--strict", help="refuse the trace at its first bad row")]
AsJsonOpt = Annotated[bool, typer.Option("--json", help="print the comparison as JSON")]
HtmlOpt = Annotated[
    Path | None,
    typer.Option(help="also write a self-contained HTML report here (with power over time)"),
]
InvoiceOpt = Annotated[
    bool,
    typer.Option(
        "--invoice",
        help="meter each policy's run and print its invoices per tenant and month "
        "(needs --tenants-from-trace; with --json they are in each report's metering)",
    ),
]
PriceTermsOpt = Annotated[
    Path | None,
    typer.Option(
        help="TOML price terms for the commitments ([price], [tenants.NAME]); default: "
        "$1.875/GPU-h committed, $3.00/GPU-h overage, no SLA credit"
    ),
]
ProgressOpt = Annotated[bool, typer.Option(help="show a progress bar (on a terminal)")]


def replay_command(
    trace: TraceOpt,
    fmt: FmtOpt = None,
    cluster: ClusterOpt = None,
    policy: PolicyOpt = DEFAULT_POLICIES,
    tenants_from_trace: TenantsFromTraceOpt = False,
    quota_scale: QuotaScaleOpt = None,
    limit: LimitOpt = None,
    start: StartOpt = None,
    end: EndOpt = None,
    max_gpus: MaxGpusOpt = None,
    max_job_gpus: MaxJobGpusOpt = None,
    strict: StrictOpt = False,
    as_json: AsJsonOpt = False,
    html: HtmlOpt = None,
    invoice: InvoiceOpt = False,
    price_terms: PriceTermsOpt = None,
    progress: ProgressOpt = True,
) -> None:
    """Replay a real cluster trace under each policy and compare them.

    Job completion time, queueing, makespan, utilisation, preemptions
    and per-tenant figures, per policy."""
    friendly(_replay)(
        trace,
        fmt,
        cluster,
        policy,
        tenants_from_trace,
        quota_scale,
        limit,
        start,
        end,
        max_gpus,
        max_job_gpus,
        strict,
        as_json,
        html,
        invoice,
        price_terms,
        progress,
    )


def _replay(
    path: Path,
    fmt: str | None,
    cluster_arg: str | None,
    policy: str,
    tenants_from_trace: bool,
    quota_scale: str | None,
    limit: int | None,
    start: str | None,
    end: str | None,
    max_gpus: int | None,
    max_job_gpus: int | None,
    strict: bool,
    as_json: bool,
    html: Path | None,
    invoice: bool,
    price_terms: Path | None,
    progress: bool,
) -> None:
    from cotenant.metering.run import MeteringSettings
    from cotenant.model.time import parse_time
    from cotenant.traces import load_trace
    from cotenant.twin.replay import (
        default_cluster,
        load_price_terms,
        parse_cluster_arg,
        replay,
        scale_quotas,
        select_jobs,
    )

    policies, scale = _check_options(
        policy, tenants_from_trace, invoice, price_terms, quota_scale, cluster_arg
    )
    prices = load_price_terms(price_terms) if price_terms is not None else None
    meter = MeteringSettings() if invoice or html is not None else None
    kind = fmt or guess_format(path)
    spec = parse_cluster_arg(cluster_arg) if cluster_arg is not None else None
    bound = _gpu_bound(max_gpus, spec)
    t = load_trace(
        kind,
        path,
        strict=strict,
        start_s=parse_time(start, "--start") if start is not None else None,
        end_s=parse_time(end, "--end") if end is not None else None,
        max_gpus=bound,
    )
    t = select_jobs(t, max_job_gpus=max_job_gpus, limit=limit)
    if scale is not None:
        t = scale_quotas(t, scale, None if spec is None else spec.total_gpus)
    _warn_bad_rows(t)
    if not t.jobs:
        raise SpecError("trace", "no jobs left to replay (check --start, --end and --limit)")
    spec = spec if spec is not None else default_cluster(t)
    show = progress and not as_json and sys.stderr.isatty()
    reports = _run_with_progress(
        err_console,
        show,
        lambda cb: replay(
            t,
            spec,
            policies,
            tenants_from_trace=tenants_from_trace,
            progress=cb,
            prices=prices,
            meter=meter,
        ),
    )
    if html is not None:
        from cotenant.twin.htmlreport import write_html

        write_html(reports, html, f"{t.name} replay: {len(t.jobs):,} jobs on {spec.name}")
    if as_json:
        print(json.dumps(_json_out(t, spec, reports), indent=2))
        return
    _print_text(t, spec, reports, tenants_from_trace, invoice)
    if html is not None:
        console.print(f"HTML report: {html}")


def _gpu_bound(max_gpus: int | None, spec: ClusterSpec | None) -> int | None:
    """The most GPUs a job may ask for: ``--max-gpus``, at most the cluster's size."""
    if max_gpus is not None and max_gpus < 1:
        raise SpecError("--max-gpus", f"must be at least 1, got {max_gpus}")
    if spec is None:
        return max_gpus
    return spec.total_gpus if max_gpus is None else min(max_gpus, spec.total_gpus)


def _print_text(
    t: Trace, spec: ClusterSpec, reports: list[Report], tenants_from_trace: bool, invoice: bool
) -> None:
    """The trace in one line, its notes, the comparison and (``--invoice``) the invoices."""
    console.print(
        f"[bold]{t.name}[/bold]: {len(t.jobs):,} jobs, {len(t.tenants)} tenants, "
        f"{t.gpu_seconds / 3600:,.0f} GPU-hours, on {spec.name} ({spec.total_gpus:,} GPUs); "
        f"quotas as commitments: {'yes' if tenants_from_trace else 'no'}"
    )
    for note in t.notes:
        console.print(f"  note: {note}", style="dim", markup=False, highlight=False)
    render_comparison(console, reports)
    if invoice:
        render_invoices(console, reports)


def _check_options(
    policy: str,
    tenants_from_trace: bool,
    invoice: bool,
    price_terms: Path | None,
    quota_scale: str | None,
    cluster_arg: str | None,
) -> tuple[list[str], Fraction | str | None]:
    """The policies to run and the quota scale, once the options agree with each other."""
    from cotenant.scheduler.policies import get_policy
    from cotenant.twin.replay import parse_quota_scale

    policies = [p.strip() for p in policy.split(",") if p.strip()]
    if not policies:
        raise SpecError("--policy", "give at least one policy")
    for p in policies:
        get_policy(p, "--policy")
    for flag, given in (("--invoice", invoice), ("--price-terms", price_terms is not None)):
        if given and not tenants_from_trace:
            raise SpecError(
                flag,
                "only commitments are billed, and without --tenants-from-trace no tenant has "
                "one; give --tenants-from-trace (the trace's quotas become commitments)",
            )
    if quota_scale is not None and not tenants_from_trace:
        raise SpecError(
            "--quota-scale", "scales the commitments: give --tenants-from-trace as well"
        )
    scale = parse_quota_scale(quota_scale) if quota_scale is not None else None
    if scale == "fit" and cluster_arg is None:
        raise SpecError("--quota-scale", "'fit' scales the quotas to --cluster: give one")
    return policies, scale


def _warn_bad_rows(t: Trace) -> None:
    """The rows a lenient load skipped, on stderr (the first few, then a count)."""
    if not t.problems:
        return
    lines = [
        f"warning: {len(t.problems)} bad row(s) skipped in {t.source} (--strict refuses them):"
    ]
    lines += [f"  line {p.line}: {p.field}: {p.problem}" for p in t.problems[:SHOW_PROBLEMS]]
    if len(t.problems) > SHOW_PROBLEMS:
        lines.append(f"  and {len(t.problems) - SHOW_PROBLEMS} more")
    err_console.print(
        "\n".join(lines), style="yellow", markup=False, highlight=False, soft_wrap=True
    )


def _json_out(t: Trace, spec: ClusterSpec, reports: list[Report]) -> dict[str, Any]:
    """``replay --json``: the trace, the cluster and one report per policy."""
    return {
        "trace": {
            "name": t.name,
            "source": t.source,
            "jobs": len(t.jobs),
            "tenants": list(t.tenants),
            "notes": list(t.notes),
            "bad_rows": len(t.problems),
            "problems": [
                {"line": p.line, "field": p.field, "problem": p.problem}
                for p in t.problems[:SHOW_PROBLEMS]
            ],
        },
        "cluster": {"name": spec.name, "gpus": spec.total_gpus},
        "reports": [r.to_json_dict() for r in reports],
    }


def _run_with_progress(err: Console, show: bool, run: Any) -> list[Report]:
    """Run the replay with a progress bar per policy (jobs ended, simulated day)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn(
            "{task.completed:,.0f}/{task.total:,.0f} jobs ended, day {task.fields[day]:.1f}"
        ),
        TimeElapsedColumn(),
        console=err,
        disable=not show,
    )
    tasks: dict[str, Any] = {}
    state = {"start": 0, "last": 0.0}

    def tick(policy: str, now: int, ended: int, total: int) -> None:
        task = tasks.get(policy)
        if task is None:
            task = tasks[policy] = bar.add_task(policy, total=total, day=0.0)
            state["start"] = now
        wall = time.monotonic()
        if wall - state["last"] >= 0.1 or ended >= total:
            state["last"] = wall
            bar.update(task, completed=ended, day=(now - state["start"]) / 86_400)

    with bar:
        reports: list[Report] = run(tick if show else None)
    return reports


def guess_format(path: Path) -> str:
    """A directory is Alibaba 2023; a file is told by its header."""
    if path.is_dir():
        return "alibaba-2023"
    if not path.is_file():
        raise SpecError("TRACE", f"trace file not found: {path}")
    try:
        with path.open(encoding="utf-8-sig", errors="replace") as f:
            header = f.readline()
    except OSError as e:
        raise SpecError("TRACE", f"cannot read {path}: {e.strerror}") from None
    cols = {c.strip() for c in header.split(",")}
    if cols >= PHILLY_COLUMNS:
        return "philly"
    if cols >= CSV_COLUMNS:
        return "csv"
    raise SpecError(
        "--format",
        f"cannot tell the format of {path} from its header; give --format "
        "(philly, alibaba-2023 or csv)",
    )


# -- tables -----------------------------------------------------------------------------------
def _print_table(console: Console, title: str, rows: list[dict[str, str]]) -> None:
    """Stacked into narrower tables where the console is too narrow; no figure is cut."""
    names = list(rows[0]) if rows else []
    cols = [Col(n, number=i > 0, whole=True) for i, n in enumerate(names)]
    print_fitted(console, title, cols, [list(r.values()) for r in rows])


def render_comparison(console: Console, reports: Sequence[Report]) -> None:
    from cotenant.twin.comparison import comparison_rows, tenant_rows

    _print_table(
        console,
        "Policies compared (JCT = end - submit; queue = first start - submit; "
        "utilisation over the run and while jobs arrive)",
        comparison_rows(reports, compact=True),
    )
    for r in reports:
        _print_table(console, f"Per tenant under {r.policy}", tenant_rows(r))


def render_invoices(console: Console, reports: Sequence[Report]) -> None:
    """Per policy: the metering summary, then every invoice (tenant by month)."""
    from rich.markup import escape

    from cotenant.cli.invoice import print_invoices
    from cotenant.metering.run import metering_text

    for r in reports:
        m = r.extra["metering"]
        console.print("")
        console.print(
            f"[bold]Metering under {escape(r.policy)}[/bold] "
            f"(price terms: {escape(str(m['price_terms']))})",
            highlight=False,
            soft_wrap=True,
        )
        for line in metering_text(m):
            console.print(line, highlight=False, markup=False)
        print_invoices(m)
