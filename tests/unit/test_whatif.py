"""What-if studies: keys and values checked with one-line errors, the grid, the cache,
the statistics (interval coverage on a synthetic metric), cancelling, the reports.
Runs are tiny (small-lease, one day, serial); the Dask tests are in
tests/integration/test_whatif_dask.py."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cotenant.cli.main import run
from cotenant.whatif.cache import RunCache
from cotenant.whatif.runner import Outcome, Plan, RunTask, execute
from cotenant.whatif.stats import mean_ci, t_quantile, welch
from cotenant.whatif.summary import summarise
from cotenant.whatif.variants import (
    Assignment,
    Variant,
    build,
    grid,
    parse_vary,
    read_base,
    split_values,
)

DAYS = 1.0


def small_plan(axis: str, seeds: int = 2) -> Plan:
    base = read_base("small-lease")
    return Plan(base, tuple(grid([parse_vary(axis)])), tuple(range(1, 1 + seeds)), DAYS)


# keys and values -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "texts", "values"),
    [
        ("energy.power_cap_mw=150,90.5", ["150", "90.5"], [150, 90.5]),
        ("run.notice.lessee-lab=none,2026-12-01", ["none", "2026-12-01"], ["none", None]),
        ('x.price.flat_fee_per_month="100",200', ['"100"', "200"], ["100", 200]),
        ("a.b=[1, 2],[3]", ["[1, 2]", "[3]"], [[1, 2], [3]]),
    ],
    ids=["numbers", "dates-and-none", "quoted", "arrays"],
)
def test_parse_vary(option: str, texts: list[str], values: list[Any]) -> None:
    got = parse_vary(option)
    assert [a.text for a in got] == texts
    for a, v in zip(got, values, strict=True):
        if v is not None:
            assert a.value == v


def test_split_values_keeps_commas_inside_brackets_and_quotes() -> None:
    assert split_values('1,"a,b",[2,3],{x = 1, y = 2}') == [
        "1",
        '"a,b"',
        "[2,3]",
        "{x = 1, y = 2}",
    ]


@pytest.mark.parametrize(
    "key",
    [
        "tenants.lessee-lab.contract.price.flat_fee_per_month",
        "tenants.1.contract.price.flat_fee_per_month",
        "tenants[1].contract.price.flat_fee_per_month",
    ],
    ids=["by-name", "by-index", "as-errors-write-it"],
)
def test_a_key_reaches_the_tenant_by_name_or_index(key: str) -> None:
    base = read_base("small-lease")
    v = Variant((Assignment(key, "2500000", '"2500000"'),))
    sc = build(base, v).scenario
    lessee = next(c for c in sc.contracts() if c.tenant == "lessee-lab")
    assert lessee.price.flat_fee_cents_per_month == 250_000_000


def test_run_settings_map_to_the_contract() -> None:
    base = read_base("small-lease")
    v = Variant(
        (
            Assignment("run.notice.lessee-lab", "2026-10-02", "2026-10-02"),
            Assignment("run.spare_gpus", 16, "16"),
            Assignment("run.failure_scale", 2.0, "2"),
        )
    )
    spec = build(base, v, seed=5, days=DAYS)
    lessee = next(c for c in spec.scenario.contracts() if c.tenant == "lessee-lab")
    assert lessee.notice.given_at == 1_790_812_800 + 86_400
    assert lessee.commitment.reserve_gpus == 16
    assert spec.failure_scale == 2.0
    assert spec.scenario.seed == 5
    assert spec.scenario.duration_s == 86_400
    none = build(base, Variant((Assignment("run.notice.lessee-lab", "none", "none"),)))
    assert all(c.notice.given_at is None for c in none.scenario.contracts())


BAD = [
    (["--vary", "tenants.lessee-lab.contract.price.flat_fe=1"], "flat_fe"),
    (["--vary", "enrgy.power_cap_mw=100"], "enrgy"),
    (["--vary", "energy.pue=abc"], "energy.pue"),
    (["--vary", "energy.power_cap_mww=100"], "energy.power_cap_mww"),
    (["--vary", "tenants.nobody.contract.priority=1"], "nobody"),
    (["--vary", "tenants.7.contract.priority=1"], "no index 7"),
    (["--vary", "tenants.owner-lab.contract.commitment.gpus=99999"], "commitment.gpus"),
    (["--vary", "tenants.owner-lab.contract=1"], "tenants.owner-lab.contract"),
    (["--vary", "run.bogus=1"], "run.bogus"),
    (["--vary", "run.failure_scale=-1"], "run.failure_scale"),
    (["--vary", "run.spare_gpus=-8"], "run.spare_gpus"),
    (["--vary", "run.notice.lessee-lab=someday"], "notice.given_at"),
    (["--vary", "run.notice.nobody=2026-10-02"], "nobody"),
    (["--vary", "seed=1,2"], "--seeds"),
    (["--vary", "energy.pue"], "KEY=V1,V2"),
    (["--vary", "energy.pue=1.1,1.1"], "twice"),
    (["--vary", "energy.pue=1.1", "--vary", "energy.pue=1.2"], "twice"),
    (["--study", "bogus"], "notice, spares, price, power"),
    (["--vary", "run.failure_scale=0", "--days", "0.1", "--metric", "bogus"], "revenue_usd"),
    (["--study", "power"], "power_cap_mw"),
    (["--study", "notice", "--tenant", "nobody"], "nobody"),
    ([], "--vary"),
]


@pytest.mark.parametrize(("args", "names"), BAD, ids=[f"bad-{i}" for i in range(len(BAD))])
def test_bad_keys_and_values_fail_in_one_line(
    args: list[str], names: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(["whatif", "small-lease", *args, "--serial", "--cache", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and names in lines[0], err
    if "--metric" not in args:
        assert not list(tmp_path.rglob("*.json"))  # nothing ran


def test_grid_is_the_cross_with_the_first_values_as_baseline() -> None:
    variants = grid([parse_vary("energy.pue=1.1,1.3"), parse_vary("run.failure_scale=0,1,2")])
    assert len(variants) == 6
    assert variants[0].label == "pue=1.1, failure_scale=0"


# running, caching, cancelling ---------------------------------------------------


def test_runs_are_deterministic_per_seed_and_the_cache_runs_only_what_is_new(
    tmp_path: Path,
) -> None:
    plan = small_plan("run.failure_scale=1,20", seeds=2)
    cache = RunCache(tmp_path)
    first = execute(plan.tasks(), cache, serial=True)
    assert (first.ran, first.cached) == (4, 0)
    again = execute(plan.tasks(), RunCache(None), serial=True)  # no cache: run again
    assert {k: r["metrics"] for k, r in again.results.items()} == {
        k: r["metrics"] for k, r in first.results.items()
    }
    hit = execute(plan.tasks(), cache, serial=True)
    assert (hit.ran, hit.cached) == (0, 4)
    assert {k: r["metrics"] for k, r in hit.results.items()} == {
        k: r["metrics"] for k, r in first.results.items()
    }
    assert hit.run_s == 0 and first.run_s > 0
    wider = Plan(plan.base, plan.variants, (1, 2, 3), DAYS)
    widened = execute(wider.tasks(), cache, serial=True)
    assert (widened.ran, widened.cached) == (2, 4)
    # another seed gives other numbers (the seed reaches the workload and the failures)
    a, b = (first.results[RunTask(plan.base, plan.variants[1], s, DAYS).key] for s in (1, 2))
    assert a["metrics"] != b["metrics"]


def test_the_cache_key_follows_the_scenario_text_variant_seed_and_version() -> None:
    from cotenant.whatif.cache import run_key

    k = run_key("text", None, [["a", "1"]], 1, 1.0, None, "0.1.0")
    assert k == run_key("text", None, [["a", "1"]], 1, 1.0, None, "0.1.0")
    others = [
        run_key("text2", None, [["a", "1"]], 1, 1.0, None, "0.1.0"),
        run_key("text", None, [["a", "2"]], 1, 1.0, None, "0.1.0"),
        run_key("text", None, [["a", "1"]], 2, 1.0, None, "0.1.0"),
        run_key("text", None, [["a", "1"]], 1, 1.0, None, "0.2.0"),
    ]
    assert k not in others and len(set(others)) == 4


def test_the_cache_key_follows_cotenant_s_source_not_only_its_version_string(
    tmp_path: Path,
) -> None:
    """A working copy edited since a study ran keeps its version string: the key's code
    version digests the package's source, so its results are not read back."""
    import shutil
    import subprocess
    import sys

    import cotenant
    from cotenant import __version__
    from cotenant.whatif.cache import code_version, run_key

    assert code_version().startswith(__version__ + "+")
    assert run_key("text", None, [], 1, 1.0, None) == run_key(
        "text", None, [], 1, 1.0, None, code_version()
    )
    copy = tmp_path / "cotenant"
    shutil.copytree(Path(cotenant.__file__).parent, copy, ignore=shutil.ignore_patterns("*.pyc"))
    ask = "from cotenant.whatif.cache import code_version; print(code_version())"

    def version_of_copy() -> str:
        env = {**os.environ, "PYTHONPATH": str(tmp_path)}
        out = subprocess.run([sys.executable, "-c", ask], env=env, capture_output=True, text=True)
        return out.stdout.strip()

    assert version_of_copy() == code_version()
    (copy / "whatif" / "metrics.py").write_text((copy / "whatif" / "metrics.py").read_text() + "\n")
    assert version_of_copy() not in ("", code_version())


def test_ctrl_c_cancels_and_keeps_the_finished_runs(tmp_path: Path) -> None:
    plan = small_plan("run.failure_scale=0,1", seeds=3)
    seen: list[int] = []

    def interrupt_after_two(done: int, total: int) -> None:
        seen.append(done)
        if done == 2:
            raise KeyboardInterrupt

    out = execute(plan.tasks(), RunCache(tmp_path), serial=True, progress=interrupt_after_two)
    assert out.cancelled and out.ran == 2
    assert len(list(tmp_path.rglob("*.json"))) == 2
    rest = execute(plan.tasks(), RunCache(tmp_path), serial=True)
    assert (rest.cached, rest.ran) == (2, 4) and not rest.cancelled
    s = summarise(plan, out)
    assert not s.complete and s.runs == 2


# statistics ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("df", "table"),
    [(1, 12.7062), (2, 4.3027), (5, 2.5706), (9, 2.2622), (30, 2.0423), (7.3, 2.3451)],
)
def test_t_quantile_matches_the_table(df: float, table: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(table, abs=1e-4)


def _synthetic_outcome(plan: Plan, draw: Any) -> Outcome:
    out = Outcome()
    for i, t in enumerate(plan.tasks()):
        out.results[t.key] = {"metrics": {"m": draw(t.variant, i)}, "wall_s": 0.0}
    return out


def test_the_interval_covers_the_true_mean_at_the_stated_rate() -> None:
    """A synthetic metric with a known mean (a skewed one too), through the study's own
    summary: over 1,000 studies the 95% interval must cover the truth 95% of the time,
    within binomial noise (4 standard errors: 0.95 +- 0.028). Seeded: deterministic."""
    rng = np.random.default_rng(17)
    plan = small_plan("energy.pue=1.1,1.3", seeds=10)
    trials = 1000
    covered_mean = {"normal": 0, "gamma": 0}
    covered_diff = 0
    true_means = {"1.1": 5.0, "1.3": 7.0}
    for _ in range(trials):
        out = _synthetic_outcome(
            plan,
            lambda v, i: float(rng.normal(true_means[v.label], 1.0 if v.label == "1.1" else 3.0)),
        )
        s = summarise(plan, out, ["m"])
        covered_mean["normal"] += s.cells["m"]["1.1"].covers(5.0)
        d = s.diffs["m"]["1.3"]
        covered_diff += d.diff.covers(2.0)  # Welch, unequal variances
        xs = rng.gamma(4.0, 2.0, size=30)  # mean 8, skewed
        covered_mean["gamma"] += mean_ci(list(xs)).covers(8.0)
    se = (0.95 * 0.05 / trials) ** 0.5
    for name, hits in [*covered_mean.items(), ("welch", covered_diff)]:
        rate = hits / trials
        assert abs(rate - 0.95) <= 4 * se, (name, rate)


def test_a_difference_within_the_noise_is_flagged() -> None:
    rng = np.random.default_rng(3)
    a, b = list(rng.normal(0, 1, 10)), list(rng.normal(0.1, 1, 10))
    assert welch(b, a).within_noise
    assert not welch([x + 5 for x in b], a).within_noise
    exact = welch([2.0, 2.0], [1.0, 1.0])  # no spread: the difference is exact
    assert exact.diff.low == exact.diff.high == 1.0 and not exact.within_noise
    one = mean_ci([3.0])
    assert one.low is None and not one.covers(3.0)


# the command ---------------------------------------------------------------------


def test_the_notice_study_answers_first_with_intervals(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    html = tmp_path / "notice.html"
    args = ["whatif", "small-lease", "--study", "notice", "--seeds", "3", "--days", "3"]
    args += ["--serial", "--cache", str(tmp_path / "cache"), "--html", str(html)]
    assert run(args) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "study notice" in lines[0]
    assert lines[1].startswith("If lessee-lab gives notice")
    assert lines[2].startswith("  no notice: owner revenue $")
    assert "± " in lines[2] and "utilisation" in lines[2]
    assert sum(x.startswith("  notice 2026-10-0") for x in lines[3:6]) == 3
    page = html.read_text()
    assert page.count("data:image/png;base64,") >= 2 and "within noise" in page
    assert run([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["variants"][0] == "none" and len(data["variants"]) == 4
    rev = data["metrics"]["revenue_usd"]
    assert rev["none"]["low"] <= rev["none"]["mean"] <= rev["none"]["high"]
    # an earlier notice earns the owner less from the lessee's flat fee
    assert rev["2026-10-01"]["vs_baseline"]["mean"] < 0
    assert not rev["2026-10-01"]["vs_baseline"]["within_noise"]


@pytest.mark.parametrize("study", ["spares", "price"])
def test_the_other_studies_answer_first(
    study: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["whatif", "small-lease", "--study", study, "--seeds", "2", "--days", "1"]
    assert run([*args, "--serial", "--cache", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    first = {"spares": "Goodput against the spare pool", "price": "The owner's margin"}[study]
    assert lines[1].startswith(first)
    if study == "price":
        assert "breaks even at about $" in lines[2]


def test_the_power_study_finds_where_the_cap_binds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tmp_path / "capped.toml"
    text = read_base("small-lease").text.replace('duration = "3d"', 'duration = "1d"')
    # 16 nodes of 8 H100 at full load draw about 0.17 MW with the default site figures
    scenario.write_text(text + "\n[energy]\npower_cap_mw = 0.2\n")
    args = ["whatif", str(scenario), "--study", "power", "--seeds", "2", "--serial"]
    assert run([*args, "--cache", str(tmp_path / "c")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("Where the power cap binds")
    assert "first holds work back at" in lines[2], lines[:8]
