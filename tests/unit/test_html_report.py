"""The HTML report (a Jinja2 template) carries the money, energy and fault sections
wherever the run computed them, with the same figures as the text report."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cotenant.twin.htmlreport import render_html
from cotenant.twin.report import Report
from cotenant.twin.runtime import simulate
from cotenant.twin.scenario import load_scenario


@pytest.fixture(scope="module")
def run() -> Report:
    sc = load_scenario("small-lease")
    _, report = simulate(replace(sc, duration_s=86_400), failure_scale=20)
    return report


def test_money_energy_and_faults_are_in_the_page(run: Report) -> None:
    page = render_html([run], "small-lease <test>")
    assert "<title>small-lease &lt;test&gt;</title>" in page  # escaped
    m = run.extra["metering"]
    assert "Money under contract" in page
    for inv in m["invoices"]:
        assert f"Invoice: {inv['tenant']}, {inv['month']}" in page
        assert inv["total"] in page
    assert "Energy under contract" in page
    for u in m["energy"]["per_tenant"].values():
        assert f"{u['facility_mwh']:,.1f}" in page
    assert run.extra["faults"]["enabled"]
    assert "Faults under contract" in page and "node or rack failures" in page


def test_sections_only_where_computed(run: Report) -> None:
    bare = replace(run, extra={})
    page = render_html([bare], "bare")
    assert "Money under" not in page and "Energy under" not in page
    assert "Faults under" not in page
    assert "Per tenant under contract" in page
