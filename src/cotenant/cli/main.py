"""The ``cotenant`` command.

Errors a user can fix print one line naming the field; no tracebacks.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from cotenant.cli.common import console, days_seconds, err_console, fail, friendly
from cotenant.cli.deferred import DeferredGroup, import_rich_help

import_rich_help()

# Every command of ``cotenant``, registered here and in the command modules; the root
# builds each one only when it runs or shows its own help (cli/deferred.py).
commands = typer.Typer()


class Root(DeferredGroup):
    deferred = commands


app = typer.Typer(
    name="cotenant",
    help="Turn a GPU lease contract into enforced, metered, audited capacity.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=Root,
)


def _version(value: bool) -> None:
    if value:
        from cotenant import __version__

        print(f"cotenant {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    """Turn a GPU lease contract into enforced, metered, audited capacity."""


# The options of ``simulate``.
ScenarioOpt = Annotated[str, typer.Argument(help="built-in scenario name or a TOML file")]
PolicyOpt = Annotated[str | None, typer.Option(help="scheduling policy (default: the scenario's)")]
AsJsonOpt = Annotated[bool, typer.Option("--json", help="print the report as JSON")]
OutOpt = Annotated[
    Path | None, typer.Option(help="also write the JSON report (with time series) here")
]
DaysOpt = Annotated[
    float | None,
    typer.Option(
        envvar="COTENANT_DAYS",
        help="days to simulate (fewer than written: the scenario's first days, as written)",
    ),
]
WhyOpt = Annotated[list[str] | None, typer.Option(help="explain a job's state at the end")]
InvoiceOpt = Annotated[
    bool, typer.Option("--invoice", help="print the invoices after the report (text)")
]
HtmlOpt = Annotated[
    Path | None,
    typer.Option(
        help="also write a self-contained HTML report here (utilisation, allocation "
        "against commitment, power against the cap)"
    ),
]
ProgressOpt = Annotated[bool, typer.Option(help="show a progress bar")]
FailureScaleOpt = Annotated[
    float | None,
    typer.Option(help="multiply the scenario's failure rates (0: no failures)"),
]
WideOpt = Annotated[
    bool, typer.Option("--wide", help="one wide table each, whatever the terminal's width")
]


@commands.command()
@friendly
def simulate(
    scenario: ScenarioOpt,
    policy: PolicyOpt = None,
    as_json: AsJsonOpt = False,
    out: OutOpt = None,
    days: DaysOpt = None,
    why: WhyOpt = None,
    invoice: InvoiceOpt = False,
    html: HtmlOpt = None,
    progress: ProgressOpt = True,
    failure_scale: FailureScaleOpt = None,
    wide: WideOpt = False,
) -> None:
    """Run a scenario on the digital twin (simulated time) and report."""
    import math
    from dataclasses import replace

    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from cotenant.scheduler.policies import get_policy
    from cotenant.twin.runtime import simulate as run_sim
    from cotenant.twin.scenario import load_scenario

    sc = load_scenario(scenario)
    if policy is not None:
        get_policy(policy, "--policy")
    if days is not None:
        sc = replace(sc, duration_s=days_seconds(days))
    if failure_scale is not None and not (math.isfinite(failure_scale) and failure_scale >= 0):
        fail(f"--failure-scale: must be a finite number >= 0, got {failure_scale}")
    if html is not None and not html.parent.is_dir():
        fail(f"--html: no directory {html.parent} to write {html.name} in")
    show = progress and not as_json and sys.stderr.isatty()
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("day {task.fields[day]:.1f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=not show,
    )
    with bar:
        task = bar.add_task(f"simulating {sc.name}", total=sc.duration_s, day=0.0)

        def tick(t: int) -> None:
            bar.update(task, completed=t - sc.start_s, day=(t - sc.start_s) / 86_400)

        engine, report = run_sim(sc, policy=policy, progress=tick, failure_scale=failure_scale)
        bar.update(task, completed=sc.duration_s, day=sc.duration_s / 86_400)
    if out is not None:
        out.write_text(json.dumps(report.to_json_dict(with_series=True), indent=2))
    if html is not None:
        from cotenant.twin.htmlreport import write_html

        days_run = (report.end_s - report.start_s) / 86_400
        write_html([report], html, f"{sc.name} under {report.policy}: {days_run:g} days simulated")
    if as_json:
        print(json.dumps(report.to_json_dict(), indent=2))
    else:
        if wide:
            console.width = max(console.width, 250)
        report.render(console)
        if invoice:
            from cotenant.cli.invoice import print_invoices

            print_invoices(report.extra["metering"], report.extra.get("federation"))
    for job in why or []:
        state, detail = engine.why(job)
        console.print(f"{job}: {state}" + (f" ({detail})" if detail else ""))
    if html is not None and not as_json:
        console.print(f"HTML report: {html}")


@commands.command()
def policies(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List the scheduling policies."""
    from rich.table import Table

    from cotenant.scheduler.policies import get_policy, policy_names

    rows: list[dict[str, Any]] = []
    for name in policy_names():
        p = get_policy(name)
        rows.append(
            {"name": name, "honours_contracts": p.honours_contracts, "description": p.description}
        )
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    t = Table("policy", "honours contracts", "description")
    for r in rows:
        t.add_row(r["name"], "yes" if r["honours_contracts"] else "no", r["description"])
    console.print(t)


@commands.command()
def scenarios(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List the built-in scenarios."""
    from rich.table import Table

    from cotenant.twin.scenario import builtin_names, load_scenario

    rows: list[dict[str, Any]] = []
    for name in builtin_names():
        s = load_scenario(name)
        rows.append(
            {
                "name": name,
                "cluster": s.cluster.name,
                "gpus": s.cluster.total_gpus,
                "tenants": [x.name for x in s.tenants],
                "days": s.duration_s / 86_400,
                "policy": s.policy,
            }
        )
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    t = Table("scenario", "cluster", "GPUs", "tenants", "days", "policy")
    for r in rows:
        t.add_row(
            r["name"],
            r["cluster"],
            f"{r['gpus']:,}",
            ", ".join(r["tenants"]),
            f"{r['days']:g}",
            r["policy"],
        )
    console.print(t)


scenario_app = typer.Typer(no_args_is_help=True, help="Scenario files.")


@scenario_app.command("schema")
def scenario_schema() -> None:
    """Print the JSON Schema of a scenario file (for editors and checks)."""
    from cotenant.twin.scenario import scenario_json_schema

    print(json.dumps(scenario_json_schema(), indent=2))


from cotenant.cli.replay import replay_command  # noqa: E402

commands.command("replay")(replay_command)

from cotenant.cli.invoice import invoice_command  # noqa: E402

commands.command("invoice")(invoice_command)

from cotenant.cli.whatif import whatif_command  # noqa: E402

commands.command("whatif")(whatif_command)

from cotenant.cli.client import (  # noqa: E402
    audit_app,
    cluster_command,
    jobs_app,
    usage_command,
)
from cotenant.cli.keys import keys_app  # noqa: E402
from cotenant.cli.pipelines import pipelines_app  # noqa: E402
from cotenant.cli.serve import serve_command  # noqa: E402

commands.command("serve")(serve_command)
commands.command("usage")(usage_command)
commands.command("cluster")(cluster_command)
commands.add_typer(scenario_app, name="scenario")
commands.add_typer(jobs_app, name="jobs")
commands.add_typer(audit_app, name="audit")
commands.add_typer(keys_app, name="keys")
commands.add_typer(pipelines_app, name="pipelines")


def run(argv: list[str] | None = None) -> int:
    """Run the command line; the exit code. A usage error (a missing option, a value out
    of range) is one line on stderr and exit code 2, like every other error a user can fix;
    --help and a command group without a command print their help."""
    try:  # typer >= 0.24 carries its own copy of click
        from typer._click import exceptions as click_errors
    except ImportError:  # pragma: no cover - older typer on click
        from click import exceptions as click_errors  # type: ignore[no-redef]

    cmd = typer.main.get_command(app)
    try:
        code = cmd.main(args=argv, prog_name="cotenant", standalone_mode=False)
    except click_errors.NoArgsIsHelpError as e:
        # The error was made with the help: typer's rich help printed it then (and left
        # the message empty), click's plain help is the message.
        if e.message:
            print(e.message)
        return 0
    except click_errors.ClickException as e:
        message = " ".join(e.format_message().split())
        err_console.print("error: " + message, style="bold red", highlight=False, markup=False)
        return 2
    except (typer.Exit, SystemExit) as e:
        code = getattr(e, "exit_code", None)
        if code is None:
            code = e.code if isinstance(e, SystemExit) else 0
        return int(code or 0)
    except typer.Abort:
        return 130
    except KeyboardInterrupt:
        return 130
    return code if isinstance(code, int) else 0  # (typer returns an Exit's code)


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(run())


if __name__ == "__main__":  # pragma: no cover
    main()
