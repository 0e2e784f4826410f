"""Entitlement math against hand-computed values: commitments, all-available, terms, ramps."""

from __future__ import annotations

from fractions import Fraction
from itertools import pairwise

import pytest

from builders import DAY, T0, YEAR, contract
from cotenant.contracts.entitlement import (
    effective_end,
    entitled_gpus,
    entitlements,
    next_change,
    ramp_fraction,
    ramp_integral,
)
from cotenant.model.contracts import Contract, Ramp

CAP = 128
P = 90 * DAY  # the default notice period
G = T0 + 10 * DAY  # when notice is given in the ramp cases
OWNER = contract("owner", 48)
LESSEE = contract("lessee", all_available=True)


@pytest.mark.parametrize(
    ("c", "t", "others", "want"),
    [
        # -- fixed commitments and the term ---------------------------------------------
        pytest.param(OWNER, T0, [], 48, id="fixed-at-start"),
        pytest.param(OWNER, T0 + YEAR - 1, [], 48, id="fixed-last-second"),
        pytest.param(OWNER, T0 + YEAR, [], 0, id="fixed-at-end-is-over"),
        pytest.param(OWNER, T0 - 1, [], 0, id="fixed-before-start"),
        pytest.param(contract("late", 48, start=T0 + DAY), T0, [], 0, id="term-not-begun"),
        pytest.param(None, T0, [], 0, id="no-contract"),
        pytest.param(contract("zero"), T0, [], 0, id="empty-commitment"),
        # -- all available: the capacity minus others' fixed commitments and the reserve -
        pytest.param(LESSEE, T0, [OWNER], 80, id="all-available-minus-fixed"),
        pytest.param(LESSEE, T0, [], 128, id="all-available-alone"),
        pytest.param(
            contract("lessee", all_available=True, reserve=8),
            T0,
            [OWNER],
            72,
            id="all-available-minus-reserve",
        ),
        pytest.param(
            LESSEE, T0, [OWNER, contract("third", 16)], 64, id="all-available-minus-two-others"
        ),
        pytest.param(
            LESSEE,
            T0,
            [contract("third", 16, start=T0 + DAY)],
            128,
            id="all-available-other-not-yet-in-term",
        ),
        pytest.param(
            LESSEE,
            T0 + 2 * YEAR - 1,
            [OWNER],
            0,
            id="all-available-after-own-term",
        ),
        pytest.param(
            contract("lessee", all_available=True, end=T0 + 2 * YEAR),
            T0 + YEAR,
            [OWNER],
            128,
            id="all-available-gets-an-ended-contracts-share",
        ),
        pytest.param(
            LESSEE,
            G + P // 2,
            [contract("owner", 48, notice_at=G)],
            80,
            id="all-available-does-not-take-a-ramping-rivals-share",
        ),
        pytest.param(
            LESSEE,
            T0,
            [contract("a", 100), contract("b", 100)],
            0,
            id="all-available-never-negative",
        ),
        pytest.param(
            contract("lessee", all_available=True, accelerator="H200-SXM-141GB"),
            T0,
            [contract("owner", 48, accelerator="H100-SXM-80GB")],
            128,
            id="all-available-other-kind-not-subtracted",
        ),
        pytest.param(
            contract("lessee", all_available=True, accelerator="H200-SXM-141GB"),
            T0,
            [contract("owner", 48)],
            80,
            id="all-available-any-kind-commitment-subtracted",
        ),
        # -- notice: linear ramp (floor) and step -----------------------------------------
        pytest.param(contract("o", 100, notice_at=G), G - 1, [], 100, id="linear-before-notice"),
        pytest.param(contract("o", 100, notice_at=G), G, [], 100, id="linear-at-notice"),
        pytest.param(
            contract("o", 100, notice_at=G), G + 30 * DAY, [], 66, id="linear-a-third-in-floors"
        ),
        pytest.param(contract("o", 100, notice_at=G), G + P // 2, [], 50, id="linear-half-way"),
        pytest.param(contract("o", 7, notice_at=G), G + P // 2, [], 3, id="linear-half-of-7-is-3"),
        pytest.param(contract("o", 100, notice_at=G), G + P - 1, [], 0, id="linear-last-second"),
        pytest.param(contract("o", 100, notice_at=G), G + P, [], 0, id="linear-after-period"),
        pytest.param(
            contract("o", 100, notice_at=G, ramp=Ramp.STEP),
            G + P - 1,
            [],
            100,
            id="step-holds-to-the-end",
        ),
        pytest.param(
            contract("o", 100, notice_at=G, ramp=Ramp.STEP), G + P, [], 0, id="step-drops-at-end"
        ),
        pytest.param(
            contract("o", 100, notice_at=G, notice_period=0),
            G - 1,
            [],
            100,
            id="zero-period-before-notice",
        ),
        pytest.param(
            contract("o", 100, notice_at=G, notice_period=0), G, [], 0, id="zero-period-ends-now"
        ),
        pytest.param(
            contract("o", 100, end=G + 30 * DAY, notice_at=G),
            G + 30 * DAY - 1,
            [],
            66,
            id="notice-ramp-cut-by-term-end",
        ),
        pytest.param(
            contract("o", 100, end=G + 30 * DAY, notice_at=G),
            G + 30 * DAY,
            [],
            0,
            id="notice-ramp-term-end-wins",
        ),
        pytest.param(
            contract("o", 100, end=T0 + DAY, notice_at=T0 + 2 * DAY),
            T0 + DAY - 1,
            [],
            100,
            id="notice-after-term-end-changes-nothing",
        ),
        pytest.param(
            contract("lessee", all_available=True, reserve=8, notice_at=G),
            G + P // 2,
            [OWNER],
            36,
            id="all-available-ramps-from-its-base",
        ),
    ],
)
def test_entitled_gpus(c: Contract | None, t: int, others: list[Contract], want: int) -> None:
    assert entitled_gpus(c, t, CAP, [*others, *([c] if c else [])]) == want


# -- ramp_fraction and ramp_integral: exact ------------------------------------------------

LINEAR = contract("o", 100, notice_at=G)
STEP = contract("o", 100, notice_at=G, ramp=Ramp.STEP)


@pytest.mark.parametrize(
    ("c", "t", "want"),
    [
        pytest.param(OWNER, T0, Fraction(1), id="no-notice"),
        pytest.param(OWNER, T0 - 1, Fraction(0), id="before-term"),
        pytest.param(OWNER, T0 + YEAR, Fraction(0), id="after-term"),
        pytest.param(LINEAR, G - 1, Fraction(1), id="linear-before-notice"),
        pytest.param(LINEAR, G, Fraction(1), id="linear-at-notice"),
        pytest.param(LINEAR, G + 30 * DAY, Fraction(2, 3), id="linear-a-third-in"),
        pytest.param(LINEAR, G + P - 1, Fraction(1, P), id="linear-last-second"),
        pytest.param(LINEAR, G + P, Fraction(0), id="linear-over"),
        pytest.param(STEP, G + P - 1, Fraction(1), id="step-last-second"),
        pytest.param(STEP, G + P, Fraction(0), id="step-over"),
    ],
)
def test_ramp_fraction(c: Contract, t: int, want: Fraction) -> None:
    assert ramp_fraction(c, t) == want


@pytest.mark.parametrize(
    ("c", "t0", "t1", "want"),
    [
        pytest.param(OWNER, T0, T0 + DAY, Fraction(DAY), id="no-notice-one-day"),
        pytest.param(OWNER, T0 - DAY, T0 + DAY, Fraction(DAY), id="clipped-to-term-start"),
        pytest.param(OWNER, T0 + YEAR - DAY, T0 + YEAR + DAY, Fraction(DAY), id="clipped-to-end"),
        pytest.param(OWNER, T0 + DAY, T0 + DAY, Fraction(0), id="empty-window"),
        pytest.param(OWNER, T0 + DAY, T0, Fraction(0), id="reversed-window"),
        pytest.param(LINEAR, G, G + P, Fraction(P, 2), id="linear-whole-ramp-is-half"),
        pytest.param(
            LINEAR, G - 100, G + P + DAY, Fraction(P, 2) + 100, id="linear-flat-then-ramp"
        ),
        pytest.param(LINEAR, G, G + P // 2, Fraction(3 * P, 8), id="linear-first-half"),
        pytest.param(LINEAR, G + P // 2, G + P, Fraction(P, 8), id="linear-second-half"),
        pytest.param(STEP, G - DAY, G + 2 * P, Fraction(P + DAY), id="step-full-until-end"),
        pytest.param(
            contract("o", 1, notice_at=T0 + 10, notice_period=10),
            T0,
            T0 + 20,
            Fraction(15),
            id="linear-tiny-exact",
        ),
    ],
)
def test_ramp_integral(c: Contract, t0: int, t1: int, want: Fraction) -> None:
    assert ramp_integral(c, t0, t1) == want


def test_ramp_integral_is_additive_over_a_partition() -> None:
    cuts = [G - DAY, G, G + 7, G + DAY, G + P // 3, G + P - 1, G + P + DAY]
    parts = sum(ramp_integral(LINEAR, a, b) for a, b in pairwise(cuts))
    assert parts == ramp_integral(LINEAR, cuts[0], cuts[-1])


# -- entitlements for a set of contracts ---------------------------------------------------


@pytest.mark.parametrize(
    ("contracts", "t", "capacity", "want"),
    [
        pytest.param([OWNER, LESSEE], T0, {None: CAP}, {"owner": 48, "lessee": 80}, id="lease"),
        pytest.param(
            [OWNER, LESSEE], T0 - 1, {None: CAP}, {"owner": 0, "lessee": 0}, id="before-terms"
        ),
        pytest.param(
            [contract("owner", 48, end=T0 + DAY), LESSEE],
            T0 + DAY,
            {None: CAP},
            {"owner": 0, "lessee": 128},
            id="owner-term-over-lessee-takes-all",
        ),
        pytest.param(
            [contract("owner", 48, notice_at=G), LESSEE],
            G + P // 2,
            {None: CAP},
            {"owner": 24, "lessee": 80},
            id="owner-ramping",
        ),
        pytest.param(
            [
                contract("h100", 48, accelerator="H100-SXM-80GB"),
                contract("h200", all_available=True, accelerator="H200-SXM-141GB"),
            ],
            T0,
            {None: 256, "H100-SXM-80GB": 128, "H200-SXM-141GB": 128},
            {"h100": 48, "h200": 128},
            id="per-kind-pools",
        ),
        pytest.param(
            [contract("b200", all_available=True, accelerator="B200")],
            T0,
            {None: CAP},
            {"b200": 0},
            id="all-available-of-a-missing-kind-is-zero",
        ),
    ],
)
def test_entitlements(
    contracts: list[Contract], t: int, capacity: dict[str | None, int], want: dict[str, int]
) -> None:
    got = entitlements(contracts, t, capacity)
    assert got == want
    assert sum(got.values()) <= capacity[None]


# -- effective end and next_change ---------------------------------------------------------


@pytest.mark.parametrize(
    ("c", "want"),
    [
        pytest.param(OWNER, T0 + YEAR, id="term-end"),
        pytest.param(LINEAR, G + P, id="notice-end"),
        pytest.param(contract("o", 1, end=G + DAY, notice_at=G), G + DAY, id="term-end-first"),
        pytest.param(contract("o", 1, notice_at=G, notice_period=0), G, id="zero-period"),
    ],
)
def test_effective_end(c: Contract, want: int) -> None:
    assert effective_end(c) == want


B = contract("b", 16, start=T0 + 10 * DAY, notice_at=T0 + 20 * DAY, notice_period=30 * DAY)


@pytest.mark.parametrize(
    ("t", "want"),
    [
        pytest.param(T0 - 1, T0, id="before-everything"),
        pytest.param(T0, T0 + 10 * DAY, id="strictly-after-t"),
        pytest.param(T0 + 10 * DAY, T0 + 50 * DAY, id="notice-end"),
        pytest.param(T0 + 50 * DAY, T0 + YEAR, id="term-end"),
        pytest.param(T0 + YEAR, None, id="nothing-left"),
    ],
)
def test_next_change(t: int, want: int | None) -> None:
    assert next_change([OWNER, B], t) == want
