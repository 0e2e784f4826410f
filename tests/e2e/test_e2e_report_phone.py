"""The HTML reports read on a phone: at 390 px wide, in Debian's Chromium, the page does
not scroll sideways (a wide table scrolls inside its own box), for a single-cluster run
and a federated one (whose per-provider tables are the widest)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from browser import chromium

from cotenant.twin.htmlreport import write_html
from cotenant.twin.runtime import simulate
from cotenant.twin.scenario import load_scenario

GOLDEN = Path(__file__).parents[1] / "golden"


@pytest.mark.parametrize("scenario", ["small-lease", str(GOLDEN / "small_fed.toml")])
def test_a_report_fits_a_phone_screen(scenario: str, tmp_path: Path) -> None:
    sc = load_scenario(scenario)
    _, report = simulate(replace(sc, duration_s=86_400))
    page_file = tmp_path / "report.html"
    write_html([report], page_file, f"{sc.name}: phone")
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 390, "height": 844})
        page.goto(page_file.as_uri())
        wide, seen, tables = page.evaluate(
            "() => [document.documentElement.scrollWidth, window.innerWidth,"
            " document.querySelectorAll('table').length]"
        )
        overflowing = page.evaluate(
            "() => [...document.querySelectorAll('.wide')]"
            ".filter(d => d.scrollWidth > d.clientWidth).length"
        )
    assert tables > 2
    assert wide <= seen, f"the page is {wide} px wide in a {seen} px screen"
    assert overflowing >= 1, "some table is wider than the phone: it scrolls in its box"
