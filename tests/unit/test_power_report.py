"""Power over time in the reports: the JSON series against the cap, the work held for
power counted over the whole run, the text line, and the HTML plot (``simulate --html``).

Cluster as in test_power_cap.py: 4 nodes of 8 H100 (700 W busy, 90 W idle), 2000 W per
node, PUE 1.2, so facility power is 1.2 * (32 * 90 + 4 * 2000 + 610 * busy GPUs) W and a
22 kW cap allows 12 busy GPUs.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from builders import HOUR, MIN, T0, TIGHT_POWER_SCENARIO, cluster, engine, job
from cotenant.cli.main import app
from cotenant.metering.energy import SiteEnergy
from cotenant.metering.power import PowerHolds
from cotenant.metering.run import MeteringSettings, UsageProbe, metering_report
from cotenant.twin.htmlreport import power_plot, render_html
from cotenant.twin.report import Report
from cotenant.twin.runtime import simulate
from cotenant.twin.scenario import parse_scenario

CAP_MW = 0.022


def facility_mw(busy_gpus: float) -> float:
    return 1.2 * (32 * 90 + 4 * 2000 + 610 * busy_gpus) / 1e6


@pytest.fixture(scope="module")
def tight() -> Report:
    _, report = simulate(parse_scenario(tomllib.loads(TIGHT_POWER_SCENARIO)))
    return report


# -- the JSON series ---------------------------------------------------------------------
def test_the_json_report_carries_power_over_time_and_the_cap(tight: Report) -> None:
    power = json.loads(json.dumps(tight.to_json_dict()))["metering"]["power"]
    assert power["cap_mw"] == CAP_MW
    assert power["series_times"] == tight.series["times"]
    assert len(power["facility_mw"]) == len(power["series_times"]) > 10
    # Independently of the ledger: the accounting's allocated GPUs at each sample.
    n = len(tight.series["times"])
    busy = np.zeros(n)
    for values in tight.series["allocated"].values():
        busy[n - len(values) :] += values[-n:]
    assert power["facility_mw"] == pytest.approx([facility_mw(b) for b in busy], abs=1e-6)
    assert max(power["facility_mw"]) <= power["peak_facility_mw"] <= CAP_MW
    # The run ends busy: the sample at the end is not read as idle.
    assert busy[-1] > 0 and power["facility_mw"][-1] > facility_mw(0)


def test_the_report_counts_every_job_held_for_power_not_only_those_left(tight: Report) -> None:
    power = tight.extra["metering"]["power"]
    held = power["held_for_power"]
    assert held["jobs"] > power["jobs_held_for_power_at_end"] > 0
    assert held["jobs"] == sum(t["jobs"] for t in held["per_tenant"].values())
    assert held["held_gpu_h"] == pytest.approx(
        sum(t["held_gpu_h"] for t in held["per_tenant"].values())
    )
    assert held["held_gpu_h"] > 0 and held["cycles"] > 0
    # Under `contract`, alpha's entitled demand held for power stops lending to beta.
    assert held["per_tenant"]["beta"]["borrowing_held_cycles"] > 0


def test_held_for_power_by_hand() -> None:
    """'first' (8 GPUs, 1 h) runs at T0; 'second' (8 GPUs) arrives at T0 + 1 min and is
    held (4 GPUs of power left) until 'first' ends at T0 + 1 h: 8 * 59 min held."""
    eng = engine(cluster(nodes=4, per_rack=2, racks_per_block=2), [], "fifo", tenants=("a",))
    eng.site = SiteEnergy(power_cap_mw=CAP_MW)
    eng.submit(job("first", "a", 8, duration_s=HOUR))
    eng.submit(job("second", "a", 8, duration_s=HOUR, submit_s=T0 + MIN))
    eng.submit(job("third", "a", 2, duration_s=HOUR, submit_s=T0 + 2 * MIN))
    probe = UsageProbe(eng)
    assert eng.cycle_watchers == [probe.power.observe]
    eng.run(T0 + 3 * HOUR, progress=probe.progress())
    holds = probe.power
    # fifo: 'third' queues behind 'second' (queued-behind), so only 'second' is held.
    assert dict(holds.jobs) == {"a": {"second"}}
    assert holds.held_gpu_s["a"] == 8 * (HOUR - MIN)
    assert eng.jobs["second"].first_start_s == T0 + HOUR
    sc = replace(
        parse_scenario(tomllib.loads(TIGHT_POWER_SCENARIO)), start_s=T0, duration_s=3 * HOUR
    )
    m = metering_report(eng, sc, MeteringSettings(eng.site), probe)
    assert m["power"]["held_for_power"]["jobs"] == 1
    assert m["power"]["held_for_power"]["held_gpu_h"] == pytest.approx(8 * 59 / 60)
    assert m["power"]["jobs_held_for_power_at_end"] == 0


def test_the_policy_is_observed_not_wrapped() -> None:
    eng = engine(cluster(nodes=1), [], "las", tenants=("a",))
    inner = eng.policy
    holds = PowerHolds(eng)
    assert eng.policy is inner  # its name, its wake_every_s: untouched
    assert eng.cycle_watchers == [holds.observe]


# -- the text report ---------------------------------------------------------------------
def test_the_text_report_shows_the_peak_against_the_cap_and_the_holds(tight: Report) -> None:
    console = Console(record=True, width=200)
    tight.render(console)
    text = console.export_text()
    held = tight.extra["metering"]["power"]["held_for_power"]
    assert "peak facility 21.8 kW, cap 22.0 kW (99%)" in text
    assert f"{held['jobs']} jobs held for power during the run" in text
    assert "power over time (full height 22.0 kW)" in text


# -- the HTML report ---------------------------------------------------------------------
def test_the_power_plot_draws_the_series_and_the_cap_line(tight: Report) -> None:
    fig = power_plot([tight])
    try:
        (ax,) = fig.axes
        lines = {ln.get_label(): ln for ln in ax.get_lines()}
        assert set(lines) == {"contract", f"site cap {CAP_MW:g} MW"}
        np.testing.assert_allclose(
            lines["contract"].get_ydata(), tight.extra["metering"]["power"]["facility_mw"]
        )
        assert set(lines[f"site cap {CAP_MW:g} MW"].get_ydata()) == {CAP_MW}
        assert ax.get_ylim()[1] >= CAP_MW
    finally:
        plt.close(fig)


def test_no_power_series_no_power_plot(tight: Report) -> None:
    bare = Report(**{**tight.__dict__, "extra": {}})
    assert power_plot([bare]) is None
    assert "Facility power" not in render_html([bare], "t")
    assert "Facility power against the site cap (contract: peak 0.02184 MW (cap 0.022 MW, " in (
        render_html([tight], "t")
    )


def test_cli_simulate_html_is_a_self_contained_report(tmp_path: Path) -> None:
    scenario = tmp_path / "tight.toml"
    scenario.write_text(TIGHT_POWER_SCENARIO)
    out = tmp_path / "r.html"
    saved = tmp_path / "r.json"
    r = CliRunner().invoke(
        app, ["simulate", str(scenario), "--html", str(out), "--out", str(saved)]
    )
    assert r.exit_code == 0, r.output
    assert f"HTML report: {out}" in r.stdout.replace("\n", "")
    text = out.read_text()
    for heading in (
        "Utilisation over time",
        "Allocation per tenant against commitment",
        "Facility power against the site cap",
        "Per tenant under contract",
    ):
        assert f"<h2>{heading}" in text
    assert text.count('<img src="data:image/png;base64,') == 3
    assert "<script" not in text and 'src="http' not in text  # nothing fetched from elsewhere
    data: dict[str, Any] = json.loads(saved.read_text())
    assert data["series"]["facility_power_mw"] == data["metering"]["power"]["facility_mw"]
    assert data["metering"]["power"]["cap_mw"] == CAP_MW


def test_cli_simulate_html_to_a_missing_directory_fails_before_the_run(tmp_path: Path) -> None:
    r = CliRunner().invoke(
        app, ["simulate", "colossus-lease", "--html", str(tmp_path / "no" / "r.html")]
    )
    assert r.exit_code == 2
    assert r.stderr.startswith(f"error: --html: no directory {tmp_path / 'no'}")
