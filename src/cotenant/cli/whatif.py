"""``cotenant whatif``: a grid of scenario variants x seeds on Dask, with confidence
intervals (see ``cotenant.whatif``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cotenant.cli.common import console, days_seconds, err_console, fail, friendly

if TYPE_CHECKING:
    from rich.progress import Progress

    from cotenant.whatif.runner import Outcome


# The options (one alias each, so that the command reads as a list of them).
ScenarioArg = Annotated[str, typer.Argument(help="built-in scenario name or a TOML file")]
VaryOpt = Annotated[
    list[str] | None,
    typer.Option(
        help="KEY=V1,V2,...: a scenario value by its dotted path as in the file "
        "(tenants.NAME.contract.price.flat_fee_per_month, energy.power_cap_mw) or a run "
        "setting (run.failure_scale, run.notice.TENANT, run.spare_gpus); repeat to cross; "
        "the first values are the baseline"
    ),
]
StudyOpt = Annotated[
    str | None, typer.Option(help="a built-in study: notice, spares, price or power")
]
SeedsOpt = Annotated[int, typer.Option(min=1, help="runs per variant (seeds from the file's)")]
DaysOpt = Annotated[
    float | None,
    typer.Option(
        envvar="COTENANT_DAYS",
        help="days to simulate (fewer than written: the scenario's first days, as written)",
    ),
]
SchedulerOpt = Annotated[
    str | None,
    typer.Option(help="a Dask scheduler's address (tcp://HOST:8786); default: a local cluster"),
]
WorkersOpt = Annotated[
    int | None, typer.Option(min=1, help="local cluster size (default: the CPUs)")
]
SerialOpt = Annotated[bool, typer.Option("--serial", help="run here, one by one, without Dask")]
MetricOpt = Annotated[
    list[str] | None,
    typer.Option(help="show this metric (repeat; --json lists them all); default: the study's"),
]
TenantOpt = Annotated[
    str | None,
    typer.Option(help="the lessee a study looks at (default: the one taking all available)"),
]
PolicyOpt = Annotated[str | None, typer.Option(help="scheduling policy")]
CacheOpt = Annotated[
    Path | None,
    typer.Option(help="where finished runs are kept (default: ~/.cache/cotenant/whatif)"),
]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="keep no results")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print the study as JSON")]
HtmlOpt = Annotated[Path | None, typer.Option(help="also write an HTML report here")]
ProgressOpt = Annotated[bool, typer.Option(help="show a progress bar")]


@friendly
def whatif_command(
    scenario: ScenarioArg,
    vary: VaryOpt = None,
    study: StudyOpt = None,
    seeds: SeedsOpt = 5,
    days: DaysOpt = None,
    scheduler: SchedulerOpt = None,
    workers: WorkersOpt = None,
    serial: SerialOpt = False,
    metric: MetricOpt = None,
    tenant: TenantOpt = None,
    policy: PolicyOpt = None,
    cache: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    as_json: JsonOpt = False,
    html: HtmlOpt = None,
    progress: ProgressOpt = True,
) -> None:
    """Compare scenario variants over many seeded runs: means, 95% intervals, noise."""
    from cotenant.twin.scenario import Scenario
    from cotenant.whatif.cache import RunCache, default_dir
    from cotenant.whatif.report import render_text, write_html
    from cotenant.whatif.runner import Plan, execute
    from cotenant.whatif.studies import make_study
    from cotenant.whatif.summary import summarise
    from cotenant.whatif.variants import Variant, build, grid, parse_vary, read_base

    _check_options(days, policy, html, serial and scheduler is not None, bool(study or vary))
    base = read_base(scenario)
    plain: Scenario = build(base, Variant(), days=days).scenario
    axes = []
    the_study = None
    if study:
        the_study = make_study(study, base, plain, tenant)
        axes.extend(the_study.axes)
    for option in vary or []:
        axes.append(parse_vary(option))
    variants = grid(axes)
    for v in variants:
        build(base, v, days=days)  # every key and value checked before any run starts
    first = plain.seed
    plan = Plan(base, tuple(variants), tuple(range(first, first + seeds)), days, policy)
    tasks = plan.tasks()
    store = RunCache(None if no_cache else (cache or default_dir()))
    with _progress_bar(progress and sys.stderr.isatty()) as bar:
        task = bar.add_task("runs", total=len(tasks))
        outcome = execute(
            tasks,
            store,
            scheduler=scheduler,
            workers=workers,
            serial=serial,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    summary = summarise(plan, outcome, metric or (the_study.metrics if the_study else None))
    unknown = [m for m in metric or [] if summary.samples and m not in summary.samples]
    if unknown:  # the runs are cached: a rerun with the right name costs nothing
        fail(
            f"--metric {unknown[0]}: not a metric of these runs; have: {', '.join(summary.samples)}"
        )
    if the_study is not None:
        summary.study = the_study.name
        summary.question = the_study.question
        if summary.labels:
            summary.headline = the_study.answer(summary)
    sys.stdout.flush()
    _say_done(outcome, serial, summary.runs, len(tasks), store.root is not None)
    if html is not None and summary.labels:
        title = f"What if: {base.name}" + (f", study {the_study.name}" if the_study else "")
        write_html(summary, html, title)
    if as_json:
        print(json.dumps(summary.to_json(), indent=2))
    elif summary.labels:
        render_text(summary, console)
        if html is not None:
            console.print(f"HTML report: {html}")
    if outcome.cancelled:
        raise typer.Exit(130)


def _check_options(
    days: float | None, policy: str | None, html: Path | None, both: bool, asked: bool
) -> None:
    """Options that cannot work fail before any run starts."""
    from cotenant.scheduler.policies import get_policy

    if days is not None:
        days_seconds(days)
    if policy is not None:
        get_policy(policy, "--policy")
    if html is not None and not html.parent.is_dir():
        fail(f"--html: no directory {html.parent} to write {html.name} in")
    if both:
        fail("--serial and --scheduler: give one")
    if not asked:
        fail("give --vary KEY=V1,V2,... or --study notice|spares|price|power")


def _progress_bar(show: bool) -> Progress:
    """The runs' progress bar on stderr (rich.progress loads when runs start)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]runs"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=not show,
    )


def _say_done(outcome: Outcome, serial: bool, finished: int, tasks: int, cached: bool) -> None:
    """How many runs ran, where, and whether the study was cancelled (on stderr)."""
    where = f" on {outcome.workers} workers" if outcome.ran and not serial else ""
    if outcome.overhead is not None and not serial:
        where += f" (wall x workers / run time: {outcome.overhead:.2f})"
    err_console.print(
        f"{outcome.ran} runs done, {outcome.cached} from the cache, in {outcome.wall_s:.1f} s"
        + where,
        highlight=False,
    )
    if outcome.cancelled:
        err_console.print(
            f"cancelled: {finished} of {tasks} runs finished"
            + (" and are cached; run the same command again to finish" if cached else ""),
            style="yellow",
            highlight=False,
        )
