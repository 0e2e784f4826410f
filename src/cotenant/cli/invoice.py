"""``cotenant invoice``: one tenant's invoice for one calendar month, from a run on the
digital twin or from a JSON report saved by ``cotenant simulate --out``.

Registered in ``cli/main.py``.
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cotenant.cli.common import console, days_seconds, fail, friendly
from cotenant.model.errors import SpecError

if TYPE_CHECKING:  # rating loads when an invoice is made, not for --help
    from cotenant.metering.rating import Invoice


def invoice_command(
    tenant: Annotated[str, typer.Option(help="the tenant to invoice")],
    month: Annotated[str, typer.Option(help="calendar month, YYYY-MM (UTC)")],
    scenario: Annotated[
        str, typer.Option(help="built-in scenario name or a TOML file, run on the twin")
    ] = "colossus-lease",
    report: Annotated[
        Path | None,
        typer.Option(help="read a JSON report saved by `simulate --out` instead of running"),
    ] = None,
    days: Annotated[
        float | None,
        typer.Option(
            envvar="COTENANT_DAYS",
            help="days to simulate (fewer than written: the scenario's first days, as written)",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the invoice as JSON")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="print the invoice as CSV")] = False,
) -> None:
    """Print a tenant's invoice for a month: line items, subtotal, credits, total.

    The invoice is for the whole calendar month of the contract (the flat fee or the
    committed GPU-hours are owed for the month); usage and SLA credits come from the run.
    """
    friendly(_invoice)(tenant, month, scenario, report, days, as_json, as_csv)


def _invoice(
    tenant: str,
    month: str,
    scenario: str,
    report: Path | None,
    days: float | None,
    as_json: bool,
    as_csv: bool,
) -> None:
    from cotenant.metering.rating import month_bounds
    from cotenant.metering.run import find_invoice

    if as_json and as_csv:
        fail("--json and --csv: choose one")
    try:
        month_bounds(month)  # a malformed month fails before a long run
    except SpecError as e:
        raise SpecError("--month", e.problem) from None
    if report is not None:
        inv = find_invoice(_saved_metering(report), tenant, month)
    else:
        inv = find_invoice(_run(scenario, days), tenant, month)
    _print(inv, as_json, as_csv)


def _saved_metering(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        fail(f"--report: {path} is not JSON ({e.msg}, line {e.lineno})")
    metering = data.get("metering") if isinstance(data, dict) else None
    if not isinstance(metering, dict):
        fail(f"--report: {path} has no metering section (save one with `simulate --out`)")
    return metering


def _run(scenario: str, days: float | None) -> dict[str, Any]:
    from cotenant.twin.runtime import simulate
    from cotenant.twin.scenario import load_scenario

    sc = load_scenario(scenario)
    if days is not None:
        sc = replace(sc, duration_s=days_seconds(days))
    _, rep = simulate(sc)
    metering: dict[str, Any] = rep.extra["metering"]
    return metering


def _print(inv: Invoice, as_json: bool, as_csv: bool) -> None:
    if as_json:
        print(json.dumps(inv.to_json_dict(), indent=2))
    elif as_csv:
        csv.writer(sys.stdout, lineterminator="\n").writerows(inv.to_csv_rows())
    else:
        console.print(inv.render_text(), end="", highlight=False, markup=False)


def print_invoices(metering: dict[str, Any], federation: dict[str, Any] | None = None) -> None:
    """Every invoice of a run's metering section, as text (``simulate``, ``replay --invoice``),
    and each pool's of a federated run."""
    from cotenant.metering.run import invoice_from_json

    for d in metering["invoices"]:
        console.print("")
        console.print(invoice_from_json(d).render_text(), end="", highlight=False, markup=False)
    if federation:
        from cotenant.twin.fedreport import pool_invoice_text

        for line in pool_invoice_text(federation):
            console.print(line, highlight=False, markup=False)
