"""Malformed price terms in a scenario file fail with one clear line naming the field,
through ``load_scenario`` and through the ``cotenant`` command (exit code 2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cotenant.model.errors import SpecError
from cotenant.twin.scenario import load_scenario

BASE = """
name = "price-errors"
duration = "1h"
[cluster]
groups = [{{ accelerator = "H100-SXM-80GB", nodes = 2 }}]
[[tenants]]
name = "owner"
[tenants.contract]
commitment = {{ gpus = 8 }}
[[tenants]]
name = "lessee"
[tenants.contract]
commitment = {{ all_available = true }}
price = {{ {price} }}
"""

FIELD = "tenants[1].contract.price"

CASES = [
    pytest.param(
        'kind = "rate", committed_rate_per_gpu_hour = "2.00", overage_rate_per_gpu_hour = -3',
        "overage_rate_per_gpu_hour",
        "must not be negative",
        id="negative-overage-rate",
    ),
    pytest.param(
        'committed_rate_per_gpu_hour = "-2.50"',
        "committed_rate_per_gpu_hour",
        "must not be negative",
        id="negative-committed-rate",
    ),
    pytest.param(
        'flat_fee_per_month = "-1250000000"',
        "flat_fee_per_month",
        "must not be negative",
        id="negative-flat-fee",
    ),
    pytest.param(
        'flat_fee_per_month = 1000, currency = "EUR"',
        "currency",
        "unsupported currency 'EUR'",
        id="unknown-currency",
    ),
    pytest.param(
        "flat_fee_per_month = 1000, sla_credit_per_gpu_hour = 5, sla_credit_cap_percent = -10",
        "sla_credit_cap_percent",
        "must not be negative",
        id="credit-cap-below-zero",
    ),
    pytest.param(
        "flat_fee_per_month = 1000, sla_credit_cap_percent = 150",
        "sla_credit_cap_percent",
        "between 0 and 100",
        id="credit-cap-above-100",
    ),
    pytest.param(
        'flat_fee_per_month = "1000.005"',
        "flat_fee_per_month",
        "more than 2 decimal places",
        id="fee-finer-than-a-cent",
    ),
    pytest.param(
        "flat_fee_per_month = 1000, discount = 5",
        "discount",
        "unknown key 'discount'",
        id="unknown-key",
    ),
    pytest.param(
        'sla_credit_per_gpu_hour = "ten"',
        "sla_credit_per_gpu_hour",
        "cannot read 'ten'",
        id="not-a-number",
    ),
]


def _write(tmp_path: Path, price: str) -> Path:
    path = tmp_path / "scenario.toml"
    path.write_text(BASE.format(price=price))
    return path


def test_the_base_scenario_is_valid(tmp_path: Path) -> None:
    sc = load_scenario(_write(tmp_path, 'flat_fee_per_month = "1250000000"'))
    assert sc.tenants[1].contract is not None
    assert sc.tenants[1].contract.price.flat_fee_cents_per_month == 125_000_000_000


@pytest.mark.parametrize(("price", "key", "problem"), CASES)
def test_load_scenario_names_the_field(tmp_path: Path, price: str, key: str, problem: str) -> None:
    path = _write(tmp_path, price)
    with pytest.raises(SpecError) as err:
        load_scenario(path)
    assert err.value.field == f"{FIELD}.{key}"
    assert problem in err.value.problem
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    ("price", "key", "problem"),
    [CASES[0], CASES[3], CASES[4]],  # the three the issue names
)
def test_the_command_fails_with_one_line(
    tmp_path: Path, price: str, key: str, problem: str
) -> None:
    path = _write(tmp_path, price)
    done = subprocess.run(
        [sys.executable, "-m", "cotenant.cli.main", "simulate", str(path), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    assert f"{FIELD}.{key}" in lines[0]
    assert problem in lines[0]
    assert "Traceback" not in done.stderr
