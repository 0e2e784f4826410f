"""Invoices for replays: commitments from the trace's quotas, priced by default or by a
price-terms file, billed from the first submission to the end of the replay; and the
``replay --invoice`` / ``--price-terms`` / ``--html`` options.

Hand-made trace (T0 = 2026-10-01T00:00Z): tenant a (quota 8 GPUs) submits two 8-GPU
jobs of 1 h at T0; tenant c (quota 4) submits nothing; tenant b (no quota) runs one
1-GPU job for a minute. On 3 nodes of 8 GPUs a's first job runs on its own commitment
and the second on GPUs lent by c and the owner (borrowed). Both end at T0 + 1 h, and so
does the replay.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from builders import HOUR, T0, job
from cotenant.cli.main import app
from cotenant.metering.run import MeteringSettings
from cotenant.model.errors import SpecError
from cotenant.traces import Trace
from cotenant.twin.replay import (
    REPLAY_PRICE,
    ReplayPrices,
    load_price_terms,
    nodes_cluster,
    replay,
    replay_scenario,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TRACE = Trace(
    "hand",
    "hand",
    (job("a1", "a", 8, HOUR, T0), job("a2", "a", 8, HOUR, T0), job("b1", "b", 1, 60, T0 + 60)),
    {"a": 8, "c": 4},
    (),
    (),
    (),
)


def invoices(report: Any) -> dict[str, dict[str, Any]]:
    return {f"{i['tenant']} {i['month']}": i for i in report.extra["metering"]["invoices"]}


def test_default_prices_are_the_documented_calibration() -> None:
    assert REPLAY_PRICE.committed_rate_micro_per_gpu_hour == 1_875_000  # $1.875/GPU-h
    assert REPLAY_PRICE.overage_rate_micro_per_gpu_hour == 3_000_000  # $3.00/GPU-h
    assert REPLAY_PRICE.sla_credit_micro_per_gpu_hour == 0
    sc = replay_scenario(TRACE, nodes_cluster(3, 8), tenants_from_trace=True)
    assert {c.tenant: c.price for c in sc.contracts()} == {"a": REPLAY_PRICE, "c": REPLAY_PRICE}


def test_a_replay_invoice_by_hand_at_the_default_prices() -> None:
    (r,) = replay(
        TRACE, nodes_cluster(3, 8), ["contract"], tenants_from_trace=True, meter=MeteringSettings()
    )
    assert r.end_s == T0 + HOUR
    got = invoices(r)
    assert set(got) == {"a 2026-10", "c 2026-10"}  # b has no commitment: not billed
    a = got["a 2026-10"]
    # Committed: 8 GPUs for the replay's hour (not the month: the term ends with the
    # replay) at $1.875 = $15.00; overage: 8 borrowed GPU-h at $3.00 = $24.00.
    assert [ln["amount_cents"] for ln in a["lines"]] == [1500, 2400]
    assert a["total_cents"] == 3900
    assert a["usage"]["own_gpu_seconds"] == a["usage"]["borrowed_gpu_seconds"] == 8 * HOUR
    assert a["usage"]["entitled_gpu_seconds"] == 8 * HOUR
    # c used nothing and pays its commitment: 4 GPU-h at $1.875 = $7.50.
    assert got["c 2026-10"]["total_cents"] == 750
    assert r.extra["metering"]["price_terms"] == ReplayPrices().source
    assert r.extra["metering"]["economics"]["revenue_cents"] == 3900 + 750


def test_a_price_terms_file_sets_the_default_and_one_tenants_own_terms(tmp_path: Path) -> None:
    f = tmp_path / "prices.toml"
    f.write_text(
        "[price]\n"
        'committed_rate_per_gpu_hour = "2.00"\n'
        'overage_rate_per_gpu_hour = "4.00"\n'
        "[tenants.a]\n"
        "flat_fee_per_month = 744000\n"  # $1,000.00 per hour of a 31-day month
    )
    prices = load_price_terms(f)
    (r,) = replay(
        TRACE,
        nodes_cluster(3, 8),
        ["contract"],
        tenants_from_trace=True,
        prices=prices,
        meter=MeteringSettings(),
    )
    got = invoices(r)
    # a's own table replaces the default whole: a flat fee for 1 h of October, and no
    # overage rate (the default's $4.00 is not merged in).
    assert got["a 2026-10"]["price_kind"] == "flat"
    assert got["a 2026-10"]["total_cents"] == 100_000
    assert got["c 2026-10"]["total_cents"] == 4 * 200  # 4 GPU-h at $2.00
    assert r.extra["metering"]["price_terms"] == str(f)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        pytest.param("[price]\noverage_rate_per_gpu_hour = -1\n", "price.overage_rate", id="neg"),
        pytest.param('[tenants.a]\ncurrency = "EUR"\n', "tenants.a.currency", id="currency"),
        pytest.param("[prices]\n", "prices", id="unknown-table"),
        pytest.param("tenants = 3\n", "tenants", id="tenants-not-tables"),
        pytest.param("[price\n", "toml", id="not-toml"),
    ],
)
def test_a_bad_price_terms_file_names_the_file_and_the_field(
    tmp_path: Path, text: str, field: str
) -> None:
    f = tmp_path / "prices.toml"
    f.write_text(text)
    with pytest.raises(SpecError) as e:
        load_price_terms(f)
    assert e.value.field.startswith(field)
    assert str(f) in str(e.value)


def test_prices_for_a_tenant_without_a_commitment_are_refused(tmp_path: Path) -> None:
    f = tmp_path / "prices.toml"
    f.write_text("[tenants.b]\noverage_rate_per_gpu_hour = 1\n")
    with pytest.raises(SpecError, match="tenants with one: a, c") as e:
        replay_scenario(
            TRACE, nodes_cluster(3, 8), tenants_from_trace=True, prices=load_price_terms(f)
        )
    assert e.value.field == "tenants.b"


def test_an_unmetered_replay_has_no_metering_section() -> None:
    (r,) = replay(TRACE, nodes_cluster(3, 8), ["fifo"], tenants_from_trace=True)
    assert "metering" not in r.extra


# -- the command ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def philly_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Philly excerpt with its quota file beside it, as the loader looks for it."""
    d = tmp_path_factory.mktemp("philly")
    shutil.copy(FIXTURES / "philly_excerpt.csv", d / "philly.csv")
    shutil.copy(FIXTURES / "philly_vc_quota.csv", d / "vc_quota_nodes.csv")
    return d


def run(*args: str | Path) -> Any:
    return CliRunner().invoke(app, ["replay", *map(str, args)])


def test_cli_replay_invoice_json_has_every_policy_tenant_and_month(philly_dir: Path) -> None:
    r = run(
        philly_dir / "philly.csv", "--policy", "fifo,contract", "--tenants-from-trace",
        "--invoice", "--json",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    for rep in data["reports"]:
        m = rep["metering"]
        # The excerpt's jobs arrive from September to November; the last ends in December.
        assert m["months"] == ["2017-09", "2017-10", "2017-11", "2017-12"]
        billed = [(i["tenant"], i["month"]) for i in m["invoices"]]
        # Every commitment (the 11 quotas, used or not), every month the replay covers.
        assert sorted(billed) == sorted((t, mo) for t in _quotas() for mo in m["months"])
        assert len(_quotas()) == 11
        assert all(i["total_cents"] > 0 for i in m["invoices"])
        assert m["power"]["cap_mw"] is None and len(m["power"]["facility_mw"]) > 1


def _quotas() -> set[str]:
    lines = (FIXTURES / "philly_vc_quota.csv").read_text().splitlines()[1:]
    return {ln.split(",")[0] for ln in lines if ln}


def test_cli_replay_invoice_text_and_html(philly_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    r = run(
        philly_dir / "philly.csv", "--policy", "contract", "--tenants-from-trace", "--invoice",
        "--html", out,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    text = r.stdout
    assert (
        "Metering under contract (price terms: built-in: $1.875/GPU-h committed, "
        "$3.00/GPU-h overage)" in text
    )
    assert "REPLAY_PRICE" not in text  # no internal constant names in what users read
    assert "Invoice: 6214e9, 2017-10 (USD)" in text
    # 6214e9's quota is 64 nodes, 512 GPUs: all of October is 512 * 744 = 380,928 GPU-h
    # committed, at $1.875: $714,240.00.
    assert "380,928.0 GPU-h  $1.875/GPU-h  $714,240.00" in text
    assert "power: peak facility" in text and "no cap" in text
    page = out.read_text()
    assert "<h2>Facility power against the site cap (contract: peak " in page
    assert page.count('<img src="data:image/png;base64,') == 4


@pytest.mark.parametrize("flag", ["--invoice", "--price-terms"])
def test_cli_replay_bills_only_commitments(philly_dir: Path, tmp_path: Path, flag: str) -> None:
    f = tmp_path / "p.toml"
    f.write_text("[price]\noverage_rate_per_gpu_hour = 1\n")
    args = [flag] if flag == "--invoice" else [flag, f]
    r = run(philly_dir / "philly.csv", "--policy", "fifo", *args)
    assert r.exit_code == 2
    assert r.stderr.startswith(f"error: {flag}: only commitments are billed")
    assert "--tenants-from-trace" in r.stderr


def test_cli_replay_bad_price_terms_is_one_line(philly_dir: Path, tmp_path: Path) -> None:
    f = tmp_path / "p.toml"
    f.write_text("[price]\ncommitted_rate_per_gpu_hour = -2\n")
    r = run(philly_dir / "philly.csv", "--tenants-from-trace", "--invoice", "--price-terms", f)
    assert r.exit_code == 2
    assert "price.committed_rate_per_gpu_hour" in r.stderr and "negative" in r.stderr
    assert str(f) in r.stderr.replace("\n", "")
