"""Replaying traces: the scenario a trace becomes, the figures, and the ``replay`` command.

The Philly excerpt (tests/fixtures/philly_excerpt.csv, 300 real rows) is small enough
to replay under several policies in well under a second each.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from builders import T0, job
from cotenant.cli.main import app
from cotenant.model.errors import SpecError
from cotenant.model.jobs import JobState
from cotenant.traces import Trace, TraceNode, load_trace
from cotenant.twin.replay import (
    default_cluster,
    nodes_cluster,
    parse_cluster_arg,
    parse_quota_scale,
    replay,
    replay_scenario,
    run_policy,
    scale_quotas,
    select_jobs,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PHILLY = FIXTURES / "philly_excerpt.csv"
QUOTA = FIXTURES / "philly_vc_quota.csv"
HEADER = "timestamp,duration,num_gpus,gpu_time,cluster\n"


@pytest.fixture(scope="module")
def philly() -> Trace:
    return load_trace("philly", PHILLY, quota_path=QUOTA)


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """The real command, as a user runs it (its own process, no terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "cotenant.cli.main", "replay", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def cli_here(*args: str | Path) -> Result:
    """The command in this process: quicker, for the error paths."""
    return CliRunner().invoke(app, ["replay", *map(str, args)])


# -- the scenario -------------------------------------------------------------------------------


def test_quotas_become_commitments_and_the_rest_only_borrow(philly: Trace) -> None:
    cluster = default_cluster(philly)
    assert cluster.total_gpus == sum(philly.quotas_gpus.values()) == 352 * 8
    sc = replay_scenario(philly, cluster, tenants_from_trace=True)
    contracts = {c.tenant: c.commitment.gpus for c in sc.contracts()}
    assert contracts == philly.quotas_gpus
    assert {t.name for t in sc.tenants} >= set(philly.tenants)
    assert all(c.isolation.rivals == () for c in sc.contracts())
    assert sc.start_s == philly.jobs[0].submit_s
    plain = replay_scenario(philly, cluster)
    assert plain.contracts() == []


def test_quota_scale_rounds_each_quota_and_sizes_the_default_cluster(philly: Trace) -> None:
    scaled = scale_quotas(philly, parse_quota_scale("96/352"), None)
    # Philly's quotas are whole 8-GPU nodes; each node count x 96/352, rounded half up
    assert scaled.quotas_gpus["6214e9"] == 17 * 8  # 64 nodes x 96/352 = 17.45 -> 17
    assert scaled.quotas_gpus["11cb48"] == 4 * 8  # 16 x 96/352 = 4.36 -> 4
    assert scaled.quotas_gpus["7f04ca"] == 9 * 8  # 32 x 96/352 = 8.73 -> 9
    nodes = {t: q // 8 for t, q in philly.quotas_gpus.items()}
    expected = {t: int(n * 96 / 352 + 0.5) * 8 for t, n in nodes.items()}
    assert scaled.quotas_gpus == {t: q for t, q in expected.items() if q > 0}
    assert default_cluster(scaled).total_gpus == sum(expected.values())
    assert any("scaled by 3/11 in units of 8 GPUs" in n for n in scaled.notes)
    assert philly.quotas_gpus["6214e9"] == 512  # the original trace is untouched


def test_quota_scale_fit_shares_out_the_cluster_exactly(philly: Trace) -> None:
    scaled = scale_quotas(philly, parse_quota_scale("fit"), 128)
    assert sum(scaled.quotas_gpus.values()) == 128
    assert all(q % 8 == 0 for q in scaled.quotas_gpus.values())  # whole nodes
    # the largest quota (64 of 352 nodes) gets about 2.9 of the 16 nodes: 2 or 3
    assert scaled.quotas_gpus["6214e9"] in (16, 24)
    sc = replay_scenario(scaled, nodes_cluster(16, 8), tenants_from_trace=True)
    assert sum(c.commitment.gpus for c in sc.contracts()) == 128


def test_quota_scale_drops_quotas_that_round_to_zero(philly: Trace) -> None:
    tiny = scale_quotas(philly, parse_quota_scale("1/20"), None)
    # 8 nodes x 1/20 = 0.4 -> 0: that tenant only borrows, and the note says so;
    # 64 nodes x 1/20 = 3.2 -> 3 nodes
    small = [t for t, q in philly.quotas_gpus.items() if q // 8 * 2 < 20]
    assert small and all(t not in tiny.quotas_gpus for t in small)
    assert tiny.quotas_gpus["6214e9"] == 24
    assert any("rounded to 0" in n for n in tiny.notes)


@pytest.mark.parametrize("text", ["0", "-1", "abc", "1/0", ""])
def test_quota_scale_refuses_bad_values(text: str) -> None:
    with pytest.raises(SpecError, match="--quota-scale"):
        parse_quota_scale(text)


def test_quotas_larger_than_the_cluster_are_refused(philly: Trace) -> None:
    with pytest.raises(
        SpecError, match=r"quotas add up to 2,816 GPUs, more than the cluster's 128"
    ):
        replay_scenario(philly, nodes_cluster(16, 8), tenants_from_trace=True)


@pytest.mark.parametrize(
    ("arg", "gpus", "nodes"),
    [
        pytest.param("small-16", 128, 16, id="preset"),
        pytest.param("16x8", 128, 16, id="nodes"),
        pytest.param("pooled:32", 32, 32, id="pooled"),
    ],
)
def test_cluster_argument_forms(arg: str, gpus: int, nodes: int) -> None:
    spec = parse_cluster_arg(arg)
    assert (spec.total_gpus, sum(g.nodes for g in spec.groups)) == (gpus, nodes)


def test_cluster_from_a_toml_file(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text(
        '[cluster]\nname = "two"\n[[cluster.groups]]\naccelerator = "H100-SXM-80GB"\nnodes = 2\n'
    )
    assert parse_cluster_arg(str(f)).total_gpus == 16
    bad = tmp_path / "bad.toml"
    bad.write_text("[cluster]\ngroups = []\n")
    with pytest.raises(SpecError, match=r"bad\.toml"):
        parse_cluster_arg(str(bad))
    with pytest.raises(SpecError, match="pooled:N"):
        parse_cluster_arg("big-one")


def test_a_trace_node_list_becomes_node_groups_by_kind() -> None:
    nodes = (
        TraceNode("n1", 8, "H100-SXM-80GB"),
        TraceNode("n2", 4, "A100-SXM-80GB"),
        TraceNode("n3", 8, "H100-SXM-80GB"),
    )
    t = Trace("t", "t", (job("j", "T", 1, 10, T0),), {}, nodes, (), ())
    spec = default_cluster(t)
    assert [(g.accelerator, g.nodes, g.node_gpus) for g in spec.groups] == [
        ("H100-SXM-80GB", 2, 8),
        ("A100-SXM-80GB", 1, 4),
    ]
    assert spec.node_names == ("n1", "n3", "n2")
    assert spec.total_gpus == 20


def test_max_job_gpus_filters_before_the_limit(philly: Trace) -> None:
    small = select_jobs(philly, max_job_gpus=1, limit=50)
    assert len(small.jobs) == 50 and all(j.gpus == 1 for j in small.jobs)
    assert any("dropped" in n for n in small.notes)


# -- the replay ---------------------------------------------------------------------------------


def test_replay_the_philly_excerpt_under_three_policies(philly: Trace) -> None:
    cluster = nodes_cluster(4, 8)  # 32 GPUs: small enough for jobs to queue
    fifo, las, contract = replay(philly, cluster, ["fifo", "las", "contract"])
    for r in (fifo, las, contract):
        assert r.extra["jobs"] == {
            "total": 300,
            "completed": 300,
            "rejected_or_failed": 0,
            "unfinished": 0,
        }
        assert len(r.series["jct_s"]) == 300
        assert min(r.series["jct_s"]) >= min(j.duration_s for j in philly.jobs)
        assert r.extra["makespan_s"] == r.end_s - r.start_s
        assert 0 < r.utilization <= r.extra["utilization_arrivals"] <= 1
    # Without preemption the GPUs allocated are exactly the trace's GPU-seconds.
    span = fifo.end_s - fifo.start_s
    assert fifo.utilization * 32 * span == pytest.approx(philly.gpu_seconds)
    assert fifo.extra["preemptions"] == contract.extra["preemptions"] == 0
    assert las.extra["preemptions"] > 0
    assert las.extra["jct_s"]["avg"] < fifo.extra["jct_s"]["avg"]
    assert las.extra["queue_delay_s"]["p99"] < fifo.extra["queue_delay_s"]["p99"]


def test_replay_with_quotas_under_contract_has_no_guarantee_violations(philly: Trace) -> None:
    (r,) = replay(philly, default_cluster(philly), ["contract"], tenants_from_trace=True)
    assert r.extra["guarantee_violation_s"] == 0
    assert r.tenants["6214e9"]["entitled_gpu_h"] > 0
    assert r.extra["jobs"]["completed"] == 300


def test_a_job_that_can_never_run_ends_the_replay_instead_of_hanging() -> None:
    """A gang bigger than the cluster is rejected; the replay still finishes."""
    t = Trace(
        "t", "t", (job("ok", "T", 1, 100, T0), job("huge", "T", 64, 100, T0 + 1)), {}, (), (), ()
    )
    sc = replay_scenario(t, nodes_cluster(1, 8))
    engine, report = run_policy(sc, t.jobs, "fifo")
    assert engine.jobs["huge"].state is JobState.FAILED
    assert report.extra["jobs"]["completed"] == 1
    assert report.extra["jobs"]["unfinished"] == 0


def test_the_safety_cap_stops_a_replay_and_counts_what_did_not_end() -> None:
    t = Trace("t", "t", (job("long", "T", 1, 1000, T0),), {}, (), (), ())
    sc = replace(replay_scenario(t, nodes_cluster(1, 8)), duration_s=50)
    engine, report = run_policy(sc, t.jobs, "fifo")
    assert engine.clock.now() == T0 + 50
    assert report.extra["jobs"]["unfinished"] == 1
    assert report.extra["jct_s"]["avg"] == 0.0


def test_unknown_and_repeated_policies_fail_before_running(philly: Trace) -> None:
    with pytest.raises(SpecError, match=r"valid: .*las"):
        replay(philly, nodes_cluster(4, 8), ["fifo", "nope"])
    with pytest.raises(SpecError, match="twice"):
        replay(philly, nodes_cluster(4, 8), ["fifo", "fifo"])


# -- the command --------------------------------------------------------------------------------


def test_cli_replay_prints_the_comparison_and_writes_html(tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    p = cli(PHILLY, "--policy", "fifo,las,contract", "--cluster", "4x8", "--html", out)
    assert p.returncode == 0, p.stderr
    assert "Policies compared" in p.stdout
    for name in ("fifo", "las", "contract"):
        assert f"Per tenant under {name}" in p.stdout
    assert "Traceback" not in p.stderr
    text = out.read_text()
    # Utilisation, allocation against commitment, CDFs, and (--html meters) power.
    assert text.count('<img src="data:image/png;base64,') == 4
    assert "<h2>Facility power against the site cap (fifo: peak " in text
    assert "<table>" in text and "las" in text


def test_cli_replay_skips_bad_rows_with_their_line_numbers(tmp_path: Path) -> None:
    f = tmp_path / "broken.csv"
    f.write_text(
        HEADER
        + "2017-10-09 07:01:55,66.0,1,66.0,vc1\n"  # line 2: fine
        + "2017-10-09 07:02:00,-5,1,0,vc1\n"  # line 3: negative duration
        + "2017-10-09 07:03:00,100.0,1,100.0,vc2\n"  # line 4: fine
        + "2017-10-09 07:04:00,100.0,,100.0,vc2\n"  # line 5: no GPUs
        + "2017-10-09 07:05:00,100.0,64,6400.0,vc2\n"  # line 6: more than the cluster
    )
    p = cli(f, "--policy", "fifo", "--cluster", "2x8", "--json")
    assert p.returncode == 0, p.stderr
    assert "3 bad row(s)" in p.stderr
    for line in ("line 3: duration:", "line 5: num_gpus: missing", "line 6: num_gpus: more GPUs"):
        assert line in p.stderr
    data = json.loads(p.stdout)
    assert data["trace"]["jobs"] == 2 and data["trace"]["bad_rows"] == 3
    assert data["reports"][0]["jobs"]["completed"] == 2
    strict = cli(f, "--policy", "fifo", "--cluster", "2x8", "--strict")
    assert strict.returncode == 2
    assert f"{f}:3" in strict.stderr and "duration" in strict.stderr
    assert "Traceback" not in strict.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--policy", "nope"], "unknown policy 'nope'", id="policy"),
        pytest.param(["--cluster", "lots"], "pooled:N", id="cluster"),
        pytest.param(["--start", "yesterday"], "--start", id="start"),
        pytest.param(["--tenants-from-trace", "--cluster", "2x8"], "no quotas", id="no-quotas"),
        pytest.param(["--quota-scale", "0.5"], "--tenants-from-trace", id="scale-no-quotas"),
        pytest.param(
            ["--tenants-from-trace", "--quota-scale", "fit"], "give one", id="fit-no-cluster"
        ),
        pytest.param(
            ["--tenants-from-trace", "--quota-scale", "-2"], "greater than 0", id="scale-neg"
        ),
    ],
)
def test_cli_replay_errors_are_one_line(args: list[str], message: str) -> None:
    r = cli_here(PHILLY, *args)
    assert r.exit_code == 2
    assert message in r.stderr.replace("\n", " ")
    assert r.stderr.startswith("error: ")
    assert r.exception is None or isinstance(r.exception, SystemExit)


def test_cli_quota_scale_fit_replays_loaded_quotas(tmp_path: Path) -> None:
    (tmp_path / "jobs.csv").write_bytes(PHILLY.read_bytes())
    (tmp_path / "vc_quota_nodes.csv").write_bytes(QUOTA.read_bytes())
    r = cli_here(
        tmp_path / "jobs.csv",
        "--tenants-from-trace",
        "--quota-scale",
        "fit",
        "--cluster",
        "8x8",
        "--policy",
        "contract",
        "--json",
        "--limit",
        "60",
    )
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert any("fitted to 64 GPUs" in n for n in data["trace"]["notes"])
    (rep,) = data["reports"]
    assert rep["guarantee_violation_s"] == 0
    entitled = sum(t["entitled_gpu_h"] for t in rep["tenants"].values())
    assert entitled > 0  # the scaled quotas are commitments


def test_cli_replay_cannot_guess_an_unknown_header(tmp_path: Path) -> None:
    f = tmp_path / "x.csv"
    f.write_text("a,b,c\n1,2,3\n")
    r = cli_here(f)
    assert r.exit_code == 2 and "--format" in r.stderr
