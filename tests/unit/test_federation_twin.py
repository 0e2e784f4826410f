"""Providers in a scenario: bad input fails with one line naming the field; a federated
twin run keeps every job, stays within the overflow budget, moves work under notice at
its checkpoints with nothing lost, and rates the pool on its own terms."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import pytest

from cotenant.federation.core import Federation
from cotenant.federation.providers import ClusterProvider
from cotenant.federation.spec import check_job_providers
from cotenant.model.errors import NotFound, SpecError
from cotenant.model.jobs import JobKind, JobSpec
from cotenant.twin.federated import run_federated
from cotenant.twin.runtime import workload_of
from cotenant.twin.scenario import load_scenario

POOL = """
[[providers]]
name = "lease"
kind = "cluster"

[[providers]]
name = "cloud"
kind = "pool"
accelerator = "H100-SXM-80GB"
max_gpus = 64
on_demand_per_gpu_hour = "3.00"
spot_per_gpu_hour = "1.50"
{spot}
provisioning = "15m"
data_move_per_tb = "20"
data_move_time_per_tb = "10m"
"""

TENANTS = """
[[tenants]]
name = "owner-lab"
[tenants.contract]
commitment = {{ gpus = 48 }}
term = {{ start = "2026-10-01", end = "2027-10-01" }}
isolation = {{ rivals = ["lessee-lab"] }}
priority = 10
[tenants.workload]
pretraining_runs = 1
pretraining_gpus = [32, 32]
pretraining_days = [2, 2]
rl_runs = 1
rl_gpus = [16, 16]
rl_days = [0.5, 1]
experiments = 60
experiment_gpus = [1, 16]
experiment_median_hours = 2.0

[[tenants]]
name = "lessee-lab"
providers = {providers}
[tenants.overflow]
budget_per_month = "{budget}"
max_wait = {{ experiment = "1h", training = "4h" }}
data_gb_per_gpu = 50
[tenants.contract]
commitment = {{ all_available = true }}
term = {{ start = "2026-10-01", end = "2027-10-01" }}
{notice}
isolation = {{ rivals = ["owner-lab"] }}
price = {{ kind = "flat", flat_fee_per_month = "1000000" }}
[tenants.workload]
pretraining_runs = 1
pretraining_gpus = [32, 32]
pretraining_days = [1, 2]
rl_runs = 2
rl_gpus = [16, 32]
rl_days = [0.3, 1]
experiments = 120
experiment_gpus = [1, 16]
experiment_median_hours = 2.0
{workload_extra}
"""

HEAD = 'name = "fed"\nstart = "2026-10-01T00:00:00Z"\nduration = "3d"\nseed = 1\n'
HEAD += '[cluster]\npreset = "small-16"\n'
NOTICE = 'notice = { period = "2d", given_at = "2026-10-02T00:00:00Z" }'


def scenario_text(
    *,
    spot: str = "spot = true\nspot_interruptions_per_node_day = 2.0",
    providers: str = '["lease", "cloud"]',
    budget: str = "5000",
    notice: str = NOTICE,
    workload_extra: str = "",
    pool: str | None = None,
) -> str:
    return (
        HEAD
        + (POOL.format(spot=spot) if pool is None else pool)
        + TENANTS.format(
            providers=providers, budget=budget, notice=notice, workload_extra=workload_extra
        )
    )


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fed.toml"
    path.write_text(text)
    return path


BAD = {
    "provider-not-defined": (
        scenario_text(providers='["lease", "aws"]'),
        "tenants[1].providers[1]",
        "unknown provider 'aws'; defined: lease, cloud",
    ),
    "job-names-a-provider-its-tenant-may-not-use": (
        scenario_text(providers='["lease"]', workload_extra='providers = ["cloud"]'),
        "tenants[1].workload[0].providers[0]",
        "provider 'cloud' is not one tenant 'lessee-lab' may use (its providers: lease)",
    ),
    "negative-on-demand-price": (
        scenario_text().replace('on_demand_per_gpu_hour = "3.00"', "on_demand_per_gpu_hour = -3"),
        "providers[1].on_demand_per_gpu_hour",
        "must not be negative",
    ),
    "negative-data-move-price": (
        scenario_text().replace('data_move_per_tb = "20"', 'data_move_per_tb = "-1"'),
        "providers[1].data_move_per_tb",
        "must not be negative",
    ),
    "negative-overflow-budget": (
        scenario_text(budget="-5"),
        "tenants[1].overflow.budget_per_month",
        "must not be negative",
    ),
    "spot-above-on-demand": (
        scenario_text().replace('spot_per_gpu_hour = "1.50"', 'spot_per_gpu_hour = "4"'),
        "providers[1].spot_per_gpu_hour",
        "spot must not cost more than on demand",
    ),
    "pool-without-max-gpus": (
        scenario_text().replace("max_gpus = 64\n", ""),
        "providers[1].max_gpus",
        "a pool needs it",
    ),
    "pool-of-part-nodes": (
        scenario_text().replace("max_gpus = 64", "max_gpus = 60"),
        "providers[1].max_gpus",
        "whole number of 8-GPU nodes",
    ),
    "unknown-kind": (
        scenario_text().replace('kind = "pool"', 'kind = "cloud"'),
        "providers[1].kind",
        "must be 'cluster' or 'pool'",
    ),
    "provider-twice": (
        scenario_text().replace('name = "cloud"', 'name = "lease"'),
        "providers[1].name",
        "appears twice",
    ),
    "negative-interruption-rate": (
        scenario_text(spot="spot_interruptions_per_node_day = -1"),
        "providers[1].spot_interruptions_per_node_day",
        "finite number >= 0",
    ),
    "max-wait-for-a-service": (
        scenario_text().replace('experiment = "1h"', 'service = "1h"'),
        "tenants[1].overflow.max_wait.service",
        "unknown job kind",
    ),
}


@pytest.mark.parametrize(("text", "field", "words"), BAD.values(), ids=list(BAD))
def test_bad_providers_name_the_field(tmp_path: Path, text: str, field: str, words: str) -> None:
    with pytest.raises(SpecError) as e:
        load_scenario(write(tmp_path, text))
    assert e.value.field == field
    assert words in e.value.problem


def test_cli_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    path = write(tmp_path, scenario_text(providers='["lease", "aws"]'))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run(
        [sys.executable, "-m", "cotenant.cli.main", "simulate", str(path), "--no-progress"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "tenants[1].providers[1]" in lines[0], out.stderr


def test_a_scenario_without_providers_is_one_cluster_as_before() -> None:
    assert load_scenario("small-lease").providers is None
    assert load_scenario("colossus-lease").providers is None


def test_a_job_submitted_with_a_provider_its_tenant_may_not_use_is_refused(
    tmp_path: Path,
) -> None:
    sc = load_scenario(write(tmp_path, scenario_text(providers='["lease"]')))
    assert sc.providers is not None
    with pytest.raises(SpecError) as e:
        check_job_providers(sc.providers, "lessee-lab", ("lease", "cloud"))
    assert e.value.field == "providers[1]"


@pytest.fixture(scope="module")
def fed_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Federation, dict[str, object]]:
    path = write(tmp_path_factory.mktemp("fed"), scenario_text())
    sc = load_scenario(path)
    assert sc.providers is not None
    run = run_federated(sc, sc.providers)
    return run.federation, run.report.extra["federation"]


def test_no_job_is_lost_across_providers(fed_run: tuple[Federation, dict[str, object]]) -> None:
    fed, section = fed_run
    books = fed.job_book()
    assert sum(b["submitted"] for b in books.values()) == len(fed.book.specs) > 100
    assert all(b["lost"] == 0 for b in books.values())
    assert section["jobs"] == books


def test_overflow_happens_within_the_budget(fed_run: tuple[Federation, dict[str, object]]) -> None:
    fed, _ = fed_run
    assert fed.book.overflowed, "the small lease should overflow some experiments"
    for (tenant, _month), micro in fed.book.reserved.items():
        assert micro <= fed.providers.terms(tenant).budget_micro_per_month
    for r in fed.book.overflowed.values():
        assert r.detail.startswith("overflowed to cloud: expected wait ")
        assert "> max_wait 1 h" in r.detail or "> max_wait 4 h" in r.detail


def test_notice_moves_work_at_checkpoints_with_nothing_lost(
    fed_run: tuple[Federation, dict[str, object]],
) -> None:
    fed, section = fed_run
    migrations = [m for m in fed.book.moves if m.migration]
    assert migrations
    assert all(m.lost_s == 0 and m.source == "lease" for m in migrations)
    mig = section["migration"]["lessee-lab"]  # type: ignore[index]
    assert mig["jobs"] == len(migrations) and mig["lost_gpu_h"] == 0
    for m in migrations:  # it carries exactly the work left after its checkpoint
        spec = fed.book.specs[m.job_id]
        run = fed.engines["lease"].jobs[m.job_id]
        assert run.state.value == "cancelled"
        assert fed.engines["cloud"].jobs[m.job_id].spec.duration_s == m.work_s < spec.duration_s


def test_the_pool_bills_what_its_engine_allocated(
    fed_run: tuple[Federation, dict[str, object]],
) -> None:
    fed, section = fed_run
    cloud = section["providers"]["cloud"]  # type: ignore[index]
    eng = fed.engines["cloud"]
    from cotenant.metering.run import metered_ledger

    records = metered_ledger(eng, eng.clock.now()).records()
    gpu_s = sum(r.gpus * (r.end_s - r.start_s) for r in records)
    assert gpu_s > 0
    assert cloud["gpu_h"] == pytest.approx(gpu_s / 3600)
    total = 0
    for inv in cloud["invoices"]:
        assert inv["total_cents"] == sum(x["amount_cents"] for x in inv["lines"])
        total += inv["total_cents"]
    assert cloud["cost_cents"] == total > 0
    assert fed.book.spot_interruptions["cloud"] >= 1  # 2 per node-day: some spot run was hit
    assert any("spot" in x["description"] for x in cloud["invoices"][0]["lines"])


def test_jobs_that_name_only_the_lease_never_leave_it(tmp_path: Path) -> None:
    text = scenario_text(workload_extra='providers = ["lease"]')
    sc = load_scenario(write(tmp_path, text))
    assert sc.providers is not None
    run = run_federated(sc, sc.providers)
    fed = run.federation
    lessee = [j for j, s in fed.book.specs.items() if s.tenant == "lessee-lab"]
    assert lessee and all(fed.book.visited[j] == ["lease"] for j in lessee)
    assert not fed.engines["cloud"].jobs


def test_the_federation_refuses_a_job_id_twice(
    fed_run: tuple[Federation, dict[str, object]],
) -> None:
    fed, _ = fed_run
    spec = next(iter(fed.book.specs.values()))
    from cotenant.model.errors import Conflict

    with pytest.raises(Conflict):
        fed.submit(spec)


def test_overflow_cost_never_exceeds_what_was_reserved(
    fed_run: tuple[Federation, dict[str, object]],
) -> None:
    fed, _ = fed_run
    from cotenant.federation.metering import rate_pool
    from cotenant.federation.providers import PoolProvider
    from cotenant.metering.run import metered_ledger

    pool = fed.providers.get("cloud")
    assert isinstance(pool, PoolProvider)
    spot = {j: u for (p, j), u in fed.book.spot_until.items() if p == "cloud"}
    eng = fed.engines["cloud"]
    records = metered_ledger(eng, fed.clock.now()).records()
    bill = rate_pool(pool, records, spot, [], eng.acct.start_s, fed.clock.now() + 1)
    for job, r in fed.book.overflowed.items():
        data = pool.move_in_micro(fed.book.specs[job].gpus, 50)
        assert bill.job_micro.get(job, Fraction(0)) + data <= r.cost_micro


def test_parse_toml_of_the_builtin_lease_plus_cloud() -> None:
    sc = load_scenario("lease-plus-cloud")
    assert sc.providers is not None
    assert [p.name for p in sc.providers.providers] == ["colossus", "aws-east"]
    lessee = sc.providers.terms("lessee-lab")
    assert lessee.providers == ("colossus", "aws-east")
    assert lessee.max_wait_s[JobKind.EXPERIMENT] == 7200
    assert sc.providers.terms("owner-lab").providers == ("colossus",)
    c = {t.name: t.contract for t in sc.tenants}["lessee-lab"]
    assert c is not None and c.notice.given_at is not None


SECOND_LEASE = """
[[providers]]
name = "lease"
kind = "cluster"

[[providers]]
name = "lease-2"
kind = "cluster"
cluster = { preset = "small-16" }
contracts.lessee-lab = { commitment = { gpus = 64 }, isolation = { rivals = ["owner-lab"] } }
"""


def test_a_second_lease_takes_what_the_first_cannot(tmp_path: Path) -> None:
    text = scenario_text(pool=SECOND_LEASE, providers='["lease", "lease-2"]', notice="")
    sc = load_scenario(write(tmp_path, text))
    assert sc.providers is not None
    second = sc.providers.get("lease-2")
    assert isinstance(second, ClusterProvider) and not second.home
    run = run_federated(sc, sc.providers)
    fed = run.federation
    on_second = [j for j, w in fed.book.visited.items() if w[0] == "lease-2"]
    assert on_second, "some lessee jobs should wait less on the second lease"
    assert all(fed.book.specs[j].tenant == "lessee-lab" for j in on_second)
    assert all(b["lost"] == 0 for b in fed.job_book().values())
    routes = [r for r in fed.routes if r.provider == "lease-2"]
    assert routes and all(r.detail.startswith("stays on lease-2") for r in routes)
    assert not fed.book.overflowed  # a cluster with room is not overflow
    section = run.report.extra["federation"]
    assert section["providers"]["lease-2"]["gpu_h"] > 0


def test_a_second_lease_names_an_unknown_tenant(tmp_path: Path) -> None:
    text = scenario_text(pool=SECOND_LEASE.replace("lessee-lab", "nobody"), notice="")
    with pytest.raises(SpecError) as e:
        load_scenario(write(tmp_path, text))
    assert e.value.field == "providers[1].contracts.nobody"


def test_simulate_prints_providers_and_the_run_without_the_pool(tmp_path: Path) -> None:
    path = write(tmp_path, scenario_text())
    html = tmp_path / "fed.html"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), COLUMNS="200")
    out = subprocess.run(
        [sys.executable, "-m", "cotenant.cli.main", "simulate", str(path), "--no-progress",
         "--html", str(html), "--invoice"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "Providers" in text
    cloud = next(x for x in text.splitlines() if x.strip().startswith("cloud "))
    assert " pool " in cloud and "$" in cloud
    assert "without the pools lessee-lab waited" in text
    assert "the pools cost $" in text
    assert "where lessee-lab's work ran: lease " in text and " cloud " in text
    assert "jobs across providers (0 lost)" in text
    assert "INVOICE cloud -> lessee-lab 2026-10" in text
    page = html.read_text()
    assert "GPUs per provider over time" in page and "Providers under contract" in page


def test_cancel_and_why_wherever_the_job_is(tmp_path: Path) -> None:
    sc = load_scenario(write(tmp_path, scenario_text()))
    assert sc.providers is not None
    jobs = [
        JobSpec("a", "lessee-lab", 8, 3600, sc.start_s, providers=("cloud",)),
        JobSpec("b", "lessee-lab", 8, 3600, sc.start_s + 7200),
    ]
    fed_box: list[Federation] = []

    def hook(fed: Federation) -> None:
        fed_box.append(fed)

    sc2 = replace(sc, duration_s=1800)
    run_federated(sc2, sc.providers, jobs=jobs, federation_hook=hook)
    fed = fed_box[0]
    _, detail = fed.why("a")
    assert detail.startswith("on cloud")
    assert fed.why("b")[0] == "not-routed-yet"
    fed.cancel("b")
    fed.cancel("a")
    assert fed.engines["cloud"].jobs["a"].state.value == "cancelled"
    fed.run(sc.start_s + 4 * 3600)
    assert "b" not in fed.book.where
    book = fed.job_book()["lessee-lab"]
    assert book["cancelled"] == 2 and book["lost"] == 0
    with pytest.raises(NotFound):
        fed.cancel("zzz")


def test_notice_given_on_the_lease_engine_starts_the_drain(tmp_path: Path) -> None:
    sc = load_scenario(write(tmp_path, scenario_text(notice="")))
    assert sc.providers is not None
    box: list[Federation] = []
    first = replace(sc, duration_s=86_400)  # the whole run's jobs, run for its first day
    run_federated(first, sc.providers, jobs=workload_of(sc), federation_hook=box.append)
    fed = box[0]
    assert not any(m.migration for m in fed.book.moves)
    lease = fed.engines["lease"]
    lease.give_notice("lessee-lab")  # as a live server would, on the engine itself
    fed.run(sc.end_s)
    migrations = [m for m in fed.book.moves if m.migration]
    assert migrations and all(m.t >= sc.start_s + 86_400 and m.lost_s == 0 for m in migrations)
    assert all(b["lost"] == 0 for b in fed.job_book().values())


def test_a_second_lease_whose_commitments_do_not_fit_names_the_field(tmp_path: Path) -> None:
    text = scenario_text(
        pool=SECOND_LEASE.replace("gpus = 64", "gpus = 100")
        + "contracts.owner-lab = { commitment = { gpus = 40 } }\n",
        notice="",
    )
    with pytest.raises(SpecError) as e:
        load_scenario(write(tmp_path, text))
    assert e.value.field == "providers[1].contracts.owner-lab.commitment.gpus"
    assert "more than the cluster's 128" in e.value.problem
