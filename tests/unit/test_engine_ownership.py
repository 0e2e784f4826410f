"""Ownership (engine/ownership.py): owned and borrowed GPUs per tenant, and the rebalance
that keeps owned GPUs within the entitlement, given to the most important work."""

from __future__ import annotations

import pytest

from builders import T0, contract, job
from cotenant.cluster.state import Placement
from cotenant.engine.jobs import JobRun
from cotenant.engine.ownership import Ownership
from cotenant.model.jobs import JobState


class Book:
    """Ownership with its runs, and a retag that does what the lifecycle's does to it."""

    def __init__(self) -> None:
        self.jobs: dict[str, JobRun] = {}
        self.own = Ownership(self.jobs)
        self.retags: list[tuple[str, bool]] = []

    def start(
        self, id: str, gpus: int, *, borrowed: bool, priority: int = 0, at: int = 0
    ) -> JobRun:
        spec = job(id, "A", gpus, priority=priority)
        run = JobRun(spec, JobState.RUNNING, placement=Placement((0,), (gpus,)), start_s=T0 + at)
        run.borrowed = borrowed
        self.jobs[id] = run
        self.own.hold(run, +1)
        return run

    def retag(self, run: JobRun, borrowed: bool, now: int) -> None:
        self.own.hold(run, -1)
        run.borrowed = borrowed
        self.own.demotions += borrowed
        self.own.hold(run, +1)
        self.retags.append((run.id, borrowed))

    def rebalance(
        self, entitled: int, promised: frozenset[str] = frozenset()
    ) -> list[tuple[str, bool]]:
        self.retags.clear()
        self.own.rebalance({"A": entitled}, set(promised), self.retag, T0)
        return list(self.retags)


def test_holding_counts_owned_and_borrowed_gpus_and_letting_go_undoes_it() -> None:
    b = Book()
    low = b.start("low", 8, borrowed=False, priority=0)
    b.start("high", 4, borrowed=False, priority=5)
    lent = b.start("lent", 2, borrowed=True)
    own = b.own
    assert (own.allocated["A"], own.owned["A"], own.borrowed["A"]) == (14, 12, 2)
    assert own.owned_below("A", 5) == 8 and own.owned_below("A", 0) == 0
    for r in (low, lent):
        own.hold(r, -1)
    assert (own.allocated["A"], own.owned["A"], own.borrowed["A"]) == (4, 4, 0)
    assert dict(own.owned_by_priority["A"]) == {5: 4}
    assert list(own.running_by_tenant["A"]) == ["high"]


@pytest.mark.parametrize(
    ("entitled", "want"),
    [
        pytest.param(12, [], id="within-entitlement"),
        pytest.param(8, [("late-low", True)], id="least-important-latest-first"),
        pytest.param(4, [("late-low", True), ("early-low", True)], id="until-within"),
    ],
)
def test_owned_work_beyond_the_entitlement_is_demoted(
    entitled: int, want: list[tuple[str, bool]]
) -> None:
    b = Book()
    b.start("early-low", 4, borrowed=False, priority=0, at=0)
    b.start("late-low", 4, borrowed=False, priority=0, at=60)
    b.start("high", 4, borrowed=False, priority=3, at=120)
    assert b.rebalance(entitled) == want
    assert b.own.owned["A"] <= max(entitled, 4)


def test_borrowed_work_is_promoted_when_room_opens_unless_room_is_promised() -> None:
    b = Book()
    b.start("owned", 4, borrowed=False)
    b.start("borrowed", 4, borrowed=True)
    assert b.rebalance(4) == []  # no room
    assert b.rebalance(8, promised=frozenset({"A"})) == []  # room promised to a waiting job
    assert b.rebalance(8) == [("borrowed", False)]
    assert b.own.borrowed["A"] == 0 and b.own.owned["A"] == 8


def test_a_more_important_borrower_takes_the_room_of_less_important_owned_work() -> None:
    b = Book()
    b.start("low", 4, borrowed=False, priority=0)
    b.start("vip", 4, borrowed=True, priority=9)
    assert b.rebalance(4) == [("vip", False), ("low", True)]


def test_a_tenant_that_did_not_change_is_not_rebalanced_again() -> None:
    b = Book()
    b.start("owned", 8, borrowed=False)
    assert b.rebalance(4) == [("owned", True)]
    b.own.unbalanced.clear()  # nothing changed since
    b.jobs["owned"].borrowed = False  # (a change the rebalance is not told of)
    assert b.rebalance(0) == []


def test_lenders_idle_counts_only_tenants_that_lend() -> None:
    own = Ownership({})
    own.owned["A"] = 3
    contracts = {"A": contract("A", 8), "B": contract("B", 8, lend=False)}
    own.refresh_lenders({"A": 8, "B": 8}, contracts)
    assert own.lenders_idle == {"A": 5}
    own.owned["A"] = 8
    own.refresh_lenders({"A": 8, "B": 8}, contracts)
    assert own.lenders_idle == {"A": 5}  # not stale: not recomputed
    own.lenders_stale = True
    own.refresh_lenders({"A": 8, "B": 8}, contracts)
    assert own.lenders_idle == {"A": 0}
